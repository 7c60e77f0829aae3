//go:build linux

package tripwire

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Default paths of the helper: the lock serialising changes to the table,
// and the marker recording why this host cannot have a tripwire (read by
// the CLI; both on /run, so a reboot forgets them). Variables, as
// plan.RuntimeDir is.
var (
	LockPath   = plan.PrivateDir() + "/tripwire.lock"
	MarkerPath = plan.PrivateDir() + "/tripwire.unsupported"
)

// Hook is what the helper's verbs do, as hooks of a confined unit
// (ExecStartPre=+ / ExecStopPost=+, running in the unit's own cgroup and
// possibly inside the confinement namespace: Host.NS is always the host
// namespace opened by path, never the hook's own).
//
// The policy: the tripwire is defence in depth. On a host that cannot
// have it (no cgroup2, no socket cgroupv2 in the kernel) a hook logs a
// warning, writes the reason to Marker for the CLI, and succeeds, so the
// service starts as it would without the tripwire. On a host that can, any
// failure fails the hook, and with it the start.
type Hook struct {
	Host   *Host
	Marker string // file holding the reason the host is unsupported
	Log    *journal.Logger
}

// Add registers the calling process's unit cgroup for namespace ns.
func (k *Hook) Add(ns string) error {
	m, err := k.Host.mount()
	if errors.Is(err, ErrNoCgroup2) {
		return k.unsupported(ns, &UnsupportedError{Reason: err.Error()})
	}
	if err != nil {
		return err
	}
	self, err := m.Self()
	if errors.Is(err, ErrNoCgroup2) {
		return k.unsupported(ns, &UnsupportedError{Reason: "this process is in no cgroup2 cgroup"})
	}
	if err != nil {
		return fmt.Errorf("tripwire: own cgroup: %w", err)
	}
	cg, err := k.Host.Add(ns, self.Path)
	if err != nil {
		if serr := k.Host.Supported(); IsUnsupported(serr) {
			return k.unsupported(ns, serr)
		}
		return err
	}
	k.clearMarker()
	k.Log.Infof("tripwire: cgroup %s (id %d) registered for namespace %s", cg.Path, cg.ID, ns)
	return nil
}

// Remove unregisters the calling process's unit cgroup from namespace ns
// and prunes the elements of cgroups that are gone. Nothing registered,
// no table, or no cgroup2 at all are not errors.
func (k *Hook) Remove(ns string) error {
	m, err := k.Host.mount()
	if errors.Is(err, ErrNoCgroup2) {
		return nil
	}
	if err != nil {
		return err
	}
	self, err := m.Self()
	if errors.Is(err, ErrNoCgroup2) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tripwire: own cgroup: %w", err)
	}
	if removed, err := k.Host.Remove(ns, self.ID); err != nil {
		return err
	} else if removed {
		k.Log.Infof("tripwire: cgroup %s (id %d) unregistered from namespace %s", self.Path, self.ID, ns)
	}
	// Pruning is housekeeping: stale elements are harmless (IDs are not
	// reused), so a failure here must not fail the unit's stop.
	if gone, err := k.Host.Prune(); err != nil {
		k.Log.Warnf("tripwire: prune: %v", err)
	} else if len(gone) > 0 {
		k.Log.Infof("tripwire: pruned %d cgroups that no longer exist: %v", len(gone), gone)
	}
	return nil
}

// Ensure creates the table (the same support policy as Add).
func (k *Hook) Ensure() error {
	if err := k.Host.Ensure(); err != nil {
		if serr := k.Host.Supported(); IsUnsupported(serr) {
			return k.unsupported("", serr)
		}
		return err
	}
	k.clearMarker()
	return nil
}

func (k *Hook) unsupported(ns string, err error) error {
	who := "services start"
	if ns != "" {
		who = "namespace " + ns + " starts"
	}
	k.Log.Warnf("tripwire: not available on this host, %s without it: %v", who, err)
	if werr := writeAtomic(k.Marker, err.Error()+"\n"); werr != nil {
		k.Log.Warnf("tripwire: %v", werr)
	}
	return nil
}

func (k *Hook) clearMarker() {
	if err := os.Remove(k.Marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		k.Log.Warnf("tripwire: remove %s: %v", k.Marker, err)
	}
}

func writeAtomic(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Status is the JSON the helper's status verb prints.
type Status struct {
	// Supported is true when the table exists (the kernel accepted it) or
	// the probe passes; false with Reason when the host cannot have it.
	Supported bool   `json:"supported"`
	Reason    string `json:"reason,omitempty"`
	Table     bool   `json:"table"`
	// Escapes is the total of packets dropped, over all namespaces: any
	// non-zero value means a confined unit's cgroup used a socket in the
	// host namespace.
	Escapes    uint64                     `json:"escapes"`
	Namespaces map[string]NamespaceStatus `json:"namespaces"`
}

// NamespaceStatus is one namespace's counter and registered cgroup IDs.
type NamespaceStatus struct {
	Packets uint64   `json:"packets"`
	Bytes   uint64   `json:"bytes"`
	Cgroups []uint64 `json:"cgroups"`
}

// Status reads the table. It writes nothing, except that with no table it
// runs the Supported probe (a table added and deleted in one batch).
func (k *Hook) Status() (*Status, error) {
	st := &Status{Namespaces: map[string]NamespaceStatus{}}
	counters, err := k.Host.Counters()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		serr := k.Host.Supported()
		if serr != nil && !IsUnsupported(serr) {
			return nil, serr
		}
		st.Supported = serr == nil
		if serr != nil {
			st.Reason = serr.Error()
		} else if b, err := os.ReadFile(k.Marker); err == nil {
			// Supported now, but a hook found it unsupported earlier.
			st.Reason = "earlier: " + strings.TrimSpace(string(b))
		}
		return st, nil
	case err != nil:
		return nil, err
	}
	st.Supported, st.Table = true, true
	els, err := k.Host.Elements()
	if err != nil {
		return nil, err
	}
	for ns, c := range counters {
		st.Namespaces[ns] = NamespaceStatus{Packets: c.Packets, Bytes: c.Bytes, Cgroups: []uint64{}}
		st.Escapes += c.Packets
	}
	for _, e := range els {
		s := st.Namespaces[e.Namespace]
		s.Cgroups = append(s.Cgroups, e.ID)
		st.Namespaces[e.Namespace] = s
	}
	for ns, s := range st.Namespaces {
		slices.Sort(s.Cgroups)
		st.Namespaces[ns] = s
	}
	return st, nil
}
