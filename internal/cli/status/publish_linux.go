//go:build linux

package status

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
)

// publishUnits are the socket and holder units of every publish entry.
func publishUnits(p *plan.Namespace) []string {
	var out []string
	for _, pb := range p.Publish {
		out = append(out, pb.Unit+".socket", holderOf(pb))
	}
	return out
}

func holderOf(pb plan.Publish) string {
	if pb.Activate != "" {
		return pb.Activate
	}
	return pb.Unit + ".service"
}

// published fills the publish entries and host exceptions from the plan
// and the unit states.
func published(n *Namespace, p *plan.Namespace, props map[string]systemd.Props) {
	n.Published = []Published{}
	for _, pb := range p.Publish {
		e := Published{Unit: pb.Unit, Port: pb.Port, Activate: pb.Activate, BindToDevice: pb.BindToDevice, Listen: []PublishedAddr{},
			Socket: unitOf(pb.Unit+".socket", props[pb.Unit+".socket"]), Service: unitOf(holderOf(pb), props[holderOf(pb)])}
		for _, l := range pb.Listen {
			e.Listen = append(e.Listen, PublishedAddr{Address: l, Holders: []string{}})
		}
		n.Published = append(n.Published, e)
	}
	if h := p.HostLink; h != nil && len(p.Egress.ToHostTCP)+len(p.Egress.ToHostUDP) > 0 {
		n.ToHost = &ToHost{Address: h.HostAddr.String(), TCP: p.Egress.ToHostTCP, UDP: p.Egress.ToHostUDP,
			Connections: map[uint16]int{}, Table: firewall.HostLinkTablePrefix + p.Name}
		if n.ToHost.TCP == nil {
			n.ToHost.TCP = []uint16{}
		}
		if n.ToHost.UDP == nil {
			n.ToHost.UDP = []uint16{}
		}
	}
}

// hostSide reads, in the host's namespace, who listens on the published
// addresses and the connections they and the host exceptions carry, and
// the host-side table's counters.
func (c Collector) hostSide(n *Namespace, p *plan.Namespace, host *netns.NetNS) {
	if len(n.Published) == 0 && n.ToHost == nil {
		return
	}
	socks, err := sockdiag.TCP(host)
	if err != nil {
		n.Errors = append(n.Errors, fmt.Sprintf("host sockets: %v", err))
		return
	}
	var inodes []uint32
	for _, s := range socks {
		if s.State == sockdiag.StateListen {
			inodes = append(inodes, s.Inode)
		}
	}
	holders := sockdiag.Holders(c.Paths.Proc, inodes)
	for i := range n.Published {
		e := &n.Published[i]
		e.KernelRead = true
		for j := range e.Listen {
			l := &e.Listen[j]
			ap, ok := sockdiag.ParseListen(l.Address)
			if !ok {
				continue
			}
			for _, s := range sockdiag.Listeners(socks, ap) {
				l.Listening = true
				for _, h := range holders[s.Inode] {
					if h.PID == 1 {
						l.HeldBySystemd = true
					} else {
						l.Holders = append(l.Holders, h.String())
					}
				}
			}
			l.Connections = sockdiag.Accepted(socks, ap)
			e.Connections += l.Connections
		}
	}
	if t := n.ToHost; t != nil {
		t.KernelRead = true
		h := p.HostLink
		for _, port := range t.TCP {
			t.Connections[port] = sockdiag.Between(socks, netipAddrPort(h.HostAddr, port), h.NsAddr.Unmap())
		}
		m, err := firewall.Counters(host, t.Table)
		if err == nil && len(m) > 0 {
			t.TablePresent = true
			t.AcceptedTCP = m["input @"+firewall.SetToHostTCP+" accept"].Packets
			t.AcceptedUDP = m["input @"+firewall.SetToHostUDP+" accept"].Packets
			t.Dropped = m["input drop"].Packets + m["forward drop"].Packets
		} else if err != nil && !isNotFound(err) {
			n.Errors = append(n.Errors, fmt.Sprintf("table inet %s: %v", t.Table, err))
		}
	}
}

func netipAddrPort(a netip.Addr, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Unmap(), port)
}

func isNotFound(err error) bool { return errors.Is(err, fs.ErrNotExist) }
