package status

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// healthy is an up namespace as Collect would report it.
func healthy() *Namespace {
	hs := now.Add(-42 * time.Second)
	age := int64(42)
	return &Namespace{
		Name: "media", Config: "/etc/vpn-confinement.d/media.yaml", Plan: "/run/systemd/generator/vpn-confinement/media.json",
		Units: []Unit{
			{Name: "vpn-ns@media.service", LoadState: "loaded", ActiveState: "active", SubState: "exited"},
			{Name: "vpn-wg@media.service", LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 812},
		},
		Confined: []Unit{{Name: "qbittorrent.service", LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 1234,
			InNamespace: ptr(true), ProcessNetns: "net:[4026532301]"}},
		Netns: Netns{Path: "/run/netns/media", Present: true, ID: "net:[4026532301]"},
		Interfaces: []kstate.Link{
			{Name: "lo", Kind: "loopback", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
			{Name: "wg0", Kind: "tun", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.64.12.34/32")}},
		},
		Routes: []kstate.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "wg0"}},
		Tunnel: Tunnel{Interface: "wg0", Configured: "auto", Backend: "userspace", Present: true, Up: true, MTU: 1420, ListenPort: 51820,
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.64.12.34/32")},
			Peers: []Peer{{PublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", ConfiguredEndpoint: "198.51.100.7:51820", Endpoint: "198.51.100.7:51820",
				LatestHandshake: &hs, HandshakeAge: &age, RxBytes: 1300000, TxBytes: 300000, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Keepalive: 25, OnDevice: true}}},
		Firewall: &kstate.Firewall{Family: "inet", Table: "vpn_confinement", Rules: 23, Sets: 2, DropPackets: 17, DropBytes: 1200, Chains: []kstate.Chain{
			{Name: "forward", Hook: "forward", Policy: "drop"}, {Name: "input", Hook: "input", Policy: "drop", Rules: 6}, {Name: "output", Hook: "output", Policy: "drop", Rules: 17}}},
		DNS:      DNS{Mode: "strict", Servers: []string{"10.64.0.1"}, ResolvConf: "/run/vpn-confinement/media/resolv.conf", Generated: []string{"10.64.0.1"}, Current: true},
		HostLink: &HostLink{HostIf: "vh-abc", NsIf: "vn-abc", HostAddr: "169.254.23.1", NsAddr: "169.254.23.2", PublishedTCP: []uint16{8080}, HostPresent: true, HostUp: true, NsPresent: true},
	}
}

var allKnown = Known{Systemd: true, Kernel: true}

