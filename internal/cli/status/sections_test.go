package status

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
)

// helperState is a tunnel helper report with every field set.
func helperState() *tunnel.State {
	drops := uint64(3)
	return &tunnel.State{Namespace: "media", PID: 812, State: tunnel.StateBlocked, Since: now.Add(-90 * time.Second),
		Reason: "peer 0: unreachable at 198.51.100.7:51820", OnTunnelLoss: "block", PlanHash: "abc",
		Peers: []tunnel.PeerState{{Endpoint: "198.51.100.7:51820", EndpointIndex: 1, Endpoints: 3, Health: "unreachable",
			LastHandshake: now.Add(-200 * time.Second), RxBytes: 10, TxBytes: 20}},
		RxBytes: 10, TxBytes: 20, KillSwitchDrops: map[string]uint64{"input": 4, "output": 5}, TripwireDrops: &drops,
		Units:     []tunnel.UnitInfo{{Unit: "qbittorrent.service", Active: "active", Held: "frozen"}},
		Failovers: 2, Recreations: 1, Updated: now}
}

// TestSupervisorCarriesMetrics: every metric of the helper's Prometheus
// textfile has its field in status --json, with the same value.
func TestSupervisorCarriesMetrics(t *testing.T) {
	st := helperState()
	sup := supervisorFrom("/run/vpn-confinement/_private/media/tunnel.json", st)
	b, _ := json.Marshal(sup)
	var doc map[string]any
	json.Unmarshal(b, &doc)
	peer := doc["peers"].([]any)[0].(map[string]any)
	unit := doc["units"].([]any)[0].(map[string]any)
	ks := doc["killSwitchDrops"].(map[string]any)
	// metric name → its value in the textfile (one series) → the JSON value.
	fields := map[string]struct {
		metric string // the series' labels and value as Metrics prints them
		json   any
	}{
		"vpnc_tunnel_up":                        {`vpnc_tunnel_up{namespace="media"} 0`, doc["up"] == false},
		"vpnc_tunnel_state":                     {`vpnc_tunnel_state{namespace="media",state="blocked"} 1`, doc["state"] == "blocked"},
		"vpnc_tunnel_state_since_seconds":       {`vpnc_tunnel_state_since_seconds{namespace="media"} 1795694310`, doc["since"] == now.Add(-90*time.Second).Format(time.RFC3339Nano)},
		"vpnc_handshake_age_seconds":            {`vpnc_handshake_age_seconds{namespace="media",peer="0"} 200`, peer["handshakeAgeSeconds"] == 200.0},
		"vpnc_rx_bytes_total":                   {`vpnc_rx_bytes_total{namespace="media"} 10`, doc["rxBytes"] == 10.0},
		"vpnc_tx_bytes_total":                   {`vpnc_tx_bytes_total{namespace="media"} 20`, doc["txBytes"] == 20.0},
		"vpnc_killswitch_dropped_packets_total": {`vpnc_killswitch_dropped_packets_total{namespace="media",chain="output"} 5`, ks["output"] == 5.0 && ks["input"] == 4.0},
		"vpnc_tripwire_dropped_packets_total":   {`vpnc_tripwire_dropped_packets_total{namespace="media"} 3`, doc["tripwireDrops"] == 3.0},
		"vpnc_endpoint_failovers_total":         {`vpnc_endpoint_failovers_total{namespace="media"} 2`, doc["failovers"] == 2.0},
		"vpnc_tunnel_recreations_total":         {`vpnc_tunnel_recreations_total{namespace="media"} 1`, doc["recreations"] == 1.0},
		"vpnc_confined_unit_active":             {`vpnc_confined_unit_active{namespace="media",unit="qbittorrent.service"} 1`, unit["active"] == true},
		"vpnc_confined_unit_held":               {`vpnc_confined_unit_held{namespace="media",unit="qbittorrent.service",held="frozen"} 1`, unit["held"] == "frozen"},
	}
	metrics := st.Metrics()
	for _, line := range strings.Split(metrics, "\n") {
		name, ok := strings.CutPrefix(line, "# TYPE ")
		if !ok {
			continue
		}
		name = strings.Fields(name)[0]
		f, ok := fields[name]
		if !ok {
			t.Errorf("metric %s has no field in status --json (add it to Supervisor and to this table)", name)
			continue
		}
		if !strings.Contains(metrics, f.metric+"\n") {
			t.Errorf("metrics lack %q:\n%s", f.metric, metrics)
		}
		if f.json != true {
			t.Errorf("status --json disagrees with %s: %s", f.metric, b)
		}
	}
	if peer["endpointIndex"] != 2.0 || peer["endpoints"] != 3.0 {
		t.Errorf("endpoint i of n counts from 1: %v", peer)
	}
}

