//go:build linux

package tunnel

import (
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
)

// TripwireCounter reads namespace n's counter of the host-side tripwire
// (internal/tripwire): packets of a confined unit's sockets dropped in the
// host's network namespace. It reads the table in the helper's own
// namespace, so it exists only when that is the host's (no
// wireguard.socketNamespace; with one, `vpn-confinement-tripwire status`
// and `vpn-confinement status` still show it). ok is false while the
// host has no tripwire table (no confined unit started, or a host without
// support).
func TripwireCounter(n *plan.Namespace) func() (uint64, bool) {
	if n.WireGuard.SocketNamespace != "" && n.WireGuard.SocketNamespace != "init" {
		return nil
	}
	host := &tripwire.Host{} // nil NS: the calling thread's, the host's here
	return func() (uint64, bool) {
		c, err := host.Counters()
		if err != nil { // fs.ErrNotExist: no table (yet, or no support)
			return 0, false
		}
		return c[n.Name].Packets, true
	}
}

// tripwireAlarm logs at alert priority whenever the counter grows (and at
// the first reading if it is already non-zero: the counter outlives the
// escaped process and this helper, as evidence). A confined unit's
// traffic never reaches the host's hooks, so any count is an escape.
func (s *Supervisor) tripwireAlarm(v uint64) {
	prev := s.state.TripwireDrops
	if v == 0 || prev != nil && v <= *prev {
		return
	}
	was := uint64(0)
	if prev != nil {
		was = *prev
	}
	s.log.Logf(journal.Alert, "tripwire: %d packets of confined units of %s dropped in the host's network namespace (%d new): a process of a confined unit escaped its namespace; see vpn-confinement status %s and journalctl -t vpn-confinement-tripwire",
		v, s.n.Name, v-was, s.n.Name)
}