func TestAssess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(n *Namespace)
		known   Known
		state   string
		problem string // substring of a problem ("" = none)
		note    string
	}{
		{"healthy", func(n *Namespace) {}, allKnown, StateUp, "", ""},
		{"service outside", func(n *Namespace) {
			n.Confined[0].InNamespace, n.Confined[0].ProcessNetns = ptr(false), "net:[4026531840]"
		}, allKnown, StateUnsafe, "qbittorrent.service (PID 1234) runs OUTSIDE the namespace: it is in net:[4026531840], not net:[4026532301]", ""},
		{"no kill switch", func(n *Namespace) { n.Firewall = nil }, allKnown, StateUnsafe, "without table inet vpn_confinement", ""},
		{"output accepts", func(n *Namespace) { n.Firewall.Chains[2].Policy = "accept" }, allKnown, StateUnsafe, "no policy-drop chain for output", ""},
		{"firewall unread is not absent", func(n *Namespace) { n.Firewall = nil }, Known{Systemd: true}, StateUnknown, "", ""},
		{"wg failed", func(n *Namespace) {
			n.Units[1].ActiveState, n.Units[1].SubState = "failed", "failed"
			n.Tunnel.Present = false
		}, allKnown, StateFailed, "vpn-wg@media.service failed (failed); see: journalctl -u vpn-wg@media.service", ""},
		{"tunnel missing", func(n *Namespace) { n.Tunnel.Present = false }, allKnown, StateDegraded, "the tunnel interface wg0 is missing", ""},
		{"tunnel down", func(n *Namespace) { n.Tunnel.Up = false }, allKnown, StateDegraded, "wg0 is down", ""},
		{"no handshake with keepalive", func(n *Namespace) { n.Tunnel.Peers[0].LatestHandshake = nil }, allKnown, StateDegraded, "no handshake with peer", ""},
		{"no handshake idle", func(n *Namespace) {
			n.Tunnel.Peers[0].LatestHandshake, n.Tunnel.Peers[0].Keepalive = nil, 0
		}, allKnown, StateUp, "", "no handshake with peer"},
		{"expired session with keepalive", func(n *Namespace) {
			old := now.Add(-10 * time.Minute)
			n.Tunnel.Peers[0].LatestHandshake = &old
		}, allKnown, StateDegraded, "was 10m0s ago", ""},
		{"old handshake idle", func(n *Namespace) {
			old := now.Add(-10 * time.Minute)
			n.Tunnel.Peers[0].LatestHandshake, n.Tunnel.Peers[0].Keepalive = &old, 0
		}, allKnown, StateUp, "", "idle tunnel"},
		{"peer missing on device", func(n *Namespace) { n.Tunnel.Peers[0].OnDevice = false }, allKnown, StateDegraded, "missing on wg0", ""},
		{"resolv.conf missing", func(n *Namespace) { n.DNS.Generated = nil }, allKnown, StateDegraded, "resolv.conf is missing", ""},
		{"resolv.conf outdated", func(n *Namespace) { n.DNS.Generated, n.DNS.Current = []string{"10.8.0.1"}, false }, allKnown, StateDegraded, "systemctl reload vpn-ns@media.service", ""},
		{"resolv.conf of a pending plan", func(n *Namespace) {
			n.DNS.Generated, n.DNS.Current = []string{"10.8.0.1"}, false
			n.Pending = &PendingPlan{Pending: true, PlanHash: "b", AppliedHash: "a", Command: "systemctl reload vpn-ns@media.service"}
		}, allKnown, StateUp, "pending plan", ""},
		{"compat dns ignores resolv.conf", func(n *Namespace) { n.DNS.Mode, n.DNS.Generated = "compat", nil }, allKnown, StateUp, "", ""},
		{"host link gone", func(n *Namespace) { n.HostLink.HostPresent = false }, allKnown, StateDegraded, "vh-abc is missing on the host", ""},
		{"pin table missing", func(n *Namespace) { n.Pinning = &Pinning{Namespace: "init", Table: "vpnc_pin_media", Mark: 0x1234} }, allKnown, StateDegraded, "vpnc_pin_media is missing", ""},
		{"left-over namespace", func(n *Namespace) { n.Units[0].ActiveState = "inactive" }, allKnown, StateDegraded, "left-over namespace", ""},
		{"stopped", func(n *Namespace) {
			*n = Namespace{Name: "media", Netns: Netns{Path: "/run/netns/media"}, Tunnel: Tunnel{Interface: "wg0"},
				Units: []Unit{{Name: "vpn-ns@media.service", ActiveState: "inactive", SubState: "dead"}}}
		}, allKnown, StateDown, "", ""},
		{"namespace unit active, pin gone", func(n *Namespace) {
			n.Netns.Present = false
			n.Confined[0].InNamespace = ptr(false)
		}, allKnown, StateUnsafe, "/run/netns/media is missing", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := healthy()
			tc.mutate(n)
			Assess(n, tc.known, now)
			if n.State != tc.state {
				t.Errorf("state %s, want %s; problems %q", n.State, tc.state, n.Problems)
			}
			ps, ns := strings.Join(n.Problems, "\n"), strings.Join(n.Notes, "\n")
			if tc.problem == "" && len(n.Problems) > 0 {
				t.Errorf("unexpected problems: %q", n.Problems)
			}
			if !strings.Contains(ps, tc.problem) {
				t.Errorf("problems %q lack %q", n.Problems, tc.problem)
			}
			if !strings.Contains(ns, tc.note) {
				t.Errorf("notes %q lack %q", n.Notes, tc.note)
			}
		})
	}
}

