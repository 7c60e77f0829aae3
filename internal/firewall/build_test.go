package firewall

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// golden compares got with testdata/firewall/<kind>/<name>.nft, or rewrites
// it with -update.
func golden(t *testing.T, kind, name, got string) {
	t.Helper()
	path := testutil.Testdata("firewall", kind, name+".nft")
	if *testutil.Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from golden (-want +got):\n%s", path, diff)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, c := range buildCases() {
		t.Run(c.name, func(t *testing.T) {
			golden(t, "render", c.name, Build(c.n).Render())
		})
	}
	t.Run("pin", func(t *testing.T) {
		golden(t, "render", "pin", BuildPin(pinNS(), pinEndpoints()).Render())
	})
	t.Run("hostlink", func(t *testing.T) {
		golden(t, "render", "hostlink", BuildHostLink(hostLinkNS()).Render())
	})
}

// checkInvariants holds for every ruleset Build makes, whatever the plan.
func checkInvariants(t *testing.T, r *Ruleset) {
	t.Helper()
	declared := map[string]bool{}
	for _, s := range r.Sets {
		if declared[s.Name] {
			t.Errorf("set %s declared twice", s.Name)
		}
		declared[s.Name] = true
		if s.Len() == 0 && s.Name != SetForwarded {
			t.Errorf("set %s is empty (should be omitted)", s.Name)
		}
		for i := 1; i < len(s.Ranges); i++ {
			if next := s.Ranges[i-1].Last.Next(); !next.IsValid() || next.Compare(s.Ranges[i].First) >= 0 {
				t.Errorf("set %s: ranges %v and %v overlap or touch", s.Name, s.Ranges[i-1], s.Ranges[i])
			}
		}
	}
	used := map[string]bool{}
	for _, c := range r.Chains {
		if c.Policy != Drop {
			t.Errorf("chain %s: policy %v", c.Name, c.Policy)
		}
		for _, rule := range c.Rules {
			for _, m := range rule.Matches {
				if m.Set != "" {
					used[m.Set] = true
					if !declared[m.Set] {
						t.Errorf("chain %s: rule %q uses undeclared set", c.Name, rule)
					}
				}
			}
		}
		switch c.Name {
		case "forward":
			if len(c.Rules) != 0 {
				t.Errorf("forward chain has rules")
			}
		case "input", "output":
			last := c.Rules[len(c.Rules)-1]
			if last.String() != "counter drop" {
				t.Errorf("chain %s ends with %q, want counter drop", c.Name, last)
			}
		default:
			t.Errorf("unexpected chain %s", c.Name)
		}
	}
	for name := range declared {
		if !used[name] {
			t.Errorf("set %s declared but unused", name)
		}
	}
}

func TestBuildInvariants(t *testing.T) {
	for _, c := range buildCases() {
		t.Run(c.name, func(t *testing.T) { checkInvariants(t, Build(c.n)) })
	}
}

func rules(r *Ruleset, chain string) []string {
	var out []string
	for _, rule := range r.Chain(chain).Rules {
		out = append(out, rule.String())
	}
	return out
}

