package config

import (
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// compileIngressAndHostLink handles ingress ports, publishToHost and the
// host link. The subnet of an auto-allocated host link is filled in by
// CompileAll, which sees every namespace.
func (c *compiler) compileIngressAndHostLink(n *plan.Namespace) {
	s := &c.d.schema
	n.Ingress.FromTunnelTCP = c.ports("ingress.fromTunnel.tcp", s.Ingress.FromTunnel.TCP)
	n.Ingress.FromTunnelUDP = c.ports("ingress.fromTunnel.udp", s.Ingress.FromTunnel.UDP)
	fromHost := c.ports("ingress.fromHost.tcp", s.Ingress.FromHost.TCP)
	publish := c.ports("publishToHost.tcp", s.PublishToHost.TCP)
	merged := map[uint16]bool{}
	for _, p := range append(append([]uint16{}, fromHost...), publish...) {
		merged[p] = true
	}
	for p := range merged {
		n.Ingress.FromHostTCP = append(n.Ingress.FromHostTCP, p)
	}
	sortPorts(n.Ingress.FromHostTCP)

	// Unlike the reference, publishToHost makes the link effective for
	// ingress.fromHost too: both mean "host may connect to these ports".
	toHost := len(n.Egress.ToHostTCP)+len(n.Egress.ToHostUDP) > 0
	if len(publish) > 0 {
		c.warnf("publishToHost", "publishToHost opens the port only on the namespace's host-link address (169.254.x.y), not on the host's localhost or LAN; publish: [{listen: 127.0.0.1:PORT}] serves it there without a host link")
	}
	effective := boolean(s.HostLink.Enable, false) || len(publish) > 0 || len(fromHost) > 0 || toHost
	if !effective {
		for _, k := range []struct {
			key string
			set bool
		}{{"hostLink.hostIf", s.HostLink.HostIf != nil}, {"hostLink.nsIf", s.HostLink.NsIf != nil}, {"hostLink.subnetIPv4", s.HostLink.SubnetIPv4 != nil}} {
			if k.set {
				c.warnf(k.key, "has no effect: the host link is disabled (set hostLink.enable: true or publish a port)")
			}
		}
		return
	}
	if s.HostLink.Enable != nil && !*s.HostLink.Enable {
		c.errorf("hostLink.enable", "is false but ingress.fromHost/publishToHost/egress.toHost need the host link")
	}
	hl := &plan.HostLink{
		HostIf: str(s.HostLink.HostIf, DeriveHostIf(c.name)),
		NsIf:   str(s.HostLink.NsIf, DeriveNsIf(c.name)),
	}
	if !ValidInterfaceName(hl.HostIf) {
		c.errorf("hostLink.hostIf", "must be 1-15 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit (got %q)", hl.HostIf)
	}
	if !ValidInterfaceName(hl.NsIf) {
		c.errorf("hostLink.nsIf", "must be 1-15 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit (got %q)", hl.NsIf)
	}
	if hl.HostIf == hl.NsIf {
		c.errorf("hostLink.nsIf", "must differ from hostLink.hostIf")
	}
	if hl.HostIf == n.WireGuard.Interface {
		c.errorf("hostLink.hostIf", "must differ from wireguard.interface")
	}
	if hl.NsIf == n.WireGuard.Interface {
		c.errorf("hostLink.nsIf", "must differ from wireguard.interface")
	}
	if s.HostLink.SubnetIPv4 != nil {
		p, ok := ParseSubnet30(*s.HostLink.SubnetIPv4)
		switch {
		case !ok:
			c.errorf("hostLink.subnetIPv4", "must be an IPv4 /30 network base such as 169.254.10.0/30 (last octet a multiple of 4, at most 252) (got %q)", *s.HostLink.SubnetIPv4)
		case ReservedLinkLocal(p):
			c.errorf("hostLink.subnetIPv4", "%s lies in a reserved link-local range (169.254.0.0/24 and 169.254.255.0/24 are reserved by RFC 3927; 169.254.169.0/24 holds the cloud metadata address 169.254.169.254)", p)
		default:
			setHostLinkSubnet(hl, p)
			c.manualHL = true
		}
	}
	n.HostLink = hl
}

func setHostLinkSubnet(hl *plan.HostLink, p netip.Prefix) {
	hl.Subnet = p
	hl.HostAddr = addrAdd(p.Addr(), 1)
	hl.NsAddr = addrAdd(p.Addr(), 2)
}

func sortPorts(ps []uint16) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j] < ps[j-1]; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}
