package firewall

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// TableName is the filter table inside every confinement namespace (each
// namespace has its own, so one name serves all).
const TableName = "vpn_confinement"

// Names of the sets of the namespace table, in declaration order.
const (
	SetDNSServersV4   = "dns_servers_v4"
	SetDNSServersV6   = "dns_servers_v6"
	SetDNSBlocked     = "dns_blocked_ports"
	SetAllowedTCP     = "allowed_tcp_ports"
	SetAllowedUDP     = "allowed_udp_ports"
	SetAllowedV4      = "allowed_ipv4_cidrs"
	SetAllowedV6      = "allowed_ipv6_cidrs"
	SetHostTCP        = "host_tcp_ports"
	SetTunnelTCP      = "tunnel_tcp_ports"
	SetTunnelUDP      = "tunnel_udp_ports"
	SetPinEndpointsV4 = "endpoints_v4"
	SetPinEndpointsV6 = "endpoints_v6"
	SetToHostTCP      = "to_host_tcp"
	SetToHostUDP      = "to_host_udp"
	// SetForwarded holds the provider-forwarded port(s), accepted inbound
	// on the tunnel (TCP and UDP). It always exists with port forwarding,
	// empty until a lease; the lease helper replaces its elements in one
	// transaction (UpdatePorts) and a reload carries them over.
	SetForwarded = "forwarded_ports"
)

// Gateway ports of the port-forwarding protocols (egress to the gateway
// is allowed for exactly this port even in allowList mode).
const (
	NATPMPPort = 5351
	PIAPort    = 19999
)

// DNSBlockedPorts are dropped on every output interface in strict DNS mode
// (after the allowed resolvers): DNS, DNS over TLS, mDNS, LLMNR.
var DNSBlockedPorts = []uint16{53, 853, 5353, 5355}

// ICMP error types let through to allow-listed destinations with
// AllowEssentialICMP (path MTU discovery and error reporting).
var (
	essentialICMP   = []uint32{3, 11, 12}  // destination-unreachable, time-exceeded, parameter-problem
	essentialICMPv6 = []uint32{1, 2, 3, 4} // destination-unreachable, packet-too-big, time-exceeded, parameter-problem
)

// Match constructors, so the builders read like the nft rules they make.

func iif(name string) Match           { return Match{Field: FieldIIFName, Name: name} }
func oif(name string) Match           { return Match{Field: FieldOIFName, Name: name} }
func ctState(bits uint32) Match       { return Match{Field: FieldCtState, Value: bits} }
func nfproto(p uint32) Match          { return Match{Field: FieldNFProto, Value: p} }
func l4proto(p uint32) Match          { return Match{Field: FieldL4Proto, Value: p} }
func mark(m uint32) Match             { return Match{Field: FieldMark, Value: m} }
func inSet(f Field, set string) Match { return Match{Field: f, Set: set} }
func is(f Field, v uint32) Match      { return Match{Field: f, Value: v} }

func rule(v Verdict, ms ...Match) Rule { return Rule{Matches: ms, Verdict: v} }

func counted(v Verdict, ms ...Match) Rule { return Rule{Matches: ms, Counter: true, Verdict: v} }

