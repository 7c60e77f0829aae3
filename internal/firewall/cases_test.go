package firewall

import (
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Test cases shared by the pure golden tests and the root tests, which load
// the same rulesets into throwaway namespaces.

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func baseNS(name string) *plan.Namespace {
	return &plan.Namespace{
		Version:   plan.Version,
		Name:      name,
		DNS:       plan.DNS{Mode: plan.DNSStrict, Servers: addrs("10.64.0.1")},
		Egress:    plan.Egress{Mode: plan.EgressAllowAllTunnel},
		WireGuard: plan.WireGuard{Interface: "wg0"},
	}
}

type buildCase struct {
	name string
	n    *plan.Namespace
}

func buildCases() []buildCase {
	// Reference worked example A: strict, allowAllTunnel, ipv6 disable,
	// hostLink 10.231.0.0/30, fromHost 8080.
	a := baseNS("vpnapps")
	a.HostLink = &plan.HostLink{HostIf: "ve-vpnapps-host", NsIf: "ve-vpnapps-ns",
		Subnet: netip.MustParsePrefix("10.231.0.0/30"), HostAddr: netip.MustParseAddr("10.231.0.1"),
		NsAddr: netip.MustParseAddr("10.231.0.2")}
	a.Ingress.FromHostTCP = []uint16{8080}

	// Reference worked example B: strict, allowList, ipv6 tunnel,
	// ports+CIDRs, ingress from the tunnel, publishToHost 8080.
	b := baseNS("vpnapps")
	b.IPv6 = true
	b.DNS.Servers = addrs("10.64.0.1", "fd00::53")
	b.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: pfx("1.1.1.1/32", "2001:db8::/32"),
		AllowedTCPPorts: []uint16{443}, AllowedUDPPorts: []uint16{51413}, AllowEssentialICMP: true}
	b.Ingress = plan.Ingress{FromTunnelTCP: []uint16{9090}, FromTunnelUDP: []uint16{51413}, FromHostTCP: []uint16{8080}}
	b.HostLink = &plan.HostLink{HostIf: "vh-614ddd762fc4", NsIf: "vn-b24c1d61df23",
		Subnet: netip.MustParsePrefix("169.254.202.92/30"), HostAddr: netip.MustParseAddr("169.254.202.93"),
		NsAddr: netip.MustParseAddr("169.254.202.94")}

	compat := baseNS("compat")
	compat.DNS = plan.DNS{Mode: plan.DNSCompat}

	cidrsOnly := baseNS("cidrs")
	cidrsOnly.IPv6 = true
	cidrsOnly.DNS.Servers = addrs("10.64.0.1", "10.64.0.1", "fd00::53", "::ffff:10.64.0.2")
	cidrsOnly.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowEssentialICMP: true,
		AllowedCIDRs: pfx("10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32")}

	portsOnly := baseNS("ports")
	portsOnly.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowEssentialICMP: true,
		AllowedTCPPorts: []uint16{443, 80, 443}, AllowedUDPPorts: []uint16{443}}

	empty := baseNS("empty")
	empty.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowEssentialICMP: true}

	// Reference defect 2: overlapping CIDRs, host bits, adjacent
	// prefixes, an IPv4-mapped IPv6 prefix.
	overlap := baseNS("overlap")
	overlap.IPv6 = true
	overlap.DNS = plan.DNS{Mode: plan.DNSCompat}
	overlap.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: pfx(
		"1.1.1.0/24", "1.1.1.1/32", "1.1.1.1/24", "10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/24",
		"192.168.5.0/24", "192.168.0.0/16", "::ffff:8.8.8.8/128", "2001:db8:1::/48", "2001:db8::/32")}

	// Reference defect 1: allowAllTunnel with allowList values must not
	// reference (or declare) the allowList sets.
	allowAllValues := baseNS("allowall")
	allowAllValues.Egress = plan.Egress{Mode: plan.EgressAllowAllTunnel, AllowedCIDRs: pfx("1.1.1.1/32"),
		AllowedTCPPorts: []uint16{443}, AllowEssentialICMP: true}

	// IPv6 CIDRs in an IPv4-only namespace: the ports must not turn into
	// "any destination" (fail closed: only DNS leaves).
	v6Off := baseNS("v6off")
	v6Off.DNS.Servers = addrs("10.64.0.1", "fd00::53")
	v6Off.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: pfx("2001:db8::/32"),
		AllowedTCPPorts: []uint16{443}}

	// Ranges touching the ends of the address space (no end element).
	edges := baseNS("edges")
	edges.IPv6 = true
	edges.Egress = plan.Egress{Mode: plan.EgressAllowList,
		AllowedCIDRs: pfx("0.0.0.0/8", "255.255.255.0/24", "ffff::/16"), AllowedUDPPorts: []uint16{443}}

	// Round 2: confined → host exceptions and a NAT-PMP forwarded port
	// (empty set until a lease) in allowList mode.
	reach := baseNS("reach")
	reach.HostLink = a.HostLink
	reach.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedTCPPorts: []uint16{443}, ToHostTCP: []uint16{5432, 8096}, ToHostUDP: []uint16{1900}}
	reach.PortForwarding = &plan.PortForwarding{Protocol: plan.PortForwardNATPMP, Gateway: netip.MustParseAddr("10.2.0.1")}

	pia := baseNS("pia")
	pia.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: pfx("203.0.113.0/24")}
	pia.PortForwarding = &plan.PortForwarding{Protocol: plan.PortForwardPIA, Gateway: netip.MustParseAddr("10.0.0.1")}

	static := baseNS("static")
	static.PortForwarding = &plan.PortForwarding{Protocol: plan.PortForwardStatic, StaticPort: 51413}

	return []buildCase{
		{"reach_tohost_natpmp_allowlist", reach},
		{"portforward_pia_allowlist", pia},
		{"portforward_static", static},
		{"a_strict_allowall_v6off_hostlink", a},
		{"b_strict_allowlist_v6_ports_cidrs_ingress", b},
		{"compat", compat},
		{"allowlist_cidrs_only", cidrsOnly},
		{"allowlist_ports_only", portsOnly},
		{"allowlist_empty", empty},
		{"overlapping_cidrs", overlap},
		{"allowall_with_allowlist_values", allowAllValues},
		{"allowlist_v6_cidrs_v6_disabled", v6Off},
		{"allowlist_edge_ranges", edges},
	}
}

// pinNS is the plan used for the pinning table tests.
func pinNS() *plan.Namespace {
	n := baseNS("vpnapps")
	n.WireGuard.Pinning = &plan.Pinning{FwMark: 0x5f82c3c0, Table: "vpnc_pin_vpnapps"}
	return n
}

func pinEndpoints() []netip.AddrPort {
	return []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.7:51820"),
		netip.MustParseAddrPort("[2001:db8::1]:51820"),
		netip.MustParseAddrPort("[::ffff:203.0.113.9]:443"),
		netip.MustParseAddrPort("198.51.100.7:51820"),
	}
}

// hostLinkNS is the plan of the host-side host-link table tests.
func hostLinkNS() *plan.Namespace {
	n := buildCases()[0].n // reach: host link with toHost ports
	return n
}