func withSupervisor(state, reason string, current bool) func(n *Namespace) {
	return func(n *Namespace) {
		st := helperState()
		st.State, st.Reason = state, reason
		st.Units = nil
		n.Supervisor = supervisorFrom("/run/vpn-confinement/_private/media/tunnel.json", st)
		n.Supervisor.Current = current
	}
}

func TestAssessSections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(n *Namespace)
		state   string
		problem string
		note    string
	}{
		{"tunnel up", withSupervisor(tunnel.StateUp, "peer 0: up", true), StateUp, "", ""},
		{"tunnel blocked", withSupervisor(tunnel.StateBlocked, "peer 0: unreachable", true), StateDegraded,
			"tunnel blocked since 2026-11-26 11:58:30 (1m30s ago): peer 0: unreachable; confined services have no way out (onTunnelLoss block)", ""},
		{"tunnel stalled", withSupervisor(tunnel.StateStalled, "peer 0: stalled", true), StateDegraded, "tunnel stalled since", ""},
		{"tunnel connecting", withSupervisor(tunnel.StateConnecting, "", true), StateUp, "", "tunnel connecting since"},
		{"old state file", withSupervisor(tunnel.StateBlocked, "x", false), StateUp, "", "written by PID 812, which is not vpn-wg@media.service's main process"},
		{"held units", func(n *Namespace) {
			withSupervisor(tunnel.StateUp, "", true)(n)
			n.Supervisor.Units = []SupervisedUnit{{Unit: "qbittorrent.service", Active: true, Held: "frozen"}}
		}, StateUp, "", "held by the tunnel helper until the tunnel is up: qbittorrent.service (frozen)"},
		{"pending plan", func(n *Namespace) {
			n.Pending = &PendingPlan{PlanHash: "bbbb", AppliedHash: "aaaa", Pending: true, Command: "systemctl reload vpn-ns@media.service"}
		}, StateUp, "pending plan: the namespace runs an older plan than the generator's; apply it: systemctl reload vpn-ns@media.service", ""},
		{"pending plan, not live", func(n *Namespace) {
			n.Pending = &PendingPlan{PlanHash: "bbbb", AppliedHash: "aaaa", Pending: true, NotLive: []string{"wireguard.interface"},
				Command: "systemctl restart vpn-ns@media.service (stops and starts the confined services)"}
		}, StateUp, "pending plan: wireguard.interface changed, which a reload cannot apply; apply it: systemctl restart vpn-ns@media.service", ""},
		{"pending plan hides the dns hint", func(n *Namespace) {
			n.Pending = &PendingPlan{PlanHash: "bbbb", AppliedHash: "aaaa", Pending: true, Command: "systemctl reload vpn-ns@media.service"}
			n.DNS.Generated, n.DNS.Current = []string{"10.8.0.1"}, false
		}, StateUp, "pending plan", ""},
		{"tunnel behind", func(n *Namespace) {
			n.Pending = &PendingPlan{PlanHash: "aaaa", AppliedHash: "aaaa", TunnelPlanHash: "cccc", TunnelBehind: true}
		}, StateUp, "", "the tunnel helper runs another plan than the namespace"},
		{"config edited", func(n *Namespace) {
			n.Pending = &PendingPlan{ConfigChanged: []string{"/etc/vpn-confinement.d/media.yaml"}}
		}, StateUp, "media.yaml changed after the last daemon-reload", ""},
		{"tripwire escape", func(n *Namespace) { n.Tripwire = &NamespaceTripwire{Packets: 4, Bytes: 240} }, StateUnsafe,
			"tripwire: 4 packets (240 B) of confined units' sockets were dropped in the host's network namespace", ""},
		{"tripwire escape while down", func(n *Namespace) {
			*n = Namespace{Name: "media", Netns: Netns{Path: "/run/netns/media"}, Tunnel: Tunnel{Interface: "wg0"},
				Units: []Unit{{Name: "vpn-ns@media.service", ActiveState: "inactive"}}, Tripwire: &NamespaceTripwire{Packets: 1}}
		}, StateUnsafe, "tripwire: 1 packets", ""},
		{"tripwire misses a unit", func(n *Namespace) {
			n.Tripwire = &NamespaceTripwire{Unregistered: []string{"qbittorrent.service"}}
		}, StateDegraded, "tripwire: qbittorrent.service runs, but its cgroup is not registered", ""},
		{"lease unit stopped", func(n *Namespace) {
			n.PortForwarding = &PortForwarding{Protocol: "natpmp", Unit: Unit{Name: "vpn-pf@media.service", ActiveState: "inactive"}}
		}, StateDegraded, "port forwarding: vpn-pf@media.service is inactive", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := healthy()
			tc.mutate(n)
			Assess(n, allKnown, now)
			if n.State != tc.state {
				t.Errorf("state %s, want %s; problems %q", n.State, tc.state, n.Problems)
			}
			ps, ns := strings.Join(n.Problems, "\n"), strings.Join(n.Notes, "\n")
			if tc.problem == "" && len(n.Problems) > 0 {
				t.Errorf("unexpected problems: %q", n.Problems)
			}
			if tc.problem != "" && len(n.Problems) != 1 {
				t.Errorf("want one problem, got %q", n.Problems)
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

func TestComparePlans(t *testing.T) {
	pp := &PendingPlan{PlanHash: "a", AppliedHash: "a"}
	pp.comparePlans("media", nil, nil)
	if pp.Pending || pp.Command != "" {
		t.Errorf("same hashes: %+v", pp)
	}
	pp = &PendingPlan{PlanHash: "a"}
	pp.comparePlans("media", nil, nil)
	if pp.Pending {
		t.Errorf("no applied plan (namespace down) is not pending: %+v", pp)
	}
	cur := testPlan()
	next := testPlan()
	next.DNS.Servers = nil
	pp = &PendingPlan{PlanHash: "b", AppliedHash: "a"}
	pp.comparePlans("media", next, cur)
	if !pp.Pending || pp.Command != "systemctl reload vpn-ns@media.service" || pp.NotLive != nil {
		t.Errorf("live change: %+v", pp)
	}
	next.WireGuard.Interface, next.WireGuard.Backend = "wg1", "kernel"
	pp = &PendingPlan{PlanHash: "b", AppliedHash: "a"}
	pp.comparePlans("media", next, cur)
	if diff := cmp.Diff([]string{"wireguard.interface", "wireguard.backend"}, pp.NotLive); diff != "" || !strings.HasPrefix(pp.Command, "systemctl restart vpn-ns@media.service") {
		t.Errorf("not live: %+v %s", pp, diff)
	}
}

func TestAssessOrphan(t *testing.T) {
	running := Orphan{Namespace: "old", Running: true, Namespaced: Unit{Name: "vpn-ns@old.service", ActiveState: "active"}, Config: "/etc/vpn-confinement.d/old.yaml",
		Units: []Unit{{Name: "app.service", ActiveState: "active"}, {Name: "idle.service", ActiveState: "inactive"}}}
	o := running
	assessOrphan(&o, allKnown)
	if o.Problem != "namespace old is running without a file (/etc/vpn-confinement.d/old.yaml was removed): app.service run unconfined after their next restart; to keep them confined restore /etc/vpn-confinement.d/old.yaml, to end the confinement on purpose: systemctl stop app.service vpn-ns@old.service" {
		t.Errorf("problem %q", o.Problem)
	}
	// Measured: one still inside, one already restarted onto the host.
	o = running
	in, out := true, false
	o.Units = []Unit{{Name: "app.service", ActiveState: "active", InNamespace: &in}, {Name: "web.service", ActiveState: "active", InNamespace: &out}}
	assessOrphan(&o, allKnown)
	if !strings.Contains(o.Problem, "; web.service already run OUTSIDE the namespace, on the host's network; app.service still run inside it, without their drop-in;") {
		t.Errorf("measured problem %q", o.Problem)
	}
	o = running
	o.File = "/etc/vpn-confinement.d/old.yaml"
	assessOrphan(&o, allKnown)
	if !strings.Contains(o.Problem, "running without a compiled plan: /etc/vpn-confinement.d/old.yaml is not valid, so app.service are blocked at their next start") {
		t.Errorf("problem %q", o.Problem)
	}
	o = Orphan{Namespace: "old", Record: "/var/lib/vpn-confinement/old.units", Units: []Unit{{Name: "app.service", ActiveState: "active"}}}
	assessOrphan(&o, allKnown)
	if o.Problem != "" || !strings.Contains(o.Note, "app.service, confined at its last good start, still run in what is left of it (no tunnel) and on the host's network after their next restart") {
		t.Errorf("stopped orphan: %+v", o)
	}
	rep := &Report{Orphans: []Orphan{running, o}}
	rep.Orphans[0].Problem = "x"
	if rep.Problems() != 1 {
		t.Errorf("orphans count as problems: %d", rep.Problems())
	}
}

func TestRenderSections(t *testing.T) {
	n := healthy()
	withSupervisor(tunnel.StateUp, "peer 0: up", true)(n)
	n.Pending = &PendingPlan{PlanHash: "bbbbbbbbbbbbbbbbbbbb", AppliedHash: "aaaaaaaaaaaaaaaaaaaa", Pending: true, Command: "systemctl reload vpn-ns@media.service"}
	n.Tripwire = &NamespaceTripwire{Registered: []string{"qbittorrent.service"}}
	n.Published = []Published{{Unit: "vpn-publish-media-8080", Port: 8080, Listen: []PublishedAddr{{Address: "127.0.0.1:8080"}, {Address: "[::1]:8080"}},
		Socket:  Unit{Name: "vpn-publish-media-8080.socket", LoadState: "loaded", ActiveState: "active", SubState: "listening"},
		Service: Unit{Name: "vpn-publish-media-8080.service", LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}}}
	n.ToHost = &ToHost{Address: "169.254.23.1", TCP: []uint16{5432}}
	n.PortForwarding = &PortForwarding{Protocol: "natpmp", Gateway: "10.2.0.1", Apps: []string{"qbittorrent http://127.0.0.1:8080"},
		Unit: Unit{Name: "vpn-pf@media.service", LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 900}}
	Assess(n, allKnown, now)
	rep := &Report{Systemd: "running", Namespaces: []Namespace{*n},
		Orphans:  []Orphan{{Namespace: "old", Problem: "namespace old is running without a file: ..."}},
		Tripwire: &HostTripwire{Table: true, Registered: 1}}
	var b bytes.Buffer
	rep.WriteText(&b, now)
	out := b.String()
	for _, want := range []string{
		"lifecycle  up since 2026-11-26 11:58:30 (1m30s ago): peer 0: up, onTunnelLoss block, 2 failovers, 1 recreation",
		"peer 1: unreachable, endpoint 2 of 3 198.51.100.7:51820, handshake 3m20s ago",
		"kill switch dropped (packets): input 4, output 5",
		"plan       pending (applied aaaaaaaaaaaa, compiled bbbbbbbbbbbb): systemctl reload vpn-ns@media.service",
		"published  127.0.0.1:8080 [::1]:8080 → port 8080 in the namespace (proxy vpn-publish-media-8080.service inactive); vpn-publish-media-8080.socket active",
		"to host    confined services may open tcp/5432 on the host at 169.254.23.1",
		"port fwd   natpmp via 10.2.0.1: no report from the lease helper; vpn-pf@media.service active (running, PID 900)",
		"apps: qbittorrent http://127.0.0.1:8080",
		"tripwire   0 packets dropped in the host namespace; watching qbittorrent.service",
		"without a file:\n    PROBLEM: namespace old is running without a file",
		"host tripwire: table inet vpnc_tripwire: 1 cgroups watched, 0 packets dropped in total",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, ht := range []struct {
		t    HostTripwire
		want string
	}{
		{HostTripwire{Unsupported: "the kernel has no nftables socket expression (CONFIG_NFT_SOCKET)"}, "not available on this host, nothing claims it: the kernel has no nftables socket expression"},
		{HostTripwire{}, "not loaded (no confined unit has started since boot)"},
	} {
		if got := ht.t.text(); !strings.Contains(got, ht.want) {
			t.Errorf("%+v: %q", ht.t, got)
		}
	}
	b.Reset()
	rep.WriteJSON(&b)
	var doc map[string]any
	json.Unmarshal(b.Bytes(), &doc)
	ns := doc["namespaces"].([]any)[0].(map[string]any)
	for _, k := range []string{"supervisor", "pendingPlan", "tripwire", "published", "toHost", "portForwarding"} {
		if ns[k] == nil {
			t.Errorf("namespace JSON lacks %q", k)
		}
	}
	for _, k := range []string{"tripwire", "orphans"} {
		if doc[k] == nil {
			t.Errorf("report JSON lacks %q", k)
		}
	}
}

func init() { time.Local = time.UTC } // sinceText shows local time

func testPlan() *plan.Namespace {
	return &plan.Namespace{Version: plan.Version, Name: "media", DNS: plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.64.0.1")}},
		WireGuard: plan.WireGuard{Interface: "wg0", Backend: "auto", PrivateKey: plan.KeySource{File: "/etc/vpn-confinement.d/keys/media.key"}}}
}
