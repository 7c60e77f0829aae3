package status

import (
	"fmt"
	"strings"
)

// HostTripwire is the host-side tripwire (internal/tripwire): a table in
// the host's network namespace that drops and counts every packet of a
// socket that belongs to a confined unit's cgroup. Status only reads it:
// it never loads the table or probes the kernel (doctor does).
type HostTripwire struct {
	// Table: table inet vpnc_tripwire exists (a confined unit started).
	Table bool `json:"table"`
	// Unsupported is the reason a hook recorded in Marker when the host
	// cannot have the tripwire ("" when there is no marker): then nothing
	// claims it, and units start without it.
	Marker      string `json:"marker"`
	Unsupported string `json:"unsupported,omitempty"`
	// Escapes is the sum of every namespace's counter (packets).
	Escapes uint64 `json:"escapes"`
	// Registered is the number of cgroups in the table's map.
	Registered int    `json:"registered"`
	Error      string `json:"error,omitempty"`
}

// NamespaceTripwire is one namespace's part of the tripwire: its drop
// counter (vpnc_tripwire_dropped_packets_total) and which of its active
// confined units have their cgroup registered.
type NamespaceTripwire struct {
	// Packets and Bytes of escapes: any non-zero value means a process of
	// a confined unit used a socket in the host's network namespace. The
	// counter stays after the units stop, as evidence.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Registered and Unregistered are the active confined services whose
	// cgroup is, or is not, in the table (only read when Table is true).
	Registered   []string `json:"registered"`
	Unregistered []string `json:"unregistered"`
}

// tripwire: a non-zero counter is an escape; an active unit that the
// tripwire does not watch is a problem on a host that has one.
func (a *assessor) tripwire() {
	t := a.n.Tripwire
	if t == nil {
		return
	}
	if t.Packets > 0 {
		a.problem(StateUnsafe, "tripwire: %d packets (%s) of confined units' sockets were dropped in the host's network namespace: a process of a unit of %s escaped the namespace; see: journalctl -t vpn-confinement-tripwire, vpn-confinement verify UNIT",
			t.Packets, bytesText(int64(t.Bytes)), a.n.Name)
	}
	for _, u := range t.Unregistered {
		a.problem(StateDegraded, "tripwire: %s runs, but its cgroup is not registered (it was started without its ExecStartPre= hook?): restart it", u)
	}
}

func (n *Namespace) writeTripwire(p printer) {
	t := n.Tripwire
	if t == nil {
		return
	}
	s := fmt.Sprintf("%d packets dropped in the host namespace", t.Packets)
	if len(t.Registered) > 0 {
		s += "; watching " + strings.Join(t.Registered, ", ")
	}
	p.row("tripwire", "%s", s)
}

// text is the report's tripwire line (escapes are problems of their
// namespaces).
func (t *HostTripwire) text() string {
	switch {
	case t.Error != "":
		return "unread: " + t.Error
	case t.Unsupported != "":
		return "not available on this host, nothing claims it: " + t.Unsupported
	case !t.Table:
		return "table inet vpnc_tripwire not loaded (no confined unit has started since boot)"
	}
	return fmt.Sprintf("table inet vpnc_tripwire: %d cgroups watched, %d packets dropped in total", t.Registered, t.Escapes)
}
