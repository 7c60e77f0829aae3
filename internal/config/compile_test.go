package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

const (
	key1 = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	key2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
)

// base is a minimal valid file; cases patch it with extra YAML.
const base = `dns:
  servers: [10.64.0.1]
wireguard:
  privateKeyFile: /etc/keys/k
  addresses: [10.64.0.2/32]
  peers:
    - publicKey: ` + key1 + `
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0]
services:
  - unit: app.service
`

// netipCmp compares netip values by value (they have unexported fields).
var netipCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func compile(t *testing.T, src string) *Result {
	t.Helper()
	r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte(src), Env{})
	CompileAll([]*Result{r})
	return r
}

func TestMinimalPlan(t *testing.T) {
	r := compile(t, base)
	if r.Diags.HasErrors() {
		t.Fatalf("unexpected errors: %v", r.Diags)
	}
	p := r.Plan
	want := &plan.Namespace{
		Version: plan.Version, Name: "ns", Source: "/etc/vpn-confinement.d/ns.yaml",
		SecurityProfile: "balanced", Autostart: true,
		DNS:    plan.DNS{Mode: "strict", Servers: []netip.Addr{netip.MustParseAddr("10.64.0.1")}},
		Egress: plan.Egress{Mode: "allowAllTunnel", AllowEssentialICMP: true},
		WireGuard: plan.WireGuard{
			Interface: "wg0", Backend: "auto", AllowedIPsAsRoutes: true,
			PrivateKey: plan.KeySource{File: "/etc/keys/k", Credential: CredPrivateKey},
			Addresses:  []netip.Prefix{netip.MustParsePrefix("10.64.0.2/32")},
			Peers: []plan.Peer{{PublicKey: key1, Endpoint: &plan.Endpoint{Host: "198.51.100.7", Port: 51820},
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
		},
		Services:     []plan.Unit{{Name: "app.service", HardeningProfile: "baseline"}},
		OnTunnelLoss: "block",
		Watchdog:     plan.Watchdog{StallAfterSeconds: 180, FirstHandshakeSeconds: 15},
	}
	if d := cmp.Diff(want, p, netipCmp...); d != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", d)
	}
}

// TestRules: every case must produce an error (or warning) at the given key
// whose message contains the given text, and the line must be known.
func TestRules(t *testing.T) {
	ha := "securityProfile: highAssurance\negress:\n  allowedCidrs: [203.0.113.0/24]\n"
	tests := []struct {
		name, src, key, msg string
		warning             bool
	}{
		// Lexical and structural.
		{"unknown key", base + "dsn: {}\n", "dsn", "unknown key (did you mean \"dns\"?)", false},
		{"unknown nested key", strings.Replace(base, "  servers:", "  mdoe: strict\n  servers:", 1), "dns.mdoe", "did you mean \"mode\"", false},
		{"duplicate key", base + "autostart: true\nautostart: false\n", "autostart", "duplicate key", false},
		{"wrong shape", strings.Replace(base, "servers: [10.64.0.1]", "servers: 10.64.0.1", 1), "dns.servers", "expected a list", false},
		{"profile enum", base + "securityProfile: paranoid\n", "securityProfile", "must be one of", false},
		// DNS (N1-N4 and gaps).
		{"N1 servers required", strings.Replace(base, "  servers: [10.64.0.1]", "  search: [x]", 1), "dns.servers", "at least one resolver", false},
		{"N2 literal", strings.Replace(base, "10.64.0.1]", "dns.example]", 1), "dns.servers[0]", "literal IPv4 or IPv6", false},
		{"N2 non-canonical", strings.Replace(base, "10.64.0.1]", "10.64.0.01]", 1), "dns.servers[0]", "literal IPv4", false},
		{"N3 v6 resolver", strings.Replace(base, "10.64.0.1]", "10.64.0.1, \"fd00::53\"]", 1), "dns.servers[1]", "ipv6.mode is \"disable\"", false},
		{"more than 3", strings.Replace(base, "10.64.0.1]", "10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]", 1), "dns.servers", "only the first 3", false},
		{"duplicate resolver", strings.Replace(base, "10.64.0.1]", "10.0.0.1, 10.0.0.1]", 1), "dns.servers[1]", "duplicate", false},
		{"N4 search", strings.Replace(base, "  servers:", "  search: [\"bad domain\"]\n  servers:", 1), "dns.search[0]", "search suffix", false},
		{"compat needs no servers", strings.Replace(base, "  servers: [10.64.0.1]", "  mode: compat", 1), "", "", false},
		// Interface and socket namespace (N5, N7, N8).
		{"N5 iface", strings.Replace(base, "wireguard:\n", "wireguard:\n  interface: -wg0\n", 1), "wireguard.interface", "1-15 characters", false},
		{"N5 iface long", strings.Replace(base, "wireguard:\n", "wireguard:\n  interface: wg0123456789abcd\n", 1), "wireguard.interface", "1-15", false},
		{"N7 socketNamespace", strings.Replace(base, "wireguard:\n", "wireguard:\n  socketNamespace: ..\n", 1), "wireguard.socketNamespace", "valid namespace name", false},
		{"N8 self", strings.Replace(base, "wireguard:\n", "wireguard:\n  socketNamespace: ns\n", 1), "wireguard.socketNamespace", "must not be the confinement namespace", false},
		// Egress (N6, N16, gaps).
		{"N6 cidr", base + "egress:\n  mode: allowList\n  allowedCidrs: [1.1.1.1/033]\n", "egress.allowedCidrs[0]", "literal IPv4/IPv6 CIDR", false},
		{"N16 v6 cidr", base + "egress:\n  mode: allowList\n  allowedCidrs: [\"2001:db8::/32\"]\n", "egress.allowedCidrs[0]", "ipv6.mode is \"disable\"", false},
		{"allowAll with lists", base + "egress:\n  allowedTcpPorts: [443]\n", "egress.mode", "would have no effect", false},
		{"port 0", base + "egress:\n  mode: allowList\n  allowedTcpPorts: [0]\n", "egress.allowedTcpPorts[0]", "between 1 and 65535", false},
		{"port too big", base + "ingress:\n  fromTunnel:\n    udp: [65536]\n", "ingress.fromTunnel.udp[0]", "between 1 and 65535", false},
		{"overlap merged", base + "egress:\n  mode: allowList\n  allowedCidrs: [1.1.1.0/24, 1.1.1.1/32]\n", "egress.allowedCidrs", "merged into 1 ranges", true},
		{"host bits", base + "egress:\n  mode: allowList\n  allowedCidrs: [1.1.1.1/24]\n", "egress.allowedCidrs[0]", "host bits", true},
		{"empty allowList", base + "egress:\n  mode: allowList\n", "egress.mode", "only DNS", true},
		// highAssurance (N9-N15, N23, gaps).
		{"N9 compat", base + ha + "dns:\n  mode: compat\n", "", "", false}, // duplicate key dns → decode error; covered below
		{"N11 allowAll", base + "securityProfile: highAssurance\negress:\n  mode: allowAllTunnel\n", "egress.mode", "", false},
		{"N12 empty cidrs", base + "securityProfile: highAssurance\n", "egress.allowedCidrs", "non-empty allowedCidrs", false},
		{"HA 0/0", base + "securityProfile: highAssurance\negress:\n  allowedCidrs: [0.0.0.0/0]\n", "egress.allowedCidrs[0]", "destination-constrained", false},
		{"N13 hostnames", strings.Replace(base, "wireguard:\n", "wireguard:\n  allowHostnameEndpoints: true\n", 1) + ha, "wireguard.allowHostnameEndpoints", "highAssurance rejects hostname", false},
		{"N14 inline key HA", strings.Replace(base, "  privateKeyFile: /etc/keys/k\n", "  privateKey: "+key2+"\n", 1) + ha, "wireguard.privateKey", "highAssurance rejects an inline private key", false},
		{"W3 inline key balanced", strings.Replace(base, "  privateKeyFile: /etc/keys/k\n", "  privateKey: "+key2+"\n", 1), "wireguard.privateKey", "inline private key", true},
		{"N15 inline psk HA", strings.Replace(base, "      endpoint:", "      presharedKey: "+key2+"\n      endpoint:", 1) + ha, "wireguard.peers[0].presharedKey", "highAssurance rejects an inline preshared key", false},
		{"N23 routes HA", strings.Replace(base, "wireguard:\n", "wireguard:\n  allowedIPsAsRoutes: false\n", 1) + ha, "wireguard.allowedIPsAsRoutes", "highAssurance requires", false},
		{"W5 routes", strings.Replace(base, "wireguard:\n", "wireguard:\n  allowedIPsAsRoutes: false\n", 1), "wireguard.allowedIPsAsRoutes", "not installed", true},
		// Endpoints (N20-N22, W2).
		{"N20 endpoint syntax", strings.Replace(base, "198.51.100.7:51820", "198.51.100.7", 1), "wireguard.peers[0].endpoint", "IPv4:port", false},
		{"N20 port 0", strings.Replace(base, "198.51.100.7:51820", "198.51.100.7:0", 1), "wireguard.peers[0].endpoint", "", false},
		{"N21 hostname", strings.Replace(base, "198.51.100.7:51820", "vpn.example.net:51820", 1), "wireguard.peers[0].endpoint", "is a hostname", false},
		// N22: an explicit 0 is an error; unset defaults to 300 s (TestHostnameEndpointDefaults).
		{"N22 refresh", strings.Replace(strings.Replace(base, "198.51.100.7:51820", "vpn.example.net:51820", 1), "wireguard:\n", "wireguard:\n  allowHostnameEndpoints: true\n  endpointRefreshSeconds: 0\n", 1), "wireguard.endpointRefreshSeconds", "set it > 0", false},
		{"N21 hostname names the key to add", strings.Replace(base, "198.51.100.7:51820", "vpn.example.net:51820", 1), "wireguard.peers[0].endpoint", "need wireguard.allowHostnameEndpoints: true in ns.yaml", false},
		{"W2 hostname", strings.Replace(strings.Replace(base, "198.51.100.7:51820", "vpn.example.net:51820", 1), "wireguard:\n", "wireguard:\n  allowHostnameEndpoints: true\n  endpointRefreshSeconds: 60\n", 1), "wireguard.allowHostnameEndpoints", "resolved by the tunnel helper", true},
		// IPv6 consistency (N24 and defect 4).
		{"N24 tunnel without v6", base + "ipv6:\n  mode: tunnel\n", "ipv6.mode", "requires an IPv6 tunnel address", false},
		{"v6 address while disabled", strings.Replace(base, "[10.64.0.2/32]", "[10.64.0.2/32, \"fd00::2/128\"]", 1), "wireguard.addresses[1]", "ipv6.mode is \"disable\"", false},
		{"v6 route while disabled", strings.Replace(base, "[0.0.0.0/0]", "[0.0.0.0/0, \"::/0\"]", 1), "wireguard.peers[0].allowedIPs[1]", "ipv6.mode is \"disable\"", false},
		// Keys.
		{"no key", strings.Replace(base, "  privateKeyFile: /etc/keys/k\n", "", 1), "wireguard", "needs a private key", false},
		{"key path with space", strings.Replace(base, "/etc/keys/k", "\"/etc/keys/my key\"", 1), "wireguard.privateKeyFile", "whitespace", false},
		{"key path with newline", strings.Replace(base, "/etc/keys/k", "\"/etc/keys/k\\nExecStart=/x\"", 1), "wireguard.privateKeyFile", "control characters", false},
		{"relative key path", strings.Replace(base, "/etc/keys/k", "keys/k", 1), "wireguard.privateKeyFile", "absolute path", false},
		{"bad public key", strings.Replace(base, key1, "abc", 1), "wireguard.peers[0].publicKey", "base64", false},
		{"generate without file", strings.Replace(base, "  privateKeyFile: /etc/keys/k\n", "  generatePrivateKeyFile: true\n", 1), "wireguard.generatePrivateKeyFile", "needs wireguard.privateKeyFile", false},
		{"no peers", strings.Replace(base, "  peers:\n    - publicKey: "+key1+"\n      endpoint: 198.51.100.7:51820\n      allowedIPs: [0.0.0.0/0]\n", "", 1), "wireguard.peers", "at least one peer", false},
		{"mtu", strings.Replace(base, "wireguard:\n", "wireguard:\n  mtu: 100\n", 1), "wireguard.mtu", "between 576", false},
		// Host link (N25-N34, gaps).
		{"N25 hostIf", base + "hostLink:\n  enable: true\n  hostIf: -x\n", "hostLink.hostIf", "1-15", false},
		{"N27 subnet", base + "hostLink:\n  enable: true\n  subnetIPv4: 169.254.10.1/30\n", "hostLink.subnetIPv4", "/30 network base", false},
		{"reserved subnet", base + "hostLink:\n  enable: true\n  subnetIPv4: 169.254.0.4/30\n", "hostLink.subnetIPv4", "reserved", false},
		{"metadata subnet", base + "hostLink:\n  enable: true\n  subnetIPv4: 169.254.169.252/30\n", "hostLink.subnetIPv4", "metadata", false},
		{"N32 same names", base + "hostLink:\n  enable: true\n  hostIf: vx\n  nsIf: vx\n", "hostLink.nsIf", "must differ from hostLink.hostIf", false},
		{"N33 hostIf is wg", base + "hostLink:\n  enable: true\n  hostIf: wg0\n", "hostLink.hostIf", "must differ from wireguard.interface", false},
		{"fromHost disabled link", base + "hostLink:\n  enable: false\ningress:\n  fromHost:\n    tcp: [80]\n", "hostLink.enable", "need the host link", false},
		{"hostlink unused keys", base + "hostLink:\n  hostIf: vx\n", "hostLink.hostIf", "has no effect", true},
		// Pinning (N29-N31).
		{"N29 no endpoint", strings.Replace(strings.Replace(base, "      endpoint: 198.51.100.7:51820\n", "", 1), "wireguard:\n", "wireguard:\n  endpointPinning:\n    enable: true\n", 1), "wireguard.endpointPinning.enable", "at least one peer with an endpoint", false},
		{"N30 mark", strings.Replace(base, "wireguard:\n", "wireguard:\n  endpointPinning:\n    enable: true\n    fwMark: 0\n", 1), "wireguard.endpointPinning.fwMark", "between 1 and 4294967295", false},
		{"N31 fwMark mismatch", strings.Replace(base, "wireguard:\n", "wireguard:\n  fwMark: 7\n  endpointPinning:\n    enable: true\n    fwMark: 8\n", 1), "wireguard.fwMark", "leave wireguard.fwMark unset", false},
		// Units (S, K).
		{"unit name", strings.Replace(base, "app.service", "app", 1), "services[0].unit", "service unit name", false},
		{"template unit", strings.Replace(base, "app.service", "app@.service", 1), "services[0].unit", "service unit name", false},
		{"unit twice", base + "  - unit: app.service\n", "services[1].unit", "listed twice", false},
		{"unit required", base + "  - hardeningProfile: strict\n", "services[1].unit", "is required", false},
		{"hardening enum", strings.Replace(base, "  - unit: app.service\n", "  - unit: app.service\n    hardeningProfile: max\n", 1), "services[0].hardeningProfile", "must be one of", false},
		{"address family", strings.Replace(base, "  - unit: app.service\n", "  - unit: app.service\n    extraAddressFamilies: [netlink]\n", 1), "services[0].extraAddressFamilies[0]", "address family name", false},
		{"socket needs service", base + "sockets:\n  - unit: other.socket\n", "sockets[0].unit", "must activate a confined service", false},
		{"socket options", base + "sockets:\n  - unit: app.socket\n    restrictBind: true\n", "sockets[0]", "apply to services", false},
		{"nothing confined", strings.Replace(base, "services:\n  - unit: app.service\n", "", 1), "services", "no services or sockets", true},
		// Round 2: lifecycle, publish, egress.toHost, portForwarding, failover.
		{"onTunnelLoss enum", base + "onTunnelLoss: restart\n", "onTunnelLoss", "must be one of \"block\", \"stop\", \"freeze\"", false},
		{"publish listen required", base + "publish:\n  - port: 8080\n", "publish[0].listen", "is required", false},
		{"publish bad listen", base + "publish:\n  - listen: \"127.0.0.1:\"\n", "publish[0].listen", "not a port number", false},
		{"publish port 0", base + "publish:\n  - listen: 0\n", "publish[0].listen", "port must be between 1 and 65535", false},
		{"publish host name", base + "publish:\n  - listen: myhost:8080\n", "publish[0].listen", "not an IP address", false},
		{"publish confined port 0", base + "publish:\n  - listen: 8080\n    port: 0\n", "publish[0].port", "between 1 and 65535", false},
		{"publish twice", base + "publish:\n  - listen: 127.0.0.1:8080\n  - listen: 8080\n", "publish[1].listen", "127.0.0.1:8080 is already published by publish[0]", false},
		{"publish one port two targets", base + "publish:\n  - listen: 127.0.0.1:8080\n  - listen: \"[::1]:8080\"\n    port: 9090\n", "publish[1]", "published twice with different targets", false},
		{"publish wildcard overlap", base + "publish:\n  - listen: 0.0.0.0:8080\n  - listen: 127.0.0.1:8080\n", "publish", "already listens on every address", false},
		{"publish unit not listed", base + "publish:\n  - listen: 8080\n    unit: other.service\n", "publish[0].unit", "must be listed under services", false},
		{"publish LAN in HA", ha + base + "publish:\n  - listen: 0.0.0.0:8080\n", "publish[0].listen", "allowLAN: true", false},
		{"publish LAN handed to a filtered service", base + "egress:\n  mode: allowList\n  allowedCidrs: [10.64.0.0/24]\npublish:\n  - listen: 0.0.0.0:8080\n    unit: app.service\n", "publish[0].unit", "would be unreachable from other hosts", false},
		{"publish allowLAN on loopback", base + "publish:\n  - listen: 8080\n    allowLAN: true\n", "publish[0].allowLAN", "has no effect", true},
		{"publishToHost migration", base + "publishToHost:\n  tcp: [8080]\n", "publishToHost", "publish: [{listen: 127.0.0.1:PORT}]", true},
		{"toHost port 0", base + "egress:\n  toHost:\n    tcp: [0]\n", "egress.toHost.tcp[0]", "between 1 and 65535", false},
		{"toHost attack surface", base + "egress:\n  toHost:\n    tcp: [5432]\n", "egress.toHost", "attack surface", true},
		{"toHost needs host link", base + "hostLink:\n  enable: false\negress:\n  toHost:\n    udp: [53]\n", "hostLink.enable", "egress.toHost need the host link", false},
		{"pf protocol required", base + "portForwarding:\n  gateway: 10.2.0.1\n", "portForwarding.protocol", "is required", false},
		{"pf static port", base + "portForwarding:\n  protocol: static\n", "portForwarding.port", "needs the port", false},
		{"pf port only static", base + "portForwarding:\n  protocol: natpmp\n  port: 5000\n", "portForwarding.port", "only for protocol static", false},
		{"pf pia needs hostname", base + "portForwarding:\n  protocol: pia\n  gateway: 10.0.0.1\n  pia:\n    caFile: /etc/ca.crt\n    credentialsFile: /etc/pia\n", "portForwarding.pia.hostname", "is required", false},
		{"pf pia needs credentials", base + "portForwarding:\n  protocol: pia\n  gateway: 10.0.0.1\n  pia:\n    hostname: x.privacy.network\n    caFile: /etc/ca.crt\n", "portForwarding.pia", "needs credentialsFile", false},
		{"pf pia needs gateway", base + "portForwarding:\n  protocol: pia\n  pia:\n    hostname: x.privacy.network\n    caFile: /etc/ca.crt\n    credentialsFile: /etc/pia\n", "portForwarding.gateway", "is required", false},
		{"pf app type", base + "portForwarding:\n  protocol: natpmp\n  apps:\n    - type: utorrent\n      url: http://127.0.0.1:1\n", "portForwarding.apps[0].type", "must be one of", false},
		{"pf app url", base + "portForwarding:\n  protocol: natpmp\n  apps:\n    - type: qbittorrent\n      url: 127.0.0.1:8080\n", "portForwarding.apps[0].url", "must be the app's web UI", false},
		{"pf hook unit", base + "portForwarding:\n  protocol: natpmp\n  hook:\n    unit: hook\n", "portForwarding.hook.unit", "service unit name", false},
		{"endpoints and endpoint", strings.Replace(base, "      endpoint: 198.51.100.7:51820\n", "      endpoint: 198.51.100.7:51820\n      endpoints: [198.51.100.8:51820]\n", 1), "wireguard.peers[0].endpoints", "cannot be combined with endpoint", false},
		{"endpoints syntax", strings.Replace(base, "      endpoint: 198.51.100.7:51820\n", "      endpoints: [198.51.100.7:51820, 198.51.100.8]\n", 1), "wireguard.peers[0].endpoints[1]", "IPv4:port", false},
		{"endpoints twice", strings.Replace(base, "      endpoint: 198.51.100.7:51820\n", "      endpoints: [198.51.100.7:51820, 198.51.100.7:51820]\n", 1), "wireguard.peers[0].endpoints[1]", "listed twice", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := compile(t, tc.src)
			if tc.key == "" && tc.msg == "" {
				return // documents an input that must compile or fail elsewhere
			}
			ds := r.Diags.Errors()
			if tc.warning {
				ds = r.Diags.Warnings()
			}
			for _, d := range ds {
				if d.Key == tc.key && strings.Contains(d.Message, tc.msg) {
					if d.Line == 0 {
						t.Errorf("diagnostic without a line: %s", d)
					}
					if !tc.warning && r.Plan != nil {
						t.Errorf("plan produced despite error")
					}
					return
				}
			}
			t.Errorf("no %s at %q containing %q; got:\n%s", map[bool]string{true: "warning", false: "error"}[tc.warning], tc.key, tc.msg, dump(r.Diags))
		})
	}
}

