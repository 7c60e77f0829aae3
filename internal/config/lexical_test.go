package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Test names carry a "Lex" prefix so they cannot clash with the other test
// files of this package.

// lexCheckBool runs f over accepted and rejected inputs as subtests.
func lexCheckBool(t *testing.T, name string, f func(string) bool, accept, reject []string) {
	t.Helper()
	for _, in := range accept {
		t.Run(fmt.Sprintf("accept/%q", in), func(t *testing.T) {
			if !f(in) {
				t.Errorf("%s(%q) = false, want true", name, in)
			}
		})
	}
	for _, in := range reject {
		t.Run(fmt.Sprintf("reject/%q", in), func(t *testing.T) {
			if f(in) {
				t.Errorf("%s(%q) = true, want false", name, in)
			}
		})
	}
}

func TestLexValidNamespaceName(t *testing.T) {
	lexCheckBool(t, "ValidNamespaceName", ValidNamespaceName,
		[]string{
			"vpn.apps-1", // reference vector
			"a", "0", "vpnapps", "a_b", "A.B-c_9", "ab", strings.Repeat("a", 64),
			"a" + strings.Repeat("-", 62) + "b",
		},
		[]string{
			".", "..", "-vpnapps", // reference vectors
			strings.Repeat("a", 65), "", "vpnapps-", "vpnapps.", "_a", "a_", ".hidden",
			"a b", "a/b", "a:b", "a@b", "äpps", "a\x00",
		})
}

func TestLexValidInterfaceName(t *testing.T) {
	lexCheckBool(t, "ValidInterfaceName", ValidInterfaceName,
		[]string{"wg0", "w", "wg-media", "wg.0", "vh-614ddd762fc4", strings.Repeat("a", 15)},
		[]string{"-wg0", strings.Repeat("a", 16), "", "wg0-", "wg0_", ".", "..", "wg 0", "wg/0", "wg:0", "wg%d"})
}