// Build compiles the filter table of namespace n (reference §3.1/§3.2, rule
// order preserved, with the reference's defects designed out):
//   - every rule that names a set is emitted only together with that set, and
//     sets whose element list would be empty are omitted with their rules, so
//     no mode/option combination can reference an undeclared set;
//   - CIDRs are normalized and merged into disjoint ranges here again, so
//     overlapping input can never produce "conflicting intervals";
//   - the strict-DNS drops apply on every output interface, not only the
//     tunnel;
//   - CIDRs that end up unusable (IPv6 CIDRs with IPv6 disabled) still count
//     as "destination-constrained": ports then allow nothing rather than any
//     destination (fail closed);
//   - both base filter chains end in a counted drop, so drops are observable.
//
// Unknown DNS modes are treated as strict and unknown egress modes allow
// nothing but DNS: anything unexpected fails closed.
func Build(n *plan.Namespace) *Ruleset {
	wg := n.WireGuard.Interface
	strict := n.DNS.Mode != plan.DNSCompat
	r := &Ruleset{Table: TableName}
	addSet := func(s *Set) bool {
		if s.Len() == 0 {
			return false
		}
		r.Sets = append(r.Sets, s)
		return true
	}

	// Sets, in the reference's declaration order (plus the ingress sets).
	var dns4, dns6 bool
	if strict {
		v4, v6 := splitAddrs(n.DNS.Servers)
		dns4 = addSet(&Set{Name: SetDNSServersV4, Type: TypeIPv4Addr, Addrs: v4})
		if n.IPv6 {
			dns6 = addSet(&Set{Name: SetDNSServersV6, Type: TypeIPv6Addr, Addrs: v6})
		}
		addSet(&Set{Name: SetDNSBlocked, Type: TypeInetService, Ports: uniquePorts(DNSBlockedPorts)})
	}
	allowList := n.Egress.Mode == plan.EgressAllowList
	var tcp, udp, c4, c6 bool
	if allowList {
		tcp = addSet(&Set{Name: SetAllowedTCP, Type: TypeInetService, Ports: uniquePorts(n.Egress.AllowedTCPPorts)})
		udp = addSet(&Set{Name: SetAllowedUDP, Type: TypeInetService, Ports: uniquePorts(n.Egress.AllowedUDPPorts)})
		r4, r6 := MergeCIDRs(n.Egress.AllowedCIDRs)
		c4 = addSet(&Set{Name: SetAllowedV4, Type: TypeIPv4Addr, Interval: true, Ranges: r4})
		if n.IPv6 {
			c6 = addSet(&Set{Name: SetAllowedV6, Type: TypeIPv6Addr, Interval: true, Ranges: r6})
		}
	}
	hl := n.HostLink
	haveHL := hl != nil && hl.HostAddr.Unmap().Is4() && hl.NsIf != ""
	host := haveHL && addSet(&Set{Name: SetHostTCP, Type: TypeInetService, Ports: uniquePorts(n.Ingress.FromHostTCP)})
	ttcp := addSet(&Set{Name: SetTunnelTCP, Type: TypeInetService, Ports: uniquePorts(n.Ingress.FromTunnelTCP)})
	tudp := addSet(&Set{Name: SetTunnelUDP, Type: TypeInetService, Ports: uniquePorts(n.Ingress.FromTunnelUDP)})
	toTCP := haveHL && addSet(&Set{Name: SetToHostTCP, Type: TypeInetService, Ports: uniquePorts(n.Egress.ToHostTCP)})
	toUDP := haveHL && addSet(&Set{Name: SetToHostUDP, Type: TypeInetService, Ports: uniquePorts(n.Egress.ToHostUDP)})
	pf := n.PortForwarding
	if pf != nil {
		fw := &Set{Name: SetForwarded, Type: TypeInetService}
		if pf.StaticPort != 0 {
			fw.Ports = []uint16{pf.StaticPort}
		}
		r.Sets = append(r.Sets, fw) // declared even when empty
	}

	// input
	in := &Chain{Name: "input", Hook: "input", Policy: Drop}
	in.Rules = append(in.Rules, rule(Accept, iif("lo")), rule(Drop, ctState(CtInvalid)))
	if !n.IPv6 {
		in.Rules = append(in.Rules, rule(Drop, nfproto(NFProtoIPv6)))
	}
	in.Rules = append(in.Rules, rule(Accept, ctState(CtEstablished|CtRelated)))
	if host {
		in.Rules = append(in.Rules, rule(Accept, iif(hl.NsIf),
			Match{Field: FieldIPSAddr, Addr: hl.HostAddr.Unmap()}, inSet(FieldTCPDPort, SetHostTCP)))
	}
	if ttcp {
		in.Rules = append(in.Rules, rule(Accept, iif(wg), inSet(FieldTCPDPort, SetTunnelTCP)))
	}
	if tudp {
		in.Rules = append(in.Rules, rule(Accept, iif(wg), inSet(FieldUDPDPort, SetTunnelUDP)))
	}
	if pf != nil {
		in.Rules = append(in.Rules, counted(Accept, iif(wg), inSet(FieldTCPDPort, SetForwarded)),
			rule(Accept, iif(wg), inSet(FieldUDPDPort, SetForwarded)))
	}
	in.Rules = append(in.Rules, counted(Drop))

	fwd := &Chain{Name: "forward", Hook: "forward", Policy: Drop}

	// output
	out := &Chain{Name: "output", Hook: "output", Policy: Drop}
	add := func(rs ...Rule) { out.Rules = append(out.Rules, rs...) }
	add(rule(Accept, oif("lo")), rule(Drop, ctState(CtInvalid)))
	if !n.IPv6 {
		add(rule(Drop, nfproto(NFProtoIPv6)))
	}
	add(rule(Accept, ctState(CtEstablished|CtRelated)))
	if strict {
		// Resolvers are reachable only through the tunnel, only on 53.
		if dns4 {
			add(rule(Accept, oif(wg), inSet(FieldIPDAddr, SetDNSServersV4), is(FieldUDPDPort, 53)),
				rule(Accept, oif(wg), inSet(FieldIPDAddr, SetDNSServersV4), is(FieldTCPDPort, 53)))
		}
		if dns6 {
			add(rule(Accept, oif(wg), inSet(FieldIP6DAddr, SetDNSServersV6), is(FieldUDPDPort, 53)),
				rule(Accept, oif(wg), inSet(FieldIP6DAddr, SetDNSServersV6), is(FieldTCPDPort, 53)))
		}
		// Everything else DNS-like is dropped on any interface, before the
		// egress accepts, so an allow-listed 853 or 53 cannot reopen it.
		add(rule(Drop, is(FieldUDPDPort, 53)), rule(Drop, is(FieldTCPDPort, 53)),
			rule(Drop, inSet(FieldUDPDPort, SetDNSBlocked)), rule(Drop, inSet(FieldTCPDPort, SetDNSBlocked)))
	}
	if pf != nil && pf.Gateway.Is4() {
		// The lease protocol's own port on the gateway, and nothing more
		// of it, even in allowList mode.
		switch pf.Protocol {
		case plan.PortForwardNATPMP:
			add(rule(Accept, oif(wg), Match{Field: FieldIPDAddr, Addr: pf.Gateway}, is(FieldUDPDPort, NATPMPPort)))
		case plan.PortForwardPIA:
			add(rule(Accept, oif(wg), Match{Field: FieldIPDAddr, Addr: pf.Gateway}, is(FieldTCPDPort, PIAPort)))
		}
	}
	if toTCP {
		add(counted(Accept, oif(hl.NsIf), Match{Field: FieldIPDAddr, Addr: hl.HostAddr.Unmap()}, inSet(FieldTCPDPort, SetToHostTCP)))
	}
	if toUDP {
		add(counted(Accept, oif(hl.NsIf), Match{Field: FieldIPDAddr, Addr: hl.HostAddr.Unmap()}, inSet(FieldUDPDPort, SetToHostUDP)))
	}
	if allowList {
		add(egressRules(n, wg, tcp, udp, c4, c6)...)
	}
	if n.Egress.Mode == plan.EgressAllowAllTunnel {
		add(rule(Accept, oif(wg)))
	}
	add(counted(Drop))

	r.Chains = []*Chain{in, fwd, out}
	r.pruneSets()
	return r
}