func dump(ds Diags) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String() + "\n")
	}
	return b.String()
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	src := strings.Replace(base, "10.64.0.1]", "999.1.1.1]", 1) + "bogus: 1\negress:\n  mode: allowList\n  allowedTcpPorts: [0]\n"
	r := compile(t, src)
	keys := map[string]bool{}
	for _, d := range r.Diags.Errors() {
		keys[d.Key] = true
	}
	for _, k := range []string{"bogus", "dns.servers[0]", "egress.allowedTcpPorts[0]"} {
		if !keys[k] {
			t.Errorf("missing error for %s in:\n%s", k, dump(r.Diags))
		}
	}
}

func TestUnparsableFileStillNamesUnits(t *testing.T) {
	src := "dns: [\nservices:\n  - unit: transmission.service\n  - unit: \"x.socket\"\n  -unit: nope\n"
	r := compile(t, src)
	if r.Parsed || r.Plan != nil || !r.Diags.HasErrors() {
		t.Fatalf("want unparsable result, got parsed=%v diags=%v", r.Parsed, r.Diags)
	}
	if d := cmp.Diff([]string{"transmission.service", "x.socket"}, r.Units); d != "" {
		t.Errorf("units (-want +got):\n%s", d)
	}
	if r.Diags[0].Line == 0 {
		t.Errorf("syntax error without line: %v", r.Diags[0])
	}
}