// TestLexParseIPLiteral lists the canonical String() of accepted literals and
// "" for rejected ones; it covers ParseIPv4Literal and ParseIPv6Literal
// through ParseIPLiteral and checks the family-specific entry points agree.
func TestLexParseIPLiteral(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		// Reference vectors.
		{"192.0.2.1", "192.0.2.1"},
		{"::", "::"},
		{"2001:db8::1", "2001:db8::1"},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
		{"192.0.02.1", ""},
		{"192.0.2.1::", ""},
		{"2001:192.0.2.1::1", ""},
		// IPv4.
		{"0.0.0.0", "0.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"10.64.0.1", "10.64.0.1"},
		{"256.0.0.1", ""},
		{"1.2.3", ""},
		{"1.2.3.4.5", ""},
		{"1.2.3.", ""},
		{".1.2.3", ""},
		{"1..2.3", ""},
		{"01.2.3.4", ""},
		{"1.2.3.00", ""},
		{"0x7f.0.0.1", ""},
		{"+1.2.3.4", ""},
		{"1.2.3.4 ", ""},
		{" 1.2.3.4", ""},
		{"1.2.3.1000", ""},
		{"", ""},
		// IPv6.
		{"::1", "::1"},
		{"1::", "1::"},
		{"2001:DB8::A", "2001:db8::a"},
		{"fe80::1", "fe80::1"},
		{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
		{"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
		{"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
		{"0000:0000::0001", "::1"},
		{"::192.0.2.1", "::c000:201"},
		{"1:2:3:4:5:6:192.0.2.1", "1:2:3:4:5:6:c000:201"},
		{"1:2:3:4:5::192.0.2.1", "1:2:3:4:5:0:c000:201"},
		{"1:2:3:4:5:6:7:8:9", ""},
		{"1:2:3:4:5:6:7", ""},
		{"1:2:3:4:5:6:7:8::", ""},
		{"::1:2:3:4:5:6:7:8", ""},
		{"1:2:3:4:5:6::192.0.2.1", ""},
		{"1:2:3:4:5:6:7:192.0.2.1", ""},
		{"1::2::3", ""},
		{":::", ""},
		{":1::", ""},
		{"::1:", ""},
		{":1:2:3:4:5:6:7", ""},
		{"1:2:3:4:5:6:7:", ""},
		{"12345::", ""},
		{"g::1", ""},
		{"fe80::1%eth0", ""},
		{"2001:db8::/64", ""},
		{"::ffff:192.0.02.1", ""},
		{"::ffff:192.0.2", ""},
		{"::192.0.2.1:1", ""},
		{"[::1]", ""},
		{":", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := ""
			if a, ok := ParseIPLiteral(tt.in); ok {
				got = a.String()
			}
			if got != tt.want {
				t.Errorf("ParseIPLiteral(%q) = %q, want %q", tt.in, got, tt.want)
			}
			_, ok4 := ParseIPv4Literal(tt.in)
			_, ok6 := ParseIPv6Literal(tt.in)
			if ok4 && ok6 || (ok4 || ok6) != (tt.want != "") {
				t.Errorf("ParseIPv4Literal ok=%v, ParseIPv6Literal ok=%v for %q, want exactly one iff accepted", ok4, ok6, tt.in)
			}
		})
	}
}

func TestLexParseCIDR(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = rejected
	}{
		{"192.0.2.1/32", "192.0.2.1/32"}, // reference vector
		{"192.0.2.1/033", ""},            // reference vector
		{"192.0.2.1", "192.0.2.1/32"},
		{"192.0.2.1/24", "192.0.2.1/24"}, // host bits kept
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"::/0", "::/0"},
		{"::ffff:192.0.2.1/128", "::ffff:192.0.2.1/128"},
		{"192.0.2.1/33", ""},
		{"2001:db8::/129", ""},
		{"192.0.2.1/", ""},
		{"192.0.2.1/00", ""},
		{"192.0.2.1/+8", ""},
		{"192.0.2.1/-1", ""},
		{"192.0.2.1/8/8", ""},
		{"192.0.2.1/8 ", ""},
		{"192.0.2.1/000000000032", ""},
		{"/32", ""},
		{"192.0.02.1/32", ""},
		{"fe80::1%eth0/64", ""},
		{"example.com/32", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := ""
			if p, ok := ParseCIDR(tt.in); ok {
				got = p.String()
			}
			if got != tt.want {
				t.Errorf("ParseCIDR(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLexParseEndpoint(t *testing.T) {
	type result struct {
		Host       string
		Port       uint16
		IsHostname bool
	}
	accept := []struct {
		in   string
		want result
	}{
		{"192.0.2.1:51820", result{"192.0.2.1", 51820, false}},
		{"0.0.0.0:1", result{"0.0.0.0", 1, false}},
		{"192.0.2.1:65535", result{"192.0.2.1", 65535, false}},
		{"[2001:db8::1]:51820", result{"2001:db8::1", 51820, false}},
		{"[2001:DB8:0::1]:51820", result{"2001:db8::1", 51820, false}},
		{"[::ffff:192.0.2.1]:51820", result{"::ffff:192.0.2.1", 51820, false}},
		{"[::]:443", result{"::", 443, false}},
		{"vpn.example.com:51820", result{"vpn.example.com", 51820, true}},
		{"se-got-wg-001.relays.mullvad.net:51820", result{"se-got-wg-001.relays.mullvad.net", 51820, true}},
		{"localhost:1", result{"localhost", 1, true}},
		{"1e100.net:443", result{"1e100.net", 443, true}},
		{"10.example:51820", result{"10.example", 51820, true}},
	}
	for _, tt := range accept {
		t.Run(tt.in, func(t *testing.T) {
			h, p, isHost, err := ParseEndpoint(tt.in)
			if err != nil {
				t.Fatalf("ParseEndpoint(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, result{h, p, isHost}); diff != "" {
				t.Errorf("ParseEndpoint(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}

	reject := []struct {
		in      string
		wantErr string // substring of the message
	}{
		{"", "no port"},
		{"192.0.2.1", "no port"},
		{"vpn.example.com", "no port"},
		{":51820", "no host"},
		{"192.0.2.1:", "not a decimal number"},
		{"192.0.2.1:0", "out of range"},
		{"192.0.2.1:65536", "out of range"},
		{"192.0.2.1:99999", "out of range"},
		{"192.0.2.1:051820", "leading zeros"},
		{"192.0.2.1:+5", "not a decimal number"},
		{"192.0.2.1:5 ", "not a decimal number"},
		{"192.0.2.1:http", "not a decimal number"},
		{"192.0.02.1:51820", "not a valid IPv4"},
		// Reference quirk: classified as a hostname endpoint there; rejected
		// here because inet_aton would reinterpret it (see ParseEndpoint).
		{"999.1.1.1:51820", "not a valid IPv4"},
		{"1.2.3:51820", "not a valid IPv4"},
		{"1.2.3.4.5:51820", "not a valid IPv4"},
		{"2001:db8::1:51820", "must be written in brackets"},
		{"::1:51820", "must be written in brackets"},
		{"[2001:db8::1]51820", "unterminated or empty"},
		{"[2001:db8::1]", "unterminated or empty"},
		{"[2001:db8::1:51820", "unterminated or empty"},
		{"[]:51820", "unterminated or empty"},
		{"[192.0.2.1]:51820", "brackets are only for IPv6"},
		{"[fe80::1%eth0]:51820", "not a valid IPv6"},
		{"[2001:db8::g]:51820", "not a valid IPv6"},
		{"[[::1]]:51820", "not a valid IPv6"},
		{"vpn.example.com.:51820", "not a valid hostname"},
		{"-vpn.example.com:51820", "not a valid hostname"},
		{"vpn_1.example.com:51820", "not a valid hostname"},
		{"vpn..example.com:51820", "not a valid hostname"},
		{"vpn example.com:51820", "not a valid hostname"},
		{"10.0x1:51820", "not a valid hostname"},
		{"0x7f.1:51820", "not a valid hostname"},
		{"vpn.example.com:51820:1", "must be written in brackets"},
	}
	for _, tt := range reject {
		t.Run(tt.in, func(t *testing.T) {
			h, p, isHost, err := ParseEndpoint(tt.in)
			if err == nil {
				t.Fatalf("ParseEndpoint(%q) = %q, %d, %v; want error containing %q", tt.in, h, p, isHost, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEndpoint(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestLexValidHostname(t *testing.T) {
	l63 := strings.Repeat("a", 63)
	lexCheckBool(t, "ValidHostname", ValidHostname,
		[]string{
			"example.com", "a", "xn--bcher-kva.example", "a-b.c-d", l63 + ".com", "123.host",
			strings.Join([]string{l63, l63, l63, strings.Repeat("a", 61)}, "."), // 253
		},
		[]string{
			strings.Repeat("a", 64) + ".com",
			strings.Join([]string{l63, l63, l63, strings.Repeat("a", 62)}, "."), // 254
			"", ".", "example.com.", ".example.com", "a..b", "-a.com", "a-.com", "a_b.com", "::1",
			// Numeric last labels: IP literals or inet_aton forms.
			"192.0.2.1", "999.1.1.1", "host.123", "host.0xff", "host.0x",
		})
}

func TestLexValidSearchDomain(t *testing.T) {
	lexCheckBool(t, "ValidSearchDomain", ValidSearchDomain,
		[]string{
			"vpn.apps-1", "lan", "example.com", "example.com.", "corp.example", "10.in-addr.arpa",
			"123",                            // label rules only, as in the reference
			strings.Repeat("a.", 127),        // 254 with the trailing dot
			strings.Repeat("a.", 126) + "ab", // 254 without
			strings.Repeat("a", 63) + "." + strings.Repeat("b", 63),
		},
		[]string{
			strings.Repeat("a.", 127) + "a", // 255
			strings.Repeat("a", 64), "", ".", "..", "example.com..", ".example.com",
			"exa mple.com", "example.com\n", "example.com\tcorp", "_srv.example.com",
			"-corp.example", "corp-.example", "a..b",
		})
}

func TestLexParseSubnet30(t *testing.T) {
	// Accepted inputs must come back unchanged.
	f := func(s string) bool { p, ok := ParseSubnet30(s); return ok && p.String() == s }
	lexCheckBool(t, "ParseSubnet30", f,
		[]string{"10.231.0.0/30", "169.254.202.92/30", "192.0.2.252/30", "0.0.0.0/30"},
		[]string{"192.0.2.253/30", "192.0.2.1/30", "192.0.2.2/30", "192.0.2.254/30", "10.231.0.0/29",
			"10.231.0.0/31", "10.231.0.0/030", "10.231.0.0", "10.231.0.00/30", "::ffff:10.231.0.0/30",
			"2001:db8::/30", ""})
}

// TestLexGoldenDerivations pins the reference's derived names and subnets
// (research anchor §6.3), so upgrades from the NixOS module keep them.
func TestLexGoldenDerivations(t *testing.T) {
	type derived struct{ HostIf, NsIf, Subnet string }
	tests := []struct {
		ns   string
		want derived
	}{
		{"‹name›", derived{"vh-f34280bd2454", "vn-7a41d7c9e29c", "169.254.29.124/30"}},
		{"vpnapps", derived{"vh-614ddd762fc4", "vn-b24c1d61df23", "169.254.202.92/30"}},
		{"media", derived{"vh-233c6fe18cf1", "vn-168c572eb3f2", "169.254.84.148/30"}},
		{"apps", derived{"vh-299e92d190eb", "vn-c7cfff46433e", "169.254.141.100/30"}},
		{"this-namespace-name-is-deliberately-long-for-hostlink", derived{"vh-59e8fcdda21e", "vn-5df0804d1923", "169.254.111.84/30"}},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.ns)
	}
	alloc, err := AllocateHostLinkSubnets(names, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.ns, func(t *testing.T) {
			got := derived{DeriveHostIf(tt.ns), DeriveNsIf(tt.ns), lexSlotPrefix(DeriveSubnetIndex(tt.ns)).String()}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("derivations (-want +got):\n%s", diff)
			}
			if !ValidInterfaceName(got.HostIf) || !ValidInterfaceName(got.NsIf) {
				t.Errorf("derived names %q/%q are not valid interface names", got.HostIf, got.NsIf)
			}
			if a := alloc[tt.ns].String(); a != tt.want.Subnet {
				t.Errorf("AllocateHostLinkSubnets gave %s, want the un-probed reference %s", a, tt.want.Subnet)
			}
		})
	}
}

func TestLexDeriveFwMark(t *testing.T) {
	tests := []struct {
		iface string
		want  uint32
	}{
		{"wg0", 1602405312},
		{"wg-media", 2692972664},
		{"wg-apps", 3272438976},
		{"wg-strict", 2788957953},
	}
	for _, tt := range tests {
		t.Run(tt.iface, func(t *testing.T) {
			if got := DeriveFwMark(tt.iface); got != tt.want {
				t.Errorf("DeriveFwMark(%q) = %d, want %d", tt.iface, got, tt.want)
			}
		})
	}
}

func TestLexReservedLinkLocal(t *testing.T) {
	f := func(s string) bool { return ReservedLinkLocal(netip.MustParsePrefix(s)) }
	lexCheckBool(t, "ReservedLinkLocal", f,
		[]string{"169.254.0.0/30", "169.254.0.252/30", "169.254.255.252/30", "169.254.169.0/30",
			"169.254.169.252/30", // contains the metadata address 169.254.169.254
			"169.254.0.0/16"},
		[]string{"169.254.1.0/30", "169.254.168.252/30", "169.254.170.0/30", "169.254.254.252/30",
			"169.254.202.92/30", "10.231.0.0/30"})
}

func TestLexAllocateHostLinkSubnets(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name   string
		names  []string
		manual map[string]netip.Prefix
		want   map[string]string
	}{{
		name:  "reserved first /24 is skipped",
		names: []string{"ns99"}, // hash slot 39 = 169.254.0.156/30
		want:  map[string]string{"ns99": "169.254.1.0/30"},
	}, {
		name:  "probing wraps past the last /24 and the first /24",
		names: []string{"ns168", "ns99"}, // slots 16343 and 39
		want:  map[string]string{"ns168": "169.254.1.0/30", "ns99": "169.254.1.4/30"},
	}, {
		name:  "metadata /24 is skipped",
		names: []string{"ns315"}, // slot 10835 = 169.254.169.76/30
		want:  map[string]string{"ns315": "169.254.170.0/30"},
	}, {
		name:  "collision goes to the later-sorted name",
		names: []string{"ns261", "ns254", "ns254"}, // both slot 1200; duplicates ignored
		want:  map[string]string{"ns254": "169.254.18.192/30", "ns261": "169.254.18.196/30"},
	}, {
		name:   "manual subnet wins over an earlier-sorted hash",
		names:  []string{"ns254", "ns261", "vpnapps"},
		manual: map[string]netip.Prefix{"ns261": pfx("169.254.18.192/30"), "unused": pfx("169.254.18.196/30")},
		want:   map[string]string{"ns254": "169.254.18.196/30", "ns261": "169.254.18.192/30", "vpnapps": "169.254.202.92/30"},
	}, {
		name:   "manual subnet outside link-local and in reserved space kept",
		names:  []string{"media", "apps"},
		manual: map[string]netip.Prefix{"media": pfx("10.231.0.0/30"), "apps": pfx("169.254.169.252/30")},
		want:   map[string]string{"media": "10.231.0.0/30", "apps": "169.254.169.252/30"},
	}, {
		name:  "empty",
		names: nil,
		want:  map[string]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateHostLinkSubnets(tt.names, tt.manual)
			if err != nil {
				t.Fatal(err)
			}
			gotS := map[string]string{}
			for k, v := range got {
				gotS[k] = v.String()
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("AllocateHostLinkSubnets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLexAllocateHostLinkSubnetsErrors(t *testing.T) {
	_, err := AllocateHostLinkSubnets([]string{"a", "b"}, map[string]netip.Prefix{
		"a": netip.MustParsePrefix("10.0.0.0/30"),
		"b": netip.MustParsePrefix("10.0.0.0/30"),
	})
	if err == nil || !strings.Contains(err.Error(), "overlapping") {
		t.Errorf("duplicate manual subnets: error %v, want overlap error", err)
	}

	// Every /30 of 169.254.0.0/16 minus the 192 reserved ones can be used,
	// and one more namespace must fail rather than collide.
	names := make([]string, lexHostLinkSlots-192+1)
	for i := range names {
		names[i] = fmt.Sprintf("n%05d", i)
	}
	got, err := AllocateHostLinkSubnets(names[1:], nil)
	if err != nil {
		t.Fatalf("full allocation: %v", err)
	}
	if len(got) != len(names)-1 {
		t.Errorf("full allocation returned %d subnets, want %d", len(got), len(names)-1)
	}
	if _, err := AllocateHostLinkSubnets(names, nil); err == nil || !strings.Contains(err.Error(), "only 16192") {
		t.Errorf("over-full allocation: error %v, want exhaustion error", err)
	}
}

// TestLexAllocateHostLinkSubnetsMany checks the properties the reference
// lacks at scale (it fails on ~26% of 100-namespace sets): no collisions, no
// reserved subnet, the hash slot whenever it was free, and stability of
// earlier-sorted names when later-sorted names are added.
func TestLexAllocateHostLinkSubnetsMany(t *testing.T) {
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("svc-%03d", i))
	}
	got, err := AllocateHostLinkSubnets(names, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names) {
		t.Fatalf("got %d subnets, want %d", len(got), len(names))
	}
	owner := map[netip.Prefix]string{}
	bySlot := map[int]int{}
	for _, n := range names {
		p := got[n]
		if prev, dup := owner[p]; dup {
			t.Errorf("%s and %s share %s", prev, n, p)
		}
		owner[p] = n
		if ReservedLinkLocal(p) || p.Bits() != 30 || !netip.MustParsePrefix("169.254.0.0/16").Contains(p.Addr()) {
			t.Errorf("%s got unusable subnet %s", n, p)
		}
		bySlot[DeriveSubnetIndex(n)]++
	}
	// Names whose hash slot is unique and usable must get exactly it.
	for _, n := range names {
		slot := lexSlotPrefix(DeriveSubnetIndex(n))
		if bySlot[DeriveSubnetIndex(n)] == 1 && !ReservedLinkLocal(slot) && owner[slot] != "" && got[n] != slot {
			t.Errorf("%s: got %s, want its hash slot %s", n, got[n], slot)
		}
	}
	// Adding later-sorted names never moves earlier ones.
	more, err := AllocateHostLinkSubnets(append(append([]string(nil), names...), "zzz-1", "zzz-2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if more[n] != got[n] {
			t.Errorf("%s moved from %s to %s after adding later names", n, got[n], more[n])
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"192.0.2.1:51820", "[2001:db8::1]:51820", "vpn.example.com:51820",
		"999.1.1.1:51820", "[::ffff:192.0.2.1]:1", "[fe80::1%eth0]:1", "a:0", "x.0x1:65535", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, isHostname, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		if port == 0 {
			t.Fatalf("ParseEndpoint(%q) accepted port 0", s)
		}
		var again string
		if isHostname {
			if !ValidHostname(host) {
				t.Fatalf("ParseEndpoint(%q) returned invalid hostname %q", s, host)
			}
			again = fmt.Sprintf("%s:%d", host, port)
		} else {
			a, err := netip.ParseAddr(host)
			if err != nil || a.Zone() != "" {
				t.Fatalf("ParseEndpoint(%q) returned non-IP host %q", s, host)
			}
			again = netip.AddrPortFrom(a, port).String()
		}
		h2, p2, ih2, err := ParseEndpoint(again)
		if err != nil || h2 != host || p2 != port || ih2 != isHostname {
			t.Fatalf("round trip %q -> %q -> (%q, %d, %v, %v)", s, again, h2, p2, ih2, err)
		}
	})
}

func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"192.0.2.1/32", "192.0.2.1/033", "2001:db8::/32", "::ffff:192.0.2.1",
		"192.0.2.1", "0.0.0.0/0", "1:2:3:4:5:6::1.2.3.4", "fe80::1%eth0/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseCIDR(s)
		if !ok {
			return
		}
		if !p.IsValid() || p.Addr().Zone() != "" {
			t.Fatalf("ParseCIDR(%q) = %v, not a valid zone-less prefix", s, p)
		}
		// Everything we accept, the standard library accepts with the
		// same meaning, and our own output parses back to itself.
		std, err := netip.ParsePrefix(p.String())
		if err != nil || std != p {
			t.Fatalf("ParseCIDR(%q) = %v; netip.ParsePrefix(%q) = %v, %v", s, p, p.String(), std, err)
		}
		if !strings.Contains(s, "/") {
			if a, err := netip.ParseAddr(s); err != nil || a != p.Addr() {
				t.Fatalf("ParseCIDR(%q) addr %v; netip.ParseAddr = %v, %v", s, p.Addr(), a, err)
			}
		} else if std2, err := netip.ParsePrefix(s); err != nil || std2 != p {
			t.Fatalf("ParseCIDR(%q) = %v; netip.ParsePrefix = %v, %v", s, p, std2, err)
		}
		p2, ok := ParseCIDR(p.String())
		if !ok || p2 != p {
			t.Fatalf("round trip %q -> %v -> %v, %v", s, p, p2, ok)
		}
	})
}
