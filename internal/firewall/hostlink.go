package firewall

import "github.com/vpn-confinement/vpn-confinement/internal/plan"

// HostLinkTablePrefix starts the name of the host-side table of a host
// link: inet vpnc_hostlink_NAME, in the host's namespace.
const HostLinkTablePrefix = "vpnc_hostlink_"

// BuildHostLink compiles the host side of namespace n's host link: what
// arrives from the namespace over the link is accepted only as replies to
// the host's own connections (publishToHost) and as new connections to the
// egress.toHost ports of the host's end of the link; everything else from
// the link is dropped and counted, and nothing is forwarded from or to it
// (even with ip_forward on, the link never leads to the LAN). The chains'
// policy is accept: the host's other traffic is none of our business.
// Returns nil without a host link.
func BuildHostLink(n *plan.Namespace) *Ruleset {
	hl := n.HostLink
	if hl == nil || !hl.HostAddr.Unmap().Is4() || hl.HostIf == "" {
		return nil
	}
	r := &Ruleset{Table: HostLinkTablePrefix + n.Name}
	in := &Chain{Name: "input", Hook: "input", Policy: Accept}
	in.Rules = append(in.Rules, rule(Accept, iif(hl.HostIf), ctState(CtEstablished|CtRelated)))
	from := func(ms ...Match) []Match {
		return append([]Match{iif(hl.HostIf), {Field: FieldIPSAddr, Addr: hl.NsAddr.Unmap()}, {Field: FieldIPDAddr, Addr: hl.HostAddr.Unmap()}}, ms...)
	}
	if ps := uniquePorts(n.Egress.ToHostTCP); len(ps) > 0 {
		r.Sets = append(r.Sets, &Set{Name: SetToHostTCP, Type: TypeInetService, Ports: ps})
		in.Rules = append(in.Rules, counted(Accept, from(inSet(FieldTCPDPort, SetToHostTCP))...))
	}
	if ps := uniquePorts(n.Egress.ToHostUDP); len(ps) > 0 {
		r.Sets = append(r.Sets, &Set{Name: SetToHostUDP, Type: TypeInetService, Ports: ps})
		in.Rules = append(in.Rules, counted(Accept, from(inSet(FieldUDPDPort, SetToHostUDP))...))
	}
	in.Rules = append(in.Rules, counted(Drop, iif(hl.HostIf)))
	fwd := &Chain{Name: "forward", Hook: "forward", Policy: Accept, Rules: []Rule{
		counted(Drop, iif(hl.HostIf)),
		rule(Drop, oif(hl.HostIf)),
	}}
	r.Chains = []*Chain{in, fwd}
	return r
}
