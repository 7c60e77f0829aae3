//go:build linux

package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// AppliedPath is the copy of the plan a namespace runs, byte for byte as
// the generator wrote it: reload compares the next plan with it, and
// status tells a pending plan by comparing the two files' hashes.
func AppliedPath(name string) string { return filepath.Join(plan.PrivatePath(name), "applied.json") }

// preparePrivate creates the root-only runtime dir of n, the metrics dir
// (world-readable: node_exporter reads it), and the files bound over the
// PID files of root services (systemd deletes PIDFile= at every stop, so
// it is reset and the file bound writable into the service's read-only
// /run is ours).
func preparePrivate(n *plan.Namespace) error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{plan.PrivateDir(), 0o700}, {plan.PrivatePath(n.Name), 0o700}, {plan.MetricsDir(), 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	return prepareRuntimeFiles(n)
}

func prepareRuntimeFiles(n *plan.Namespace) error {
	for _, u := range n.Services {
		for _, rf := range u.RuntimeFiles {
			src := units.RuntimeFileSource(n.Name, u.Name, rf)
			if err := os.MkdirAll(filepath.Dir(src), 0o700); err != nil {
				return err
			}
			// Never follow a link: the directory is root's, but be sure.
			fd, err := unix.Open(src, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return fmt.Errorf("create %s: %w", src, err)
			}
			unix.Close(fd)
		}
	}
	return nil
}

// saveApplied stores the plan file n was loaded from as the applied plan.
func saveApplied(name string, planFile []byte) error {
	if planFile == nil {
		return nil
	}
	path := AppliedPath(name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, planFile, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// loadApplied reads the applied plan of name.
func loadApplied(name string) (*plan.Namespace, error) {
	n, err := plan.LoadTrusted(AppliedPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("namespace %s has no record of the plan it runs (started by an older version?); apply the new one with systemctl restart vpn-ns@%s.service", name, name)
	}
	return n, err
}