func TestCrossFileRules(t *testing.T) {
	a := CompileFile("/c/a.yaml", []byte(base), Env{})
	b := CompileFile("/c/b.yaml", []byte(base), Env{})
	CompileAll([]*Result{a, b})
	for _, r := range []*Result{a, b} {
		if r.Plan != nil {
			t.Errorf("%s: want invalid (same unit, same interface)", r.File)
		}
		var unit, iface bool
		for _, d := range r.Diags {
			unit = unit || strings.Contains(d.Message, "a unit can be confined to one namespace only")
			iface = iface || (d.Key == "wireguard.interface" && strings.Contains(d.Message, "also used by"))
		}
		if !unit || !iface {
			t.Errorf("%s: missing cross-file errors:\n%s", r.File, dump(r.Diags))
		}
	}
}

func TestHostLinkAllocationMatchesReference(t *testing.T) {
	r := CompileFile("/c/vpnapps.yaml", []byte(base+"publishToHost:\n  tcp: [8080]\n"), Env{})
	CompileAll([]*Result{r})
	if r.Plan == nil {
		t.Fatal(dump(r.Diags))
	}
	hl := r.Plan.HostLink
	got := []string{hl.HostIf, hl.NsIf, hl.Subnet.String(), hl.HostAddr.String(), hl.NsAddr.String()}
	want := []string{"vh-614ddd762fc4", "vn-b24c1d61df23", "169.254.202.92/30", "169.254.202.93", "169.254.202.94"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("host link (-want +got):\n%s", d)
	}
}

