package units

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/a%b.key":            "/etc/a%%b.key",
		"%i%%":                    "%%i%%%%",
		"x\nExecStart=/bin/evil":  "x?ExecStart=/bin/evil",
		"tab\there\rcr\x7fdel":    "tab?here?cr?del",
		"/plain/path with spaces": "/plain/path with spaces",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNoInjection renders every kind of output from a plan whose free-form
// strings carry newlines and specifiers, and checks that the result parses
// back to exactly the options we meant: no injected lines or sections.
func TestNoInjection(t *testing.T) {
	evil := "/etc/vpn-confinement.d/x%n\nExecStartPre=/bin/evil\n[Service]\nUser=root.yaml"
	n := &plan.Namespace{
		Name: "ns", Source: evil,
		DNS:    plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		Egress: plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		WireGuard: plan.WireGuard{Interface: "wg0",
			PrivateKey: plan.KeySource{File: "/k/a%b", Credential: "wireguard-private-key"},
			Addresses:  []netip.Prefix{netip.MustParsePrefix("10.1.0.2/32")}},
	}
	u := plan.Unit{Name: "app.service", HardeningProfile: plan.HardeningStrict, RestrictBind: true}
	outputs := map[string][]byte{
		"service": ServiceDropIn(n, u, nil),
		"socket":  SocketDropIn(n, plan.Unit{Name: "app.socket"}),
		"ns":      NamespaceDropIn(n),
		"wg":      WireGuardDropIn(n, nil),
		"pin":     PinDropIn(n, nil),
		"block":   BlockDropIn(evil, "app.service"),
		"blockns": BlockNamespaceDropIn("ns", evil),
	}
	for name, b := range outputs {
		opts, err := unit.Deserialize(strings.NewReader(string(b)))
		if err != nil {
			t.Errorf("%s: does not parse: %v\n%s", name, err, b)
			continue
		}
		for _, o := range opts {
			// Our own ExecStartPre= is the tripwire hook; anything else
			// would have been injected.
			if o.Name == "ExecStartPre" && !strings.HasPrefix(o.Value, "+"+LibexecDir+"/vpn-confinement-tripwire add ") || o.Name == "User" {
				t.Errorf("%s: injected option %s=%s\n%s", name, o.Name, o.Value, b)
			}
			if strings.Contains(o.Value, "%") && strings.Count(o.Value, "%")%2 != 0 {
				t.Errorf("%s: unescaped specifier in %s=%s", name, o.Name, o.Value)
			}
		}
		if strings.Contains(string(b), "\nExecStartPre=/bin/evil") || strings.Contains(string(b), "\n[Service]\nUser") {
			t.Errorf("%s: injected line:\n%s", name, b)
		}
	}
	if !strings.Contains(string(outputs["wg"]), "LoadCredential=wireguard-private-key:/k/a%%b") {
		t.Errorf("specifier in key path not escaped:\n%s", outputs["wg"])
	}
}

func TestServiceBodySharedAcrossUnits(t *testing.T) {
	n := &plan.Namespace{Name: "ns", Source: "/c/ns.yaml", DNS: plan.DNS{Mode: plan.DNSCompat}, WireGuard: plan.WireGuard{Interface: "wg0"}}
	a := ServiceDropIn(n, plan.Unit{Name: "a.service", HardeningProfile: plan.HardeningBaseline}, nil)
	b := ServiceDropIn(n, plan.Unit{Name: "b.service", HardeningProfile: plan.HardeningBaseline}, nil)
	strip := func(x []byte) string { return string(x[strings.Index(string(x), "\n\n"):]) }
	if strip(a) != strip(b) {
		t.Errorf("bodies differ for identical options")
	}
	if BodyKey(plan.Unit{HardeningProfile: "baseline"}, nil) == BodyKey(plan.Unit{HardeningProfile: "strict"}, nil) {
		t.Errorf("BodyKey ignores the profile")
	}
}

// Bodies differ when the unit name is part of them (a root service's PID
// file is bound from a directory named after the unit) or when the strict
// profile keeps writable executable memory for an app.
func TestBodyKeyDistinguishes(t *testing.T) {
	a := plan.Unit{Name: "a.service", Root: true, RuntimeFiles: []string{"/run/x.pid"}}
	b := a
	b.Name = "b.service"
	if BodyKey(a, nil) == BodyKey(b, nil) {
		t.Error("two root services with the same PID file path share a body (and one's bind source)")
	}
	s := plan.Unit{Name: "d.service", HardeningProfile: "strict", App: "deluge"}
	w := s
	w.WriteExecute = true
	if BodyKey(s, nil) == BodyKey(w, nil) {
		t.Error("BodyKey ignores WriteExecute")
	}
	if c, d := (plan.Unit{Name: "c.service"}), (plan.Unit{Name: "d.service"}); BodyKey(c, nil) != BodyKey(d, nil) {
		t.Error("plain units no longer share a body")
	}
}

// TestIPFilterOnlyWithCIDRs: the cgroup IP filter restricts addresses, so
// an allowList of ports alone (any destination on those ports) must not get
// one: IPAddressDeny=any would cut the service off from every destination
// but the resolvers. With allowedCidrs it is the second layer.
func TestIPFilterOnlyWithCIDRs(t *testing.T) {
	n := &plan.Namespace{Name: "ns", Source: "/c/ns.yaml", DNS: plan.DNS{Mode: plan.DNSCompat}, WireGuard: plan.WireGuard{Interface: "wg0"},
		Egress: plan.Egress{Mode: plan.EgressAllowList, AllowedTCPPorts: []uint16{7}}}
	u := plan.Unit{Name: "a.service", HardeningProfile: plan.HardeningBaseline}
	if out := string(ServiceDropIn(n, u, nil)); strings.Contains(out, "IPAddressDeny") {
		t.Errorf("ports-only allowList got an IP filter:\n%s", out)
	}
	n.Egress.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.123.0.0/24")}
	if out := string(ServiceDropIn(n, u, nil)); !strings.Contains(out, "IPAddressDeny=any") || !strings.Contains(out, "10.123.0.0/24") {
		t.Errorf("allowList with CIDRs lacks its IP filter:\n%s", out)
	}
}