func TestBuildSemantics(t *testing.T) {
	cases := map[string]*plan.Namespace{}
	for _, c := range buildCases() {
		cases[c.name] = c.n
	}
	has := func(t *testing.T, r *Ruleset, chain, rule string, want bool) {
		t.Helper()
		if got := slices.Contains(rules(r, chain), rule); got != want {
			t.Errorf("%s has %q = %v, want %v:\n%s", chain, rule, got, want, r.Render())
		}
	}

	// Example A exactly as the reference orders it (DNS drops now on any
	// interface, final counted drop added).
	a := Build(cases["a_strict_allowall_v6off_hostlink"])
	if diff := cmp.Diff([]string{
		`iifname "lo" accept`, `ct state invalid drop`, `meta nfproto ipv6 drop`,
		`ct state established,related accept`,
		`iifname "ve-vpnapps-ns" ip saddr 10.231.0.1 tcp dport @host_tcp_ports accept`,
		`counter drop`,
	}, rules(a, "input")); diff != "" {
		t.Errorf("A input (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{
		`oifname "lo" accept`, `ct state invalid drop`, `meta nfproto ipv6 drop`,
		`ct state established,related accept`,
		`oifname "wg0" ip daddr @dns_servers_v4 udp dport 53 accept`,
		`oifname "wg0" ip daddr @dns_servers_v4 tcp dport 53 accept`,
		`udp dport 53 drop`, `tcp dport 53 drop`,
		`udp dport @dns_blocked_ports drop`, `tcp dport @dns_blocked_ports drop`,
		`oifname "wg0" accept`,
		`counter drop`,
	}, rules(a, "output")); diff != "" {
		t.Errorf("A output (-want +got):\n%s", diff)
	}

	b := Build(cases["b_strict_allowlist_v6_ports_cidrs_ingress"])
	has(t, b, "output", `oifname "wg0" accept`, false)
	has(t, b, "output", `meta nfproto ipv6 drop`, false)
	has(t, b, "output", `oifname "wg0" ip6 daddr @dns_servers_v6 udp dport 53 accept`, true)
	has(t, b, "output", `oifname "wg0" ip6 daddr @allowed_ipv6_cidrs udp dport @allowed_udp_ports accept`, true)
	has(t, b, "output", `oifname "wg0" ip daddr @allowed_ipv4_cidrs accept`, false) // ports exist
	has(t, b, "input", `iifname "wg0" udp dport @tunnel_udp_ports accept`, true)

	compat := Build(cases["compat"])
	for _, s := range compat.Sets {
		t.Errorf("compat declares set %s", s.Name)
	}
	has(t, compat, "output", `udp dport 53 drop`, false)

	cidrs := Build(cases["allowlist_cidrs_only"])
	has(t, cidrs, "output", `oifname "wg0" ip6 daddr @allowed_ipv6_cidrs accept`, true)
	if got := cidrs.Set(SetDNSServersV4).Addrs; len(got) != 2 { // deduplicated, 4in6 unmapped
		t.Errorf("dns_servers_v4 = %v", got)
	}

	ports := Build(cases["allowlist_ports_only"])
	has(t, ports, "output", `oifname "wg0" tcp dport @allowed_tcp_ports accept`, true)
	if got := ports.Set(SetAllowedTCP).Ports; !slices.Equal(got, []uint16{80, 443}) {
		t.Errorf("allowed_tcp_ports = %v", got)
	}

	empty := Build(cases["allowlist_empty"])
	if got := len(rules(empty, "output")); got != 11 { // lo, invalid, ipv6, est, 2 dns, 4 drops, final
		t.Errorf("allowList without values: %d output rules:\n%s", got, empty.Render())
	}

	for _, name := range []string{"allowall_with_allowlist_values", "allowlist_v6_cidrs_v6_disabled"} {
		r := Build(cases[name])
		for _, s := range r.Sets {
			if strings.HasPrefix(s.Name, "allowed_") {
				t.Errorf("%s declares %s", name, s.Name)
			}
		}
		for _, rule := range rules(r, "output") {
			if strings.Contains(rule, "allowed_") || strings.Contains(rule, "dns_servers_v6") {
				t.Errorf("%s has %q", name, rule)
			}
		}
	}
	// An unknown egress mode allows nothing but DNS.
	odd := baseNS("odd")
	odd.Egress = plan.Egress{Mode: "bogus", AllowedTCPPorts: []uint16{1}}
	if got := rules(Build(odd), "output"); got[len(got)-2] != `tcp dport @dns_blocked_ports drop` {
		t.Errorf("unknown egress mode: %v", got)
	}
}

func TestMergeCIDRs(t *testing.T) {
	v4, v6 := MergeCIDRs(pfx("1.1.1.1/24", "1.1.1.0/24", "1.1.1.7/32", "1.1.2.0/24", "9.0.0.0/8",
		"::ffff:8.8.8.8/128", "255.255.255.255/32", "255.0.0.0/8", "2001:db8::/32", "2001:db8:ffff::/48", "::/0"))
	var got []string
	for _, rg := range append(v4, v6...) {
		got = append(got, rg.String())
	}
	want := []string{"1.1.1.0-1.1.2.255", "8.8.8.8", "9.0.0.0/8", "255.0.0.0/8", "::/0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	if v4, v6 := MergeCIDRs(nil); v4 != nil || v6 != nil {
		t.Errorf("empty input: %v %v", v4, v6)
	}
}

