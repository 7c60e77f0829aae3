package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/hostlink"
)

// localNet is a network the host reaches without its default route: the
// prefix of one of its addresses, or a more specific route (a LAN, a
// site-to-site VPN), with the interface it goes out of.
type localNet struct {
	prefix netip.Prefix
	dev    string
}

func (n localNet) String() string { return fmt.Sprintf("%s (%s)", n.prefix, n.dev) }

func (d *doctor) hostNets() ([]localNet, []kstate.Link, error) {
	if d.o.Host.Links == nil {
		return nil, nil, fmt.Errorf("not available")
	}
	links, err := d.o.Host.Links()
	if err != nil {
		return nil, nil, err
	}
	var nets []localNet
	for _, l := range links {
		if l.Kind == "loopback" || ownAlias(l) {
			continue
		}
		for _, a := range l.Addrs {
			if a.Addr().IsLinkLocalUnicast() && a.Addr().Is6() {
				continue // every IPv6 link has fe80::/64
			}
			nets = append(nets, localNet{a.Masked(), l.Name})
		}
	}
	if d.o.Host.Routes != nil {
		own := map[string]bool{}
		for _, l := range links {
			own[l.Name] = ownAlias(l) || l.Kind == "loopback"
		}
		routes, err := d.o.Host.Routes()
		if err != nil {
			return nil, nil, err
		}
		for _, r := range routes {
			if r.Dst.Bits() == 0 || own[r.Dev] || (r.Dst.Addr().Is6() && r.Dst.Addr().IsLinkLocalUnicast()) {
				continue
			}
			dup := false
			for _, n := range nets {
				dup = dup || n.prefix == r.Dst
			}
			if !dup {
				nets = append(nets, localNet{r.Dst, r.Dev})
			}
		}
	}
	return nets, links, nil
}

// routes checks the addresses a configuration relies on against the host's
// network: endpoints must be reachable from the socket namespace (and not
// through another tunnel), while resolvers and routed networks that lie in
// the host's local networks are reached through the tunnel instead, which
// is rarely what a LAN address in the configuration means.
func (d *doctor) routes() {
	if len(d.plans) == 0 {
		d.add("routes", check.OK, "no namespaces to check")
		return
	}
	nets, _, err := d.hostNets()
	if err != nil {
		d.add("routes", check.Warn, "cannot read the host's addresses: %v", err)
		return
	}
	var fails, warns []string
	overlap := func(p netip.Prefix) *localNet {
		for i := range nets {
			if nets[i].prefix.Overlaps(p) {
				return &nets[i]
			}
		}
		return nil
	}
	for _, n := range d.plans {
		for _, s := range n.DNS.Servers {
			if ln := overlap(netip.PrefixFrom(s, s.BitLen())); ln != nil {
				warns = append(warns, fmt.Sprintf("%s: resolver %s is in the host's local network %s, but the namespace reaches it through the tunnel", n.Name, s, ln))
			}
		}
		for _, p := range n.WireGuard.Peers {
			for _, a := range p.AllowedIPs {
				if a.Bits() == 0 {
					continue
				}
				if ln := overlap(a); ln != nil {
					warns = append(warns, fmt.Sprintf("%s: allowedIPs %s overlaps the host's local network %s: confined services reach it through the tunnel, not locally", n.Name, a, ln))
				}
			}
		}
		if d.o.Host.RouteTo == nil {
			continue
		}
		sock := n.WireGuard.SocketNamespace
		where := "the host"
		if sock != "" {
			where = "socket namespace " + sock
		}
		for _, p := range n.WireGuard.Peers {
			if p.Endpoint == nil || p.Endpoint.IsHostname() {
				continue
			}
			ep, err := netip.ParseAddr(p.Endpoint.Host)
			if err != nil {
				continue
			}
			rt, err := d.o.Host.RouteTo(sock, ep)
			switch {
			case err != nil:
				fails = append(fails, fmt.Sprintf("%s: no route from %s to endpoint %s: %v", n.Name, where, ep, err))
			case tunnelLike(rt.Dev):
				warns = append(warns, fmt.Sprintf("%s: endpoint %s is routed through %s, another tunnel on %s", n.Name, ep, rt.Dev, where))
			case strings.HasPrefix(rt.Dev, "vh-") || strings.HasPrefix(rt.Dev, "vn-"):
				fails = append(fails, fmt.Sprintf("%s: endpoint %s is routed into a confinement namespace's host link (%s)", n.Name, ep, rt.Dev))
			}
		}
	}
	switch {
	case len(fails) > 0:
		d.add("routes", check.Fail, "%s", strings.Join(append(fails, warns...), "; "))
	case len(warns) > 0:
		d.add("routes", check.Warn, "%s", strings.Join(warns, "; "))
	default:
		d.add("routes", check.OK, "endpoints are routable, and no resolver or allowedIPs lies in the host's local networks")
	}
}

func tunnelLike(dev string) bool {
	for _, p := range []string{"wg", "tun", "tap", "ppp", "tailscale", "zt"} {
		if strings.HasPrefix(dev, p) {
			return true
		}
	}
	return false
}

// hostLinks checks that each host-link /30 is free on the host and that
// no foreign interface already has the host-side name.
func (d *doctor) hostLinks() {
	var withLink int
	for _, n := range d.plans {
		if n.HostLink != nil {
			withLink++
		}
	}
	if withLink == 0 {
		d.add("host-link", check.OK, "no namespace uses a host link")
		return
	}
	_, links, err := d.hostNets()
	if err != nil {
		d.add("host-link", check.Warn, "cannot read the host's addresses: %v", err)
		return
	}
	var fails []string
	var ok []string
	for _, n := range d.plans {
		hl := n.HostLink
		if hl == nil {
			continue
		}
		own := hostlink.Alias(n.Name)
		for _, l := range links {
			if l.Name == hl.HostIf && l.Alias != own {
				fails = append(fails, fmt.Sprintf("%s: interface %s exists on the host and is not this namespace's (alias %q): vpn-ns@%s will refuse to start", n.Name, l.Name, l.Alias, n.Name))
			}
			if l.Alias == own || l.Kind == "loopback" {
				continue
			}
			for _, a := range l.Addrs {
				if a.Overlaps(hl.Subnet) {
					fails = append(fails, fmt.Sprintf("%s: host-link subnet %s collides with %s on %s; set hostLink.subnetIPv4", n.Name, hl.Subnet, a, l.Name))
				}
			}
		}
		ok = append(ok, fmt.Sprintf("%s %s", n.Name, hl.Subnet))
	}
	if len(fails) > 0 {
		d.add("host-link", check.Fail, "%s", strings.Join(fails, "; "))
		return
	}
	d.add("host-link", check.OK, "free on the host: %s", strings.Join(ok, ", "))
}
