package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Known says which sources could be read; what was not read is never
// taken as "absent".
type Known struct {
	Systemd bool
	Kernel  bool
}

var severity = map[string]int{StateDown: 0, StateUp: 0, StateUnknown: 1, StateDegraded: 2, StateFailed: 3, StateUnsafe: 4}

type assessor struct {
	n     *Namespace
	state string
}

func (a *assessor) problem(state, format string, args ...any) {
	a.n.Problems = append(a.n.Problems, fmt.Sprintf(format, args...))
	if severity[state] > severity[a.state] || a.state == "" {
		a.state = state
	}
}

// advice is a problem that leaves the state as it is: the namespace
// works, but not as its file says.
func (a *assessor) advice(format string, args ...any) {
	a.n.Problems = append(a.n.Problems, fmt.Sprintf(format, args...))
}

func (a *assessor) note(format string, args ...any) {
	a.n.Notes = append(a.n.Notes, fmt.Sprintf(format, args...))
}

func (n *Namespace) unit(template string) *Unit {
	name := units.Instance(template, n.Name)
	for i := range n.Units {
		if n.Units[i].Name == name {
			return &n.Units[i]
		}
	}
	return nil
}

// Assess sets n.State and adds problems and notes from the collected
// facts. Problems are ordered by the check that found them.
func Assess(n *Namespace, k Known, now time.Time) {
	a := &assessor{n: n}
	if n.Problems == nil {
		n.Problems = []string{}
	}
	if n.Notes == nil {
		n.Notes = []string{}
	}

	// Confinement broken: act now.
	for _, u := range n.Confined {
		if u.InNamespace != nil && !*u.InNamespace {
			a.problem(StateUnsafe, "%s (PID %d) runs OUTSIDE the namespace: it is in %s, not %s", u.Name, u.MainPID, u.ProcessNetns, n.Netns.ID)
		}
	}
	if n.Netns.Present && k.Kernel {
		if n.Firewall == nil {
			a.problem(StateUnsafe, "%s exists without table inet vpn_confinement: there is no kill switch", n.Netns.Path)
		} else if open := openHooks(n.Firewall.Chains); len(open) > 0 {
			a.problem(StateUnsafe, "table inet vpn_confinement has no policy-drop chain for %s", strings.Join(open, ", "))
		}
	}

	// Failed units.
	for _, u := range append(append([]Unit{}, n.Units...), n.Confined...) {
		if u.ActiveState == "failed" {
			a.problem(StateFailed, "%s failed (%s); see: journalctl -u %s", u.Name, u.SubState, u.Name)
		}
	}

	ns := n.unit(units.NsTemplate)
	nsActive := ns != nil && ns.ActiveState == "active"
	switch {
	case !n.Netns.Present:
		if k.Systemd && nsActive {
			a.problem(StateDegraded, "%s is active but %s is missing", ns.Name, n.Netns.Path)
		}
		for _, u := range n.Confined {
			if u.ActiveState == "active" && strings.HasSuffix(u.Name, ".service") && u.InNamespace == nil {
				a.note("%s is active while the namespace is absent", u.Name)
			}
		}
		if a.state == "" {
			a.state = StateDown
		}
	case !k.Kernel:
		if a.state == "" {
			a.state = StateUnknown
		}
	default:
		if k.Systemd && !nsActive {
			a.problem(StateDegraded, "%s exists but %s is not active: a left-over namespace? (systemctl restart %s)", n.Netns.Path, units.Instance(units.NsTemplate, n.Name), units.Instance(units.NsTemplate, n.Name))
		}
		a.tunnel(now)
		a.dnsAndLinks()
		a.assessPublished(k)
		a.portForward()
		if a.state == "" {
			a.state = StateUp
		}
	}
	// The round-2 sections (each in its own file).
	a.supervisor(now)
	a.tripwire()
	a.portfwd()
	a.pending()
	if a.state == "" {
		a.state = StateUp
	}
	n.State = a.state
}

func openHooks(chains []kstate.Chain) []string {
	policy := map[string]string{}
	for _, c := range chains {
		if c.Hook != "" && policy[c.Hook] != "drop" {
			policy[c.Hook] = c.Policy
		}
	}
	var open []string
	for _, h := range []string{"input", "forward", "output"} {
		if policy[h] != "drop" {
			open = append(open, h)
		}
	}
	return open
}

func (a *assessor) tunnel(now time.Time) {
	n := a.n
	t := n.Tunnel
	switch {
	case !t.Present:
		a.problem(StateDegraded, "the tunnel interface %s is missing: confined services have no network (systemctl status %s)", t.Interface, units.Instance(units.WgTemplate, n.Name))
		return
	case !t.Up:
		a.problem(StateDegraded, "the tunnel interface %s is down", t.Interface)
		return
	}
	for _, p := range t.Peers {
		short := p.PublicKey
		if !p.OnDevice {
			a.problem(StateDegraded, "peer %s is configured but missing on %s", short, t.Interface)
			continue
		}
		switch {
		case p.LatestHandshake == nil:
			if p.Keepalive > 0 {
				a.problem(StateDegraded, "no handshake with peer %s yet, although persistentKeepalive is %ds (endpoint %s unreachable, or wrong keys?)", short, p.Keepalive, p.ConfiguredEndpoint)
			} else {
				a.note("no handshake with peer %s yet (WireGuard handshakes when there is traffic)", short)
			}
		case now.Sub(*p.LatestHandshake) > HandshakeStale+time.Duration(p.Keepalive)*time.Second:
			age := now.Sub(*p.LatestHandshake).Round(time.Second)
			if p.Keepalive > 0 {
				a.problem(StateDegraded, "last handshake with peer %s was %s ago, although persistentKeepalive is %ds: the session has expired", short, age, p.Keepalive)
			} else {
				a.note("last handshake with peer %s was %s ago (idle tunnel: it handshakes again on traffic)", short, age)
			}
		}
	}
}

func (a *assessor) dnsAndLinks() {
	n := a.n
	if n.DNS.Mode == "strict" {
		switch {
		case n.DNS.Generated == nil:
			a.problem(StateDegraded, "the generated %s is missing: confined services cannot start (restart %s)", n.DNS.ResolvConf, units.Instance(units.NsTemplate, n.Name))
		case !n.DNS.Current && (n.Pending == nil || !n.Pending.Pending):
			// (With a pending plan, the pending-plan problem says what to do.)
			a.problem(StateDegraded, "the generated resolv.conf (nameserver %s) is not what the current plan generates (nameserver %s): systemctl reload %s rewrites it in place", strings.Join(n.DNS.Generated, ", "), strings.Join(n.DNS.Servers, ", "), units.Instance(units.NsTemplate, n.Name))
		}
	}
	if p := n.Pinning; p != nil && p.Firewall == nil && n.Tunnel.Present {
		a.problem(StateDegraded, "endpoint pinning is on but table inet %s is missing in the socket namespace %s (systemctl status %s)", p.Table, p.Namespace, units.Instance(units.PinTemplate, n.Name))
	}
	if h := n.HostLink; h != nil {
		if !h.HostPresent {
			a.problem(StateDegraded, "host link: %s is missing on the host", h.HostIf)
		} else if !h.HostUp {
			a.problem(StateDegraded, "host link: %s is down", h.HostIf)
		}
		if !h.NsPresent {
			a.problem(StateDegraded, "host link: %s is missing in the namespace", h.NsIf)
		}
	}
}
