//go:build linux

package status

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
)

// collectTripwire reads the tripwire's table in the host namespace
// (counters and registered cgroups, no lock, no writes) and the marker a
// hook leaves on a host without support, and hands each namespace its
// part.
func (c Collector) collectTripwire(rep *Report, host *netns.NetNS) *HostTripwire {
	ht := &HostTripwire{Marker: c.Paths.InRuntime(tripwire.MarkerPath)}
	if b, err := os.ReadFile(ht.Marker); err == nil {
		ht.Unsupported = strings.TrimSpace(string(b))
	}
	h := &tripwire.Host{NS: host, Proc: filepath.Join(c.Paths.Proc, "1")}
	counters, err := h.Counters()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ht
	case err != nil:
		ht.Error = err.Error()
		return ht
	}
	ht.Table = true
	els, err := h.Elements()
	if err != nil {
		ht.Error = err.Error()
	}
	ht.Registered = len(els)
	byID := map[uint64]string{}
	for _, e := range els {
		byID[e.ID] = e.Namespace
	}
	for _, cnt := range counters {
		ht.Escapes += cnt.Packets
	}
	mount, merr := tripwire.FindMount(h.Proc)
	for i := range rep.Namespaces {
		n := &rep.Namespaces[i]
		nt := &NamespaceTripwire{Registered: []string{}, Unregistered: []string{}}
		if cnt, ok := counters[n.Name]; ok {
			nt.Packets, nt.Bytes = cnt.Packets, cnt.Bytes
		}
		for _, u := range n.Confined {
			if u.ActiveState != "active" || u.ControlGroup == "" || !strings.HasSuffix(u.Name, ".service") || merr != nil {
				continue
			}
			cg, err := mount.Resolve(u.ControlGroup)
			if err != nil {
				continue // gone between systemctl and here
			}
			if byID[cg.ID] == n.Name {
				nt.Registered = append(nt.Registered, u.Name)
			} else {
				nt.Unregistered = append(nt.Unregistered, u.Name)
			}
		}
		n.Tripwire = nt
	}
	return ht
}
