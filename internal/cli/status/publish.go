package status

import (
	"fmt"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Published is one published port (plan.Publish): host sockets whose
// connections reach Port inside the namespace, through the confined
// proxy (vpn-publish-NAME-PORT.service) or handed to Activate directly.
type Published struct {
	Listen   []string `json:"listen"`
	Port     uint16   `json:"port"`
	Activate string   `json:"activate,omitempty"`
	LAN      bool     `json:"lan"`
	// Socket is the host-side socket unit; Proxy the proxy service (nil
	// with Activate: the listed service takes the connections itself).
	Socket Unit  `json:"socket"`
	Proxy  *Unit `json:"proxy,omitempty"`
}

// ToHost are the host ports confined services may open over the host
// link (egress.toHost).
type ToHost struct {
	Address string   `json:"address"`
	TCP     []uint16 `json:"tcp"`
	UDP     []uint16 `json:"udp"`
}

// publishUnits are the socket and proxy units of p's published ports.
func publishUnits(p *plan.Namespace) []string {
	var out []string
	for _, pub := range p.Publish {
		out = append(out, pub.Unit+".socket")
		if pub.Activate == "" {
			out = append(out, pub.Unit+".service")
		}
	}
	return out
}

// collectPublish lists the published ports with their units' states.
func collectPublish(p *plan.Namespace, props map[string]systemd.Props) []Published {
	out := []Published{}
	for _, pub := range p.Publish {
		e := Published{Listen: pub.Listen, Port: pub.Port, Activate: pub.Activate, LAN: pub.LAN,
			Socket: unitOf(pub.Unit+".socket", props[pub.Unit+".socket"])}
		if pub.Activate == "" {
			u := unitOf(pub.Unit+".service", props[pub.Unit+".service"])
			e.Proxy = &u
		}
		out = append(out, e)
	}
	return out
}

// collectToHost lists the egress.toHost exceptions.
func collectToHost(p *plan.Namespace) *ToHost {
	if len(p.Egress.ToHostTCP)+len(p.Egress.ToHostUDP) == 0 {
		return nil
	}
	t := &ToHost{TCP: p.Egress.ToHostTCP, UDP: p.Egress.ToHostUDP}
	if p.HostLink != nil {
		t.Address = p.HostLink.HostAddr.String()
	}
	return t
}

// publish: a published port whose socket is not listening while the
// namespace is up cannot be reached.
func (a *assessor) publish() {
	n := a.n
	if !n.Netns.Present {
		return
	}
	for _, e := range n.Publish {
		if s := e.Socket; s.ActiveState == "failed" {
			a.problem(StateFailed, "published %s → port %d: %s failed; see: journalctl -u %s", strings.Join(e.Listen, " "), e.Port, s.Name, s.Name)
		} else if s.ActiveState != "" && s.ActiveState != "active" {
			a.problem(StateDegraded, "published %s → port %d: %s is %s, so nothing listens on the host (systemctl start %s)",
				strings.Join(e.Listen, " "), e.Port, s.Name, s.ActiveState, s.Name)
		}
	}
}

func (n *Namespace) writePublish(p printer) {
	for i, e := range n.Publish {
		label := ""
		if i == 0 {
			label = "published"
		}
		to := fmt.Sprintf("port %d in the namespace (proxy %s)", e.Port, unitText(derefUnit(e.Proxy)))
		if e.Activate != "" {
			to = fmt.Sprintf("%s directly (socket activation)", e.Activate)
		}
		lan := ""
		if e.LAN {
			lan = " [LAN]"
		}
		p.row(label, "%s%s → %s; %s", strings.Join(e.Listen, " "), lan, to, unitText(e.Socket))
	}
	if t := n.ToHost; t != nil {
		var ps []string
		for _, x := range t.TCP {
			ps = append(ps, fmt.Sprintf("tcp %d", x))
		}
		for _, x := range t.UDP {
			ps = append(ps, fmt.Sprintf("udp %d", x))
		}
		p.row("to host", "confined services may open %s on %s", strings.Join(ps, ", "), t.Address)
	}
}

func derefUnit(u *Unit) Unit {
	if u == nil {
		return Unit{}
	}
	return *u
}
