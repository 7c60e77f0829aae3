package firewall

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// LockPath serialises changes to a namespace's table between a reload
// (which replaces the table) and the lease helper (which replaces the
// forwarded-port set's elements), so neither loses the other's change.
func LockPath(name string) string { return filepath.Join(plan.PrivatePath(name), "firewall.lock") }

// Lock takes namespace name's firewall lock until unlock is called.
func Lock(name string) (unlock func(), err error) {
	if err := os.MkdirAll(plan.PrivatePath(name), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(LockPath(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