// pruneSets drops sets no rule looks up (e.g. allowed_tcp_ports when the
// only CIDRs were IPv6 ones of an IPv4-only namespace): the table then holds
// exactly what its rules use, and the set list reads as the policy.
func (r *Ruleset) pruneSets() {
	used := map[string]bool{}
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				used[m.Set] = true
			}
		}
	}
	r.Sets = slices.DeleteFunc(r.Sets, func(s *Set) bool { return !used[s.Name] })
}

// egressRules is the allowList block. Ports combine with CIDRs as "CIDR AND
// port"; ports alone mean any destination through the tunnel; CIDRs alone
// mean any port. restricted is decided on the configured CIDRs, not on the
// sets that survived family filtering, so dropping the IPv6 CIDRs of an
// IPv4-only namespace never widens the rules to "any destination".
func egressRules(n *plan.Namespace, wg string, tcp, udp, c4, c6 bool) []Rule {
	restricted := len(n.Egress.AllowedCIDRs) > 0
	type fam struct {
		ok        bool
		daddr     Field
		set       string
		icmp      Field
		icmpTypes []uint32
	}
	fams := []fam{
		{c4, FieldIPDAddr, SetAllowedV4, FieldICMPType, essentialICMP},
		{c6, FieldIP6DAddr, SetAllowedV6, FieldICMPv6Type, essentialICMPv6},
	}
	var rs []Rule
	if !restricted {
		if tcp {
			rs = append(rs, rule(Accept, oif(wg), inSet(FieldTCPDPort, SetAllowedTCP)))
		}
		if udp {
			rs = append(rs, rule(Accept, oif(wg), inSet(FieldUDPDPort, SetAllowedUDP)))
		}
		return rs
	}
	if n.Egress.AllowEssentialICMP {
		for _, f := range fams {
			if f.ok {
				rs = append(rs, rule(Accept, oif(wg), inSet(f.daddr, f.set),
					Match{Field: f.icmp, List: f.icmpTypes}))
			}
		}
	}
	for _, p := range []struct {
		ok    bool
		field Field
		set   string
	}{{tcp, FieldTCPDPort, SetAllowedTCP}, {udp, FieldUDPDPort, SetAllowedUDP}} {
		if !p.ok {
			continue
		}
		for _, f := range fams {
			if f.ok {
				rs = append(rs, rule(Accept, oif(wg), inSet(f.daddr, f.set), inSet(p.field, p.set)))
			}
		}
	}
	if !tcp && !udp {
		for _, f := range fams {
			if f.ok {
				rs = append(rs, rule(Accept, oif(wg), inSet(f.daddr, f.set)))
			}
		}
	}
	return rs
}