func TestRender(t *testing.T) {
	n := healthy()
	Assess(n, allKnown, now)
	rep := &Report{Systemd: "running", Namespaces: []Namespace{*n},
		NotCompiled: []NotCompiled{{File: "/etc/vpn-confinement.d/new.yaml", Namespace: "new", Reason: "valid but not compiled yet: run systemctl daemon-reload"}}}
	var b bytes.Buffer
	rep.WriteText(&b, now)
	out := b.String()
	for _, want := range []string{
		"* media: UP",
		"units      vpn-ns@media.service active (exited); vpn-wg@media.service active (running, PID 812)",
		"namespace  /run/netns/media net:[4026532301]",
		"tunnel     wg0 up, userspace (wireguard-go, link kind tun) (configured: auto), mtu 1420, listen port 51820",
		"peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
		"endpoint 198.51.100.7:51820, handshake 42s ago, received 1.2 MiB, sent 293.0 KiB",
		"firewall   table inet vpn_confinement: 3 chains (forward, input, output: policy drop), 23 rules, 2 sets; 17 packets dropped (1.2 KiB)",
		"routes     0.0.0.0/0 dev wg0",
		"interfaces lo (loopback, up) 127.0.0.1/8",
		"wg0 (tun, up) 10.64.12.34/32",
		"dns        strict, resolvers 10.64.0.1 (generated /run/vpn-confinement/media/resolv.conf)",
		"host link  vh-abc 169.254.23.1 (host, up) <-> vn-abc 169.254.23.2 (namespace)",
		"published tcp 8080: connect from the host to 169.254.23.2",
		"confined   qbittorrent.service active (running, PID 1234), in the namespace",
		"not in use:\n  /etc/vpn-confinement.d/new.yaml: valid but not compiled yet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	ns := doc["namespaces"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "state", "problems", "units", "confined", "netns", "interfaces", "routes", "tunnel", "firewall", "dns", "hostLink"} {
		if _, ok := ns[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	peer := ns["tunnel"].(map[string]any)["peers"].([]any)[0].(map[string]any)
	if peer["handshakeAgeSeconds"].(float64) != 42 || peer["endpoint"] != "198.51.100.7:51820" {
		t.Errorf("peer JSON: %v", peer)
	}
	if ns["confined"].([]any)[0].(map[string]any)["inNamespace"] != true {
		t.Error("inNamespace")
	}
}

func TestDurationAndBytes(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 192 * time.Second: "3m12s", 2*time.Hour + 5*time.Minute: "2h05m"} {
		if got := durationText(d); got != want {
			t.Errorf("%v: %s", d, got)
		}
	}
	for n, want := range map[int64]string{12: "12 B", 2048: "2.0 KiB", 5 << 30: "5.0 GiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("%d: %s", n, got)
		}
	}
}

// forwarding adds a healthy port-forwarding report to n.
func forwarding(n *Namespace, port uint16, open ...uint16) {
	since := now.Add(-192 * time.Second)
	age := int64(192)
	n.Units = append(n.Units, Unit{Name: "vpn-pf@media.service", LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 900})
	n.PortForwarding = &PortForwarding{Protocol: "natpmp", Port: port, Since: &since, Age: &age, Reported: true,
		Unit:  Unit{Name: "vpn-pf@media.service", LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 900},
		Lease: "port 38534, renewed 12 s ago", AppStatus: []string{"qbittorrent: port 38534"}, Open: append([]uint16{}, open...)}
}

func TestAssessPortForward(t *testing.T) {
	for _, tc := range []struct {
		name          string
		port          uint16
		open          []uint16
		state         string
		problem, note string
	}{
		{"leased and open", 38534, []uint16{38534}, StateUp, "", ""},
		{"no lease, nothing open", 0, nil, StateUp, "", "no forwarded port yet: port 38534, renewed 12 s ago"},
		{"open without a lease", 0, []uint16{38534}, StateDegraded, "the firewall accepts forwarded port(s) [38534] inbound but vpn-pf@media.service reports no lease", ""},
		{"firewall holds another port", 40000, []uint16{38534}, StateDegraded, "vpn-pf@media.service reports port 40000 but the firewall's forwarded_ports holds [38534]", ""},
		{"leased, not open", 40000, nil, StateDegraded, "holds []", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := healthy()
			forwarding(n, tc.port, tc.open...)
			Assess(n, allKnown, now)
			if n.State != tc.state {
				t.Errorf("state %s, want %s; problems %q", n.State, tc.state, n.Problems)
			}
			if tc.problem == "" && len(n.Problems) > 0 {
				t.Errorf("unexpected problems: %q", n.Problems)
			}
			if ps := strings.Join(n.Problems, "\n"); !strings.Contains(ps, tc.problem) {
				t.Errorf("problems %q lack %q", n.Problems, tc.problem)
			}
			if ns := strings.Join(n.Notes, "\n"); !strings.Contains(ns, tc.note) {
				t.Errorf("notes %q lack %q", n.Notes, tc.note)
			}
		})
	}
}

func TestRenderPortForward(t *testing.T) {
	n := healthy()
	forwarding(n, 38534, 38534)
	Assess(n, allKnown, now)
	var b bytes.Buffer
	(&Report{Systemd: "running", Namespaces: []Namespace{*n}}).WriteText(&b, now)
	for _, want := range []string{
		"port fwd   38534 (natpmp), for 3m12s; vpn-pf@media.service active (running, PID 900)\n",
		"lease: port 38534, renewed 12 s ago\n",
		"firewall: forwarded_ports { 38534 }\n",
		"qbittorrent: port 38534\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	(&Report{Systemd: "running", Namespaces: []Namespace{*n}}).WriteJSON(&b)
	var doc struct {
		Namespaces []struct {
			PortForwarding map[string]any `json:"portForwarding"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	pf := doc.Namespaces[0].PortForwarding
	if pf["port"] != float64(38534) || pf["ageSeconds"] != float64(192) || pf["protocol"] != "natpmp" {
		t.Errorf("portForwarding JSON: %v", pf)
	}
}
