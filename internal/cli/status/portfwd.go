package status

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// PortForwarding is the namespace's provider port forwarding
// (plan.PortForwarding): what is configured, the lease helper vpn-pf@NAME
// and what it reports, and the port the namespace's firewall really
// accepts inbound.
type PortForwarding struct {
	Protocol   string `json:"protocol"`
	Gateway    string `json:"gateway,omitempty"`
	StaticPort uint16 `json:"staticPort,omitempty"`
	// Apps are the configured torrent clients ("TYPE URL").
	Apps     []string `json:"apps"`
	HookUnit string   `json:"hookUnit,omitempty"`
	Unit     Unit     `json:"unit"`

	// Reported is false when the helper's state file could not be read.
	// Port is its report, 0 for none; Since is when it became that, Age
	// how long ago (seconds). Lease is the lease loop's one-line status,
	// AppStatus one line per torrent client.
	Reported  bool       `json:"reported"`
	Port      uint16     `json:"port"`
	Since     *time.Time `json:"since,omitempty"`
	Age       *int64     `json:"ageSeconds,omitempty"`
	Lease     string     `json:"lease,omitempty"`
	AppStatus []string   `json:"appStatus,omitempty"`
	// Open is the forwarded_ports set of the namespace's table (nil: not
	// read).
	Open []uint16 `json:"open"`
}

// portForwarding collects the configuration, the lease unit and the
// helper's report (below c.Paths.RuntimeDir); Open is the kernel's part.
func (c Collector) portForwarding(p *plan.Namespace, props map[string]systemd.Props) *PortForwarding {
	pf := p.PortForwarding
	u := units.Instance(units.PfTemplate, p.Name)
	out := &PortForwarding{Protocol: pf.Protocol, StaticPort: pf.StaticPort, Apps: []string{}, HookUnit: pf.HookUnit, Unit: unitOf(u, props[u])}
	if pf.Gateway.IsValid() {
		out.Gateway = pf.Gateway.String()
	}
	for _, a := range pf.Apps {
		out.Apps = append(out.Apps, a.Type+" "+a.URL)
	}
	rel := strings.TrimPrefix(portfwd.StatePath(p.Name), plan.RuntimeDir)
	st, err := portfwd.LoadStateFile(filepath.Join(c.Paths.RuntimeDir, rel))
	if err != nil {
		return out
	}
	out.Reported, out.Port, out.Lease, out.AppStatus = true, st.Port, st.Lease, st.Apps
	if !st.Since.IsZero() {
		since := st.Since
		age := int64(c.Now.Sub(since) / time.Second)
		out.Since, out.Age = &since, &age
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

// portForward compares the lease helper's report with the firewall (read
// while the namespace runs): the set must hold exactly the reported port.
func (a *assessor) portForward() {
	pf := a.n.PortForwarding
	if pf == nil {
		return
	}
	unit := pf.Unit.Name
	active := pf.Unit.ActiveState == "active"
	if pf.Open != nil && pf.Protocol != plan.PortForwardStatic {
		switch {
		case pf.Port == 0 && len(pf.Open) > 0:
			a.problem(StateDegraded, "the firewall accepts forwarded port(s) %v inbound but %s reports no lease (restart %s)", pf.Open, unit, unit)
		case pf.Port != 0 && (len(pf.Open) != 1 || pf.Open[0] != pf.Port):
			a.problem(StateDegraded, "%s reports port %d but the firewall's forwarded_ports holds %v (restart %s)", unit, pf.Port, pf.Open, unit)
		}
	}
	switch {
	case !pf.Reported && active:
		a.note("%s runs but has not reported yet", unit)
	case pf.Port == 0 && active && pf.Lease != "":
		a.note("no forwarded port yet: %s (journalctl -u %s)", pf.Lease, unit)
	}
}

func (n *Namespace) writePortForwarding(p printer) {
	pf := n.PortForwarding
	if pf == nil {
		return
	}
	via := ""
	if pf.Gateway != "" {
		via = " via " + pf.Gateway
	}
	var head string
	switch {
	case pf.StaticPort != 0:
		head = fmt.Sprintf("%s port %d", pf.Protocol, pf.StaticPort)
	case pf.Reported && pf.Port != 0:
		head = fmt.Sprintf("%d (%s)%s", pf.Port, pf.Protocol, pf.ageText(", for"))
	case pf.Reported:
		head = fmt.Sprintf("%s%s: no forwarded port%s", pf.Protocol, via, pf.ageText(" since"))
	default:
		head = fmt.Sprintf("%s%s: no report from the lease helper", pf.Protocol, via)
	}
	p.row("port fwd", "%s; %s", head, unitText(pf.Unit))
	if pf.Lease != "" {
		p.more("lease: %s", pf.Lease)
	}
	if pf.Open != nil {
		p.more("firewall: forwarded_ports %s", portsText(pf.Open))
	}
	if len(pf.Apps) > 0 {
		p.more("apps: %s", strings.Join(pf.Apps, ", "))
	}
	for _, a := range pf.AppStatus {
		p.more("%s", a)
	}
	if pf.HookUnit != "" {
		p.more("hook: %s", pf.HookUnit)
	}
}

func (pf *PortForwarding) ageText(prefix string) string {
	if pf.Age == nil {
		return ""
	}
	return prefix + " " + durationText(time.Duration(*pf.Age)*time.Second)
}

func portsText(ps []uint16) string {
	if len(ps) == 0 {
		return "empty (nothing accepted inbound)"
	}
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprint(p))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}