// manyCIDRs returns n pseudo-random IPv4 prefixes (deterministic), some
// overlapping.
func manyCIDRs(n int, seed uint64) []netip.Prefix {
	rnd := rand.New(rand.NewPCG(seed, 1))
	out := make([]netip.Prefix, 0, n)
	for range n {
		a := netip.AddrFrom4([4]byte{byte(rnd.IntN(223) + 1), byte(rnd.IntN(256)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
		bits := 16 + rnd.IntN(17)
		if rnd.IntN(100) == 0 {
			bits = 8 + rnd.IntN(8)
		}
		out = append(out, netip.PrefixFrom(a, bits)) // host bits left set on purpose
	}
	return out
}

func manyCIDRs6(n int, seed uint64) []netip.Prefix {
	rnd := rand.New(rand.NewPCG(seed, 2))
	out := make([]netip.Prefix, 0, n)
	for range n {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		for i := 2; i < 8; i++ {
			b[i] = byte(rnd.IntN(256))
		}
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), 32+rnd.IntN(33)))
	}
	return out
}

func inRanges(rs []Range, a netip.Addr) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Last.Compare(a) >= 0 })
	return i < len(rs) && rs[i].First.Compare(a) <= 0
}

func TestBuild10kCIDRs(t *testing.T) {
	in := manyCIDRs(10000, 42)
	n := baseNS("big")
	n.Egress = plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: in,
		AllowedTCPPorts: make([]uint16, 0, 100)}
	for p := range 100 {
		n.Egress.AllowedTCPPorts = append(n.Egress.AllowedTCPPorts, uint16(1000+p))
	}
	r := Build(n)
	checkInvariants(t, r)
	set := r.Set(SetAllowedV4)
	if set == nil || set.Len() >= len(in) || set.Len() < len(in)/2 {
		t.Fatalf("merged set has %d ranges for %d prefixes", set.Len(), len(in))
	}
	t.Logf("%d prefixes -> %d ranges", len(in), set.Len())
	if got := r.Set(SetAllowedTCP).Len(); got != 100 {
		t.Errorf("allowed_tcp_ports has %d elements", got)
	}
	if got := len(rules(r, "output")); got != 12 { // one lookup rule, not 10,000
		t.Errorf("%d output rules", got)
	}
	// Same coverage: prefix boundaries (and their neighbours) plus random
	// addresses are inside a merged range iff inside an input prefix.
	rnd := rand.New(rand.NewPCG(7, 7))
	var probes []netip.Addr
	for i := range 1500 {
		p := in[rnd.IntN(len(in))].Masked()
		last := lastAddr(p)
		probes = append(probes, p.Addr(), p.Addr().Prev(), last, last.Next())
		probes = append(probes, netip.AddrFrom4([4]byte{byte(i), byte(rnd.IntN(256)), byte(rnd.IntN(256)), byte(rnd.IntN(256))}))
	}
	for _, a := range probes {
		if !a.IsValid() {
			continue
		}
		want := slices.ContainsFunc(in, func(p netip.Prefix) bool { return p.Contains(a) })
		if got := inRanges(set.Ranges, a); got != want {
			t.Fatalf("%v: in merged set %v, in input %v", a, got, want)
		}
	}
}

func TestBuildPin(t *testing.T) {
	if r := BuildPin(baseNS("x"), nil); r != nil {
		t.Errorf("BuildPin without pinning = %v, want nil", r)
	}
	r := BuildPin(pinNS(), pinEndpoints())
	if got := r.Set(SetPinEndpointsV4).AddrPorts; len(got) != 2 { // dedup + unmapped
		t.Errorf("endpoints_v4 = %v", got)
	}
	empty := BuildPin(pinNS(), nil)
	if len(empty.Sets) != 2 {
		t.Errorf("pin sets must exist even without endpoints: %v", empty.Sets)
	}
	want := []string{"output @endpoints_v4 accept", "output @endpoints_v6 accept", "output drop"}
	if diff := cmp.Diff(want, r.CounterKeys()); diff != "" {
		t.Errorf("counter keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"input drop", "output drop"}, Build(baseNS("x")).CounterKeys()); diff != "" {
		t.Errorf("counter keys (-want +got):\n%s", diff)
	}
}
