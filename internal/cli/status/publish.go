package status

import (
	"fmt"
	"io"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Published is one publish entry: a socket unit in the host's namespace
// and what holds its listener once activated (the proxy, or the listed
// service of publish[].unit).
type Published struct {
	Unit     string `json:"unit"` // vpn-publish-NAME-PORT
	Port     uint16 `json:"port"` // the confined port
	Activate string `json:"activate,omitempty"`
	// Socket and Service are the ActiveState/SubState of the socket unit
	// and of the holder (the proxy service, or Activate).
	Socket       Unit            `json:"socket"`
	Service      Unit            `json:"service"`
	Listen       []PublishedAddr `json:"listen"`
	Connections  int             `json:"connections"`
	KernelRead   bool            `json:"kernelRead"`
	BindToDevice string          `json:"bindToDevice,omitempty"`
}

// PublishedAddr is one host address of a published port.
type PublishedAddr struct {
	Address string `json:"address"`
	// Listening: a socket listens there; HeldBySystemd: PID 1 holds it
	// (the socket unit's own listener; without it only an already
	// activated service still accepts, and nothing will activate again).
	Listening     bool     `json:"listening"`
	HeldBySystemd bool     `json:"heldBySystemd"`
	Holders       []string `json:"holders"`
	// Connections are the established connections accepted there now.
	Connections int `json:"connections"`
}

// ToHost are the host ports confined services may open (egress.toHost).
type ToHost struct {
	Address string   `json:"address"` // the host's end of the host link
	TCP     []uint16 `json:"tcp"`
	UDP     []uint16 `json:"udp"`
	// Connections counts established TCP connections from the namespace
	// per port, now (read in the host's namespace).
	Connections map[uint16]int `json:"connections"`
	// Table is the host-side table inet vpnc_hostlink_NAME; its counters
	// count new connections (TCP) and new flows (UDP) accepted from the
	// namespace, and what it dropped from the link.
	Table        string `json:"table"`
	TablePresent bool   `json:"tablePresent"`
	AcceptedTCP  uint64 `json:"acceptedTcpPackets"`
	AcceptedUDP  uint64 `json:"acceptedUdpPackets"`
	Dropped      uint64 `json:"droppedPackets"`
	KernelRead   bool   `json:"kernelRead"`
}

func (p Published) holderName() string {
	if p.Activate != "" {
		return p.Activate
	}
	return p.Unit + ".service"
}

func (n *Namespace) writePublished(w io.Writer) {
	for i, p := range n.Published {
		label := ""
		if i == 0 {
			label = "published"
		}
		var addrs []string
		for _, l := range p.Listen {
			addrs = append(addrs, l.Address)
		}
		target := fmt.Sprintf("port %d in the namespace (proxy %s %s)", p.Port, p.holderName(), stateText(p.Service))
		if p.Activate != "" {
			target = fmt.Sprintf("port %d, handed to %s (%s)", p.Port, p.Activate, stateText(p.Service))
		}
		conns := ""
		if p.KernelRead {
			conns = ", " + plural(p.Connections, "connection")
		}
		fmt.Fprintf(w, "    %-10s %s → %s; %s %s%s\n", label, strings.Join(addrs, " "), target, p.Unit+".socket", stateText(p.Socket), conns)
		if !p.KernelRead {
			continue
		}
		for _, l := range p.Listen {
			switch {
			case !l.Listening:
				fmt.Fprintf(w, "    %-10s   %s: NOT listening\n", "", l.Address)
			case !l.HeldBySystemd:
				fmt.Fprintf(w, "    %-10s   %s: held only by %s, not by systemd\n", "", l.Address, strings.Join(l.Holders, ", "))
			case len(p.Listen) > 1:
				fmt.Fprintf(w, "    %-10s   %s: %s\n", "", l.Address, plural(l.Connections, "connection"))
			}
		}
	}
	if t := n.ToHost; t != nil {
		var ps []string
		for _, p := range t.TCP {
			s := fmt.Sprintf("tcp/%d", p)
			if t.KernelRead {
				s += fmt.Sprintf(" (%s)", plural(t.Connections[p], "connection"))
			}
			ps = append(ps, s)
		}
		for _, p := range t.UDP {
			ps = append(ps, fmt.Sprintf("udp/%d", p))
		}
		fmt.Fprintf(w, "    %-10s confined services may open %s on the host at %s\n", "to host", strings.Join(ps, ", "), t.Address)
		switch {
		case !t.KernelRead:
		case !t.TablePresent:
			fmt.Fprintf(w, "    %-10s table inet %s NOT loaded on the host\n", "", t.Table)
		default:
			fmt.Fprintf(w, "    %-10s table inet %s: %d TCP connections and %d UDP flows accepted, %d packets dropped from the link\n", "", t.Table, t.AcceptedTCP, t.AcceptedUDP, t.Dropped)
		}
	}
}

func stateText(u Unit) string {
	switch {
	case u.ActiveState == "":
		return "state unknown"
	case u.LoadState == "not-found":
		return "not found"
	}
	return u.ActiveState
}

// assessPublished adds the problems of published ports while the
// namespace runs: a socket unit that is not active, or active without
// its listener (its file was gone at a daemon-reload), closes the port.
func (a *assessor) assessPublished(k Known) {
	n := a.n
	ns := units.Instance(units.NsTemplate, n.Name)
	for _, p := range n.Published {
		sock := p.Unit + ".socket"
		switch {
		case !k.Systemd:
			continue
		case p.Socket.ActiveState == "failed":
			a.problem(StateFailed, "%s failed: the published port is closed (is the address in use? vpn-confinement doctor; journalctl -u %s)", sock, sock)
			continue
		case p.Socket.ActiveState != "active":
			a.problem(StateDegraded, "%s is %s: the published port is closed (systemctl start %s)", sock, p.Socket.ActiveState, sock)
			continue
		}
		if !p.KernelRead {
			continue
		}
		for _, l := range p.Listen {
			switch {
			case !l.Listening:
				a.problem(StateDegraded, "%s is active but nothing listens on %s (its unit file was gone at a daemon-reload): systemctl reload %s", sock, l.Address, ns)
			case !l.HeldBySystemd:
				a.problem(StateDegraded, "%s: only %s still holds %s; systemd has closed its listener, so nothing accepts there once it exits: systemctl reload %s", sock, strings.Join(l.Holders, ", "), l.Address, ns)
			}
		}
	}
	if t := n.ToHost; t != nil && t.KernelRead && !t.TablePresent {
		a.problem(StateDegraded, "table inet %s is missing on the host: the host does not restrict what the namespace reaches over the link (restart %s)", t.Table, ns)
	}
}
