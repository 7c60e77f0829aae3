package status

import (
	"fmt"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// PortForwarding is the namespace's provider port forwarding
// (plan.PortForwarding): what is configured, and the lease unit vpn-pf@.
type PortForwarding struct {
	Protocol   string   `json:"protocol"`
	Gateway    string   `json:"gateway,omitempty"`
	StaticPort uint16   `json:"staticPort,omitempty"`
	Apps       []string `json:"apps"`
	HookUnit   string   `json:"hookUnit,omitempty"`
	Unit       Unit     `json:"unit"`
}

// portfwdUnits is vpn-pf@NAME when p forwards a port.
func portfwdUnits(p *plan.Namespace) []string {
	if p.PortForwarding == nil {
		return nil
	}
	return []string{units.Instance(units.PfTemplate, p.Name)}
}

// collectPortForwarding shows the configuration and the lease unit.
func collectPortForwarding(p *plan.Namespace, props map[string]systemd.Props) *PortForwarding {
	pf := p.PortForwarding
	if pf == nil {
		return nil
	}
	u := units.Instance(units.PfTemplate, p.Name)
	out := &PortForwarding{Protocol: pf.Protocol, StaticPort: pf.StaticPort, Apps: []string{}, HookUnit: pf.HookUnit, Unit: unitOf(u, props[u])}
	if pf.Gateway.IsValid() {
		out.Gateway = pf.Gateway.String()
	}
	for _, a := range pf.Apps {
		out.Apps = append(out.Apps, a.Type+" "+a.URL)
	}
	return out
}

// portfwd: the lease unit must run while the namespace is up (a lease
// failure weakens nothing, but the app is unconnectable).
func (a *assessor) portfwd() {
	pf := a.n.PortForwarding
	if pf == nil || !a.n.Netns.Present {
		return
	}
	if u := pf.Unit; u.ActiveState == "failed" {
		a.problem(StateFailed, "port forwarding: %s failed; see: journalctl -u %s", u.Name, u.Name)
	} else if u.ActiveState != "" && u.ActiveState != "active" && u.ActiveState != "activating" {
		a.problem(StateDegraded, "port forwarding: %s is %s: no port is forwarded (systemctl start %s)", u.Name, u.ActiveState, u.Name)
	}
}

func (n *Namespace) writePortForwarding(p printer) {
	pf := n.PortForwarding
	if pf == nil {
		return
	}
	s := pf.Protocol
	if pf.Gateway != "" {
		s += " via " + pf.Gateway
	}
	if pf.StaticPort != 0 {
		s += fmt.Sprintf(" port %d", pf.StaticPort)
	}
	s += "; " + unitText(pf.Unit)
	p.row("port fwd", "%s", s)
	if len(pf.Apps) > 0 {
		p.more("apps: %s", strings.Join(pf.Apps, ", "))
	}
	if pf.HookUnit != "" {
		p.more("hook: %s", pf.HookUnit)
	}
}