func TestMergePrefixes(t *testing.T) {
	in := []netip.Prefix{netip.MustParsePrefix("1.1.1.1/32"), netip.MustParsePrefix("1.1.1.0/24"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2001:db8:1::/48")}
	got, merged := MergePrefixes(in)
	want := []netip.Prefix{netip.MustParsePrefix("1.1.1.0/24"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	if !merged || !cmp.Equal(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("MergePrefixes = %v, %v", got, merged)
	}
}

// FuzzCompile: the YAML → validated model path must never panic, and a
// produced plan must always serialize.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "hostLink:\n  enable: true\negress:\n  mode: allowList\n  allowedCidrs: [1.1.1.0/24]\n"))
	f.Add([]byte("dns: [\n"))
	f.Add([]byte("wireguard:\n  peers:\n    - endpoint: \"[::1]:1\"\n"))
	for _, s := range strictShapes {
		f.Add([]byte(s.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		r := CompileFile("/c/f.yaml", src, Env{ReadFile: func(string) ([]byte, error) { return nil, nil }})
		CompileAll([]*Result{r})
		if r.Plan != nil {
			if _, err := r.Plan.Marshal(); err != nil {
				t.Fatal(err)
			}
			checkNoTruncation(t, src)
		}
		for _, d := range r.Diags {
			_ = d.String()
		}
	})
}

func TestHostnameEndpointDefaults(t *testing.T) {
	src := strings.Replace(strings.Replace(base, "198.51.100.7:51820", "vpn.example.net:51820", 1), "wireguard:\n", "wireguard:\n  allowHostnameEndpoints: true\n", 1)
	r := compile(t, src)
	if r.Plan == nil {
		t.Fatalf("rejected:\n%s", dump(r.Diags))
	}
	if got := r.Plan.WireGuard.Peers[0].EndpointRefreshSeconds; got != DefaultEndpointRefresh {
		t.Errorf("refresh %d, want the default %d", got, DefaultEndpointRefresh)
	}
}

// A hostname endpoint in a provider file is reported once, at its line in
// that file, naming the key to add (it used to cost two rounds of errors,
// both at ns.yaml:1:1).
func TestHostnameEndpointInProviderFile(t *testing.T) {
	conf := "[Interface]\nPrivateKey = " + key2 + "\nAddress = 10.2.0.2/32\nDNS = 10.2.0.1\n\n[Peer]\nPublicKey = " + key1 + "\nAllowedIPs = 0.0.0.0/0\nEndpoint = nl-42.vpn.example.net:51820\n"
	env := Env{ReadFile: func(string) ([]byte, error) { return []byte(conf), nil }}
	r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte("wireguard:\n  configFile: /etc/vpn-confinement.d/keys/p.conf\nservices:\n  - unit: app.service\n"), env)
	CompileAll([]*Result{r})
	errs := r.Diags.Errors()
	if len(errs) != 1 {
		t.Fatalf("want exactly one error, got:\n%s", dump(r.Diags))
	}
	if e := errs[0]; e.File != "/etc/vpn-confinement.d/keys/p.conf" || e.Line != 9 || !strings.Contains(e.Message, "allowHostnameEndpoints: true") {
		t.Errorf("error %v: want it at p.conf:9 naming allowHostnameEndpoints", e)
	}
}

func TestProviderFileWithFourResolvers(t *testing.T) {
	conf := "[Interface]\nPrivateKey = " + key2 + "\nAddress = 10.2.0.2/32\nDNS = 10.2.0.1, 10.2.0.2, 10.2.0.3, 10.2.0.4\n\n[Peer]\nPublicKey = " + key1 + "\nAllowedIPs = 0.0.0.0/0\nEndpoint = 198.51.100.7:51820\n"
	env := Env{ReadFile: func(string) ([]byte, error) { return []byte(conf), nil }}
	r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte("wireguard:\n  configFile: /etc/vpn-confinement.d/keys/p.conf\nservices:\n  - unit: app.service\n"), env)
	CompileAll([]*Result{r})
	if r.Plan == nil {
		t.Fatalf("rejected (import-wg-quick keeps the first 3, so must configFile):\n%s", dump(r.Diags))
	}
	if n := len(r.Plan.DNS.Servers); n != 3 {
		t.Errorf("%d resolvers, want 3", n)
	}
	if !strings.Contains(dump(r.Diags.Warnings()), "only 10.2.0.1, 10.2.0.2, 10.2.0.3 are used (not 10.2.0.4)") {
		t.Errorf("no warning naming the dropped resolver:\n%s", dump(r.Diags))
	}
}

// A loopback entry handed to a service of an allowList namespace is fine:
// its clients are 127.0.0.1, which the IP filter allows.
func TestPublishLoopbackToFilteredService(t *testing.T) {
	r := compile(t, base+"egress:\n  mode: allowList\n  allowedCidrs: [10.64.0.0/24]\npublish:\n  - listen: 127.0.0.1:8080\n    unit: app.service\n")
	if errs := r.Diags.Errors(); len(errs) > 0 || r.Plan == nil || !r.Plan.IPFiltered() {
		t.Errorf("errors %s, filtered %v", dump(errs), r.Plan != nil && r.Plan.IPFiltered())
	}
}