// BuildPin compiles the endpoint pinning table for the socket birthplace
// namespace (reference §3.5, improved): the tunnel's outer UDP packets,
// recognised by the mark, may only go to the peer endpoints; one lookup in a
// concatenated address . port set per family replaces the reference's rule
// per peer, so UpdatePinEndpoints can swap endpoints without touching rules
// (counters survive). Both sets always exist, even empty, so an update can
// add either family. The chain's policy is accept: unmarked traffic of the
// birthplace is none of our business. Returns nil when pinning is off.
func BuildPin(n *plan.Namespace, endpoints []netip.AddrPort) *Ruleset {
	p := n.WireGuard.Pinning
	if p == nil {
		return nil
	}
	v4, v6 := SplitEndpoints(endpoints)
	return &Ruleset{
		Table: p.Table,
		Sets: []*Set{
			{Name: SetPinEndpointsV4, Type: TypeIPv4AddrService, AddrPorts: v4},
			{Name: SetPinEndpointsV6, Type: TypeIPv6AddrService, AddrPorts: v6},
		},
		Chains: []*Chain{{
			Name: "output", Hook: "output", Policy: Accept,
			Rules: []Rule{
				counted(Accept, mark(p.FwMark), inSet(FieldIPDAddrUDPDPort, SetPinEndpointsV4)),
				counted(Accept, mark(p.FwMark), inSet(FieldIP6DAddrUDPDPort, SetPinEndpointsV6)),
				counted(Drop, mark(p.FwMark), l4proto(ProtoUDP)),
			},
		}},
	}
}

// SplitEndpoints normalizes endpoints (IPv4-mapped IPv6 becomes IPv4, zones
// are dropped, invalid ones skipped) and splits them by family, sorted and
// unique.
func SplitEndpoints(eps []netip.AddrPort) (v4, v6 []netip.AddrPort) {
	for _, ep := range eps {
		a := ep.Addr().Unmap().WithZone("")
		if !a.IsValid() {
			continue
		}
		e := netip.AddrPortFrom(a, ep.Port())
		if a.Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
	}
	cmpAP := func(a, b netip.AddrPort) int { return a.Compare(b) }
	slices.SortFunc(v4, cmpAP)
	slices.SortFunc(v6, cmpAP)
	return slices.Compact(v4), slices.Compact(v6)
}

// splitAddrs normalizes addresses like SplitEndpoints and splits them by
// family, sorted and unique (a set has no order; nft tolerates duplicates,
// we simply never send them).
func splitAddrs(as []netip.Addr) (v4, v6 []netip.Addr) {
	for _, a := range as {
		a = a.Unmap().WithZone("")
		switch {
		case a.Is4():
			v4 = append(v4, a)
		case a.Is6():
			v6 = append(v6, a)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	return slices.Compact(v4), slices.Compact(v6)
}

func uniquePorts(ps []uint16) []uint16 {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// MergeCIDRs turns prefixes into the elements of the two interval sets:
// masked (host bits cleared), IPv4-mapped IPv6 prefixes moved to IPv4,
// sorted, and overlapping or adjacent ranges merged. The result is disjoint
// and non-adjacent by construction, so the kernel can never see
// "conflicting intervals", whatever the input. Invalid prefixes are skipped.
func MergeCIDRs(ps []netip.Prefix) (v4, v6 []Range) {
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		rg := Range{First: p.Addr(), Last: lastAddr(p)}
		if p.Addr().Is4() {
			v4 = append(v4, rg)
		} else {
			v6 = append(v6, rg)
		}
	}
	return mergeRanges(v4), mergeRanges(v6)
}

func mergeRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		return cmp.Or(a.First.Compare(b.First), a.Last.Compare(b.Last))
	})
	var out []Range
	for _, rg := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			// Merge when rg starts inside last or right after it. Next() of
			// the family's highest address is invalid: then last already
			// covers everything after it.
			next := last.Last.Next()
			if !next.IsValid() || rg.First.Compare(next) <= 0 {
				if rg.Last.Compare(last.Last) > 0 {
					last.Last = rg.Last
				}
				continue
			}
		}
		out = append(out, rg)
	}
	return out
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Prefix returns the prefix that covers exactly rg, if there is one.
func (rg Range) Prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= rg.First.BitLen(); bits++ {
		p := netip.PrefixFrom(rg.First, bits)
		if p.Masked().Addr() == rg.First && lastAddr(p) == rg.Last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
