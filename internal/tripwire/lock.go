//go:build linux

package tripwire

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lock takes an exclusive flock on path, creating the file (and its
// directory) if needed, and returns the unlock func. flock locks belong to
// the open file description, so two goroutines of one process exclude each
// other as two processes do, and a crashed holder's lock dies with it. The
// wait is unbounded: holders only do a few netlink round trips, and the
// unit's start timeout bounds a pathological wait.
func lock(path string) (func(), error) {
	if path == "" {
		return nil, errors.New("tripwire: no lock file configured")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("tripwire: lock dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tripwire: lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tripwire: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
