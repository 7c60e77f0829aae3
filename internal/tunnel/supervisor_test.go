//go:build linux

package tunnel

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
)

// fakeUnits stands in for systemd: it records the supervisor's calls.
type fakeUnits struct {
	mu     sync.Mutex
	state  map[string]string
	frozen map[string]bool
	calls  []string
}

func newFakeUnits(units ...string) *fakeUnits {
	f := &fakeUnits{state: map[string]string{}, frozen: map[string]bool{}}
	for _, u := range units {
		f.state[u] = "active"
	}
	f.state["vpn-ns@x.service"] = "active"
	return f
}

func (f *fakeUnits) States(_ context.Context, us []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, u := range us {
		out[u] = f.state[u]
		if out[u] == "" {
			out[u] = "active" // vpn-ns@ of any name
		}
	}
	return out, nil
}

func (f *fakeUnits) record(c, u string, st string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c+" "+u)
	if st != "" {
		f.state[u] = st
	}
	return nil
}

func (f *fakeUnits) Start(_ context.Context, u string) error { return f.record("start", u, "active") }
func (f *fakeUnits) Stop(_ context.Context, u string) error  { return f.record("stop", u, "inactive") }
func (f *fakeUnits) Freeze(_ context.Context, u string) error {
	f.frozen[u] = true
	return f.record("freeze", u, "")
}
func (f *fakeUnits) Thaw(_ context.Context, u string) error {
	delete(f.frozen, u)
	return f.record("thaw", u, "")
}

func (f *fakeUnits) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type run struct {
	tp     *testnet.Topology
	ns     *netns.NetNS
	o      Options
	units  *fakeUnits
	notify chan string
	done   chan error
	cancel context.CancelFunc
}

// start runs the supervisor for tp's plan with short intervals.
func start(t *testing.T, tp *testnet.Topology, mode string, edit func(*Options)) *run {
	t.Helper()
	ns := tp.ConfinedNS()
	tp.Plan.OnTunnelLoss = mode
	tp.Plan.Services = []plan.Unit{{Name: "app.service"}}
	dir := t.TempDir()
	r := &run{tp: tp, ns: ns, units: newFakeUnits("app.service"), notify: make(chan string, 100), done: make(chan error, 1)}
	r.o = Options{
		Units: r.units, CheckInterval: 200 * time.Millisecond, ProbeKeepalive: time.Second,
		Backoff:   &Backoff{First: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		PlanPath:  tp.WritePlan(),
		StatePath: filepath.Join(dir, "tunnel.json"), MetricsPath: filepath.Join(dir, "ns.prom"),
		RecordPath: filepath.Join(dir, "units.json"), ControlPath: filepath.Join(dir, "control.sock"),
		Notify: func(s string) {
			select {
			case r.notify <- s:
			default:
			}
		},
	}
	if edit != nil {
		edit(&r.o)
	}
	log, _ := testnet.Log(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, tp.Plan, log, r.o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("the supervisor did not stop")
		}
	})
	return r
}

func (r *run) state(t *testing.T) *State {
	t.Helper()
	s, err := LoadState(r.o.StatePath)
	if err != nil {
		return &State{}
	}
	return s
}

// waitState waits for the state file to say want, poking the tunnel (a
// datagram into it) so WireGuard has something to send.
func (r *run) waitState(t *testing.T, want string, d time.Duration) *State {
	t.Helper()
	var s *State
	if !testnet.WaitFor(d, func() bool {
		poke(r.ns)
		s = r.state(t)
		return s.State == want
	}) {
		t.Fatalf("state %q (%s), want %q", s.State, s.Reason, want)
	}
	return s
}

func poke(ns *netns.NetNS) {
	ns.Do(func() error {
		c, err := net.Dial("udp", "10.123.0.1:7")
		if err == nil {
			c.Write([]byte("poke"))
			c.Close()
		}
		return nil
	})
}

func echo(ns *netns.NetNS) (string, error) {
	var line string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "10.123.0.1:7", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

func (r *run) readyNotified(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-r.notify:
			if s == "READY=1" {
				return
			}
		case <-deadline:
			t.Fatal("no READY=1")
		}
	}
}

// TestRecreatesTunnel: the tunnel's link deleted (or its device gone) is
// brought back by the supervisor at once; in stop mode the confined unit
// is stopped while it is gone and started again after.
func TestRecreatesTunnel(t *testing.T) {
	for _, mode := range []string{plan.OnTunnelLossBlock, plan.OnTunnelLossStop, plan.OnTunnelLossFreeze} {
		t.Run(mode, func(t *testing.T) {
			tp := testnet.New(t)
			r := start(t, tp, mode, nil)
			r.readyNotified(t)
			r.waitState(t, StateUp, 10*time.Second)
			if _, err := echo(r.ns); err != nil {
				t.Fatalf("echo through the tunnel: %v", err)
			}
			killed := time.Now()
			if out, err := exec.Command("ip", "-n", tp.Name, "link", "del", tp.Plan.WireGuard.Interface).CombinedOutput(); err != nil {
				t.Fatalf("ip link del: %v %s", err, out)
			}
			// Within one handshake retransmission (5 s) even when the new
			// initiation collides with the dead device's (the peer drops
			// initiations 20 ms apart).
			if !testnet.WaitFor(15*time.Second, func() bool { _, err := echo(r.ns); return err == nil }) {
				t.Fatal("traffic did not come back")
			}
			t.Logf("%s: link deleted → traffic again after %s", mode, time.Since(killed).Round(time.Millisecond))
			s := r.waitState(t, StateUp, 15*time.Second)
			if s.Recreations < 1 {
				t.Errorf("recreations %d", s.Recreations)
			}
			calls := r.units.Calls()
			switch mode {
			case plan.OnTunnelLossBlock:
				if len(calls) != 0 {
					t.Errorf("block mode touched units: %v", calls)
				}
			case plan.OnTunnelLossStop:
				if !slices.Equal(calls, []string{"stop app.service", "start app.service"}) {
					t.Errorf("stop mode calls %v, want stop then start", calls)
				}
			case plan.OnTunnelLossFreeze:
				if !slices.Equal(calls, []string{"freeze app.service", "thaw app.service"}) {
					t.Errorf("freeze mode calls %v, want freeze then thaw", calls)
				}
			}
		})
	}
}

// TestFailover: the first endpoint never answers; the supervisor moves to
// the second within the first-handshake grace, the pin set always holds
// exactly the endpoint in use, and traffic flows.
func TestFailover(t *testing.T) {
	tp := testnet.New(t)
	tp.AddServerAddress(testnet.SrvUplink2)
	dead := plan.Endpoint{Host: "10.213.0.9", Port: testnet.WGPort}
	alive := plan.Endpoint{Host: testnet.SrvUplink2.Addr().String(), Port: testnet.WGPort}
	tp.Plan.WireGuard.Peers[0].Endpoint = &dead
	tp.Plan.WireGuard.Peers[0].Failover = []plan.Endpoint{alive}
	tp.Plan.Watchdog = plan.Watchdog{StallAfterSeconds: 180, FirstHandshakeSeconds: 2}
	tp.Plan.WireGuard.Pinning = &plan.Pinning{FwMark: 0x4242, Table: "vpnc_pin_failover"}
	var mu sync.Mutex
	var pins [][]netip.AddrPort
	r := start(t, tp, plan.OnTunnelLossBlock, func(o *Options) {
		o.WireGuard.UpdatePins = func(_ string, eps []netip.AddrPort) error {
			mu.Lock()
			defer mu.Unlock()
			pins = append(pins, slices.Clone(eps))
			return nil
		}
	})
	s := r.waitState(t, StateUp, 20*time.Second)
	if s.Peers[0].EndpointIndex != 1 || s.Failovers < 1 {
		t.Fatalf("peer state %+v, want endpoint 2 after a failover", s.Peers[0])
	}
	if line, err := echo(r.ns); err != nil || !strings.HasPrefix(line, "peer 10.123.0.2:") {
		t.Fatalf("echo after failover: %q %v", line, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := netip.MustParseAddrPort("10.213.0.3:51820")
	if last := pins[len(pins)-1]; len(last) != 1 || last[0] != want {
		t.Errorf("pin set %v, want only %v", last, want)
	}
	for _, p := range pins {
		if len(p) != 1 {
			t.Errorf("a pin set with %d endpoints: %v (only the one in use may be allowed)", len(p), p)
		}
	}
}

// TestStallFailover: the provider stops answering on the first address
// after a good start; the stall is detected while the tunnel keeps
// sending, and the supervisor fails over to the second address.
func TestStallFailover(t *testing.T) {
	tp := testnet.New(t)
	tp.AddServerAddress(testnet.SrvUplink2)
	tp.Plan.WireGuard.Peers[0].Failover = []plan.Endpoint{{Host: testnet.SrvUplink2.Addr().String(), Port: testnet.WGPort}}
	tp.Plan.WireGuard.Peers[0].PersistentKeepalive = 1
	tp.Plan.Watchdog = plan.Watchdog{StallAfterSeconds: 6, FirstHandshakeSeconds: 2}
	r := start(t, tp, plan.OnTunnelLossBlock, nil)
	r.waitState(t, StateUp, 10*time.Second)
	// The provider goes silent on 10.213.0.2.
	if out, err := testnet.Exec(tp.Server, "nft", "add table inet silent; add chain inet silent in { type filter hook input priority 0; }; add rule inet silent in ip daddr 10.213.0.2 udp dport 51820 drop"); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	stalled := time.Now()
	if !testnet.WaitFor(30*time.Second, func() bool { poke(r.ns); s := r.state(t); return s.Failovers > 0 && s.Peers[0].EndpointIndex == 1 }) {
		t.Fatalf("no failover after the provider went silent: %+v", r.state(t))
	}
	t.Logf("silent → failover after %s", time.Since(stalled).Round(time.Millisecond))
	r.waitState(t, StateUp, 15*time.Second)
	if _, err := echo(r.ns); err != nil {
		t.Errorf("echo after the stall failover: %v", err)
	}
}

// TestUnresolvedAtBoot: a hostname endpoint that does not resolve yet
// (boot before the uplink) does not hold the services back in block mode
// (READY at once, state blocked), and traffic flows once it resolves.
func TestUnresolvedAtBoot(t *testing.T) {
	tp := testnet.New(t)
	tp.Plan.WireGuard.Peers[0].Endpoint = &plan.Endpoint{Host: "vpn.test", Port: testnet.WGPort}
	res := &lateResolver{addr: netip.MustParseAddr("10.213.0.2")}
	r := start(t, tp, plan.OnTunnelLossBlock, func(o *Options) { o.WireGuard.Resolver = res })
	r.readyNotified(t)
	r.waitState(t, StateBlocked, 5*time.Second)
	if _, err := echo(r.ns); err == nil {
		t.Fatal("traffic flows with an unresolved endpoint")
	}
	res.open()
	r.waitState(t, StateUp, 15*time.Second)
	if _, err := echo(r.ns); err != nil {
		t.Errorf("echo after the endpoint resolved: %v", err)
	}
}

type lateResolver struct {
	mu   sync.Mutex
	addr netip.Addr
	ok   bool
}

func (l *lateResolver) open() { l.mu.Lock(); l.ok = true; l.mu.Unlock() }

func (l *lateResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{l.addr}, nil
}

// TestLiveReload: a new plan is applied to the running tunnel through the
// control socket (an allowed-IPs change keeps the session); a change that
// cannot be applied live is refused with the key and the command, and
// changes nothing.
func TestLiveReload(t *testing.T) {
	tp := testnet.New(t)
	r := start(t, tp, plan.OnTunnelLossBlock, nil)
	r.waitState(t, StateUp, 10*time.Second)
	before := r.state(t).Peers[0].LastHandshake

	// A new plan object, as the helper reads it from the file.
	tp.Plan = clonePlan(t, tp.Plan)
	tp.Plan.WireGuard.Peers[0].AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.123.0.0/24")}
	tp.Plan.Egress.Mode = plan.EgressAllowList
	tp.WritePlan()
	if err := reloadAt(r.o.ControlPath, false); err != nil {
		t.Fatalf("live reload: %v", err)
	}
	if _, err := echo(r.ns); err != nil {
		t.Errorf("echo after reload: %v", err)
	}
	if after := r.state(t).Peers[0].LastHandshake; !after.Equal(before) && after.Before(before) {
		t.Errorf("handshake went back")
	}
	out, rerr := testnet.Exec(tp.Name, "ip", "route")
	t.Logf("ip route (%v):\n%s", rerr, out)
	if !strings.Contains(out, "10.123.0.0/24") || strings.Contains(out, "default") {
		t.Errorf("routes after the reload:\n%s", out)
	}

	tp.Plan = clonePlan(t, tp.Plan)
	tp.Plan.WireGuard.Interface = "wgother"
	tp.WritePlan()
	err := reloadAt(r.o.ControlPath, false)
	if err == nil || !strings.Contains(err.Error(), "wireguard.interface") || !strings.Contains(err.Error(), "systemctl restart vpn-ns@") {
		t.Fatalf("non-live reload: %v", err)
	}
	if _, err := echo(r.ns); err != nil {
		t.Errorf("echo after a refused reload: %v", err)
	}
}

// reloadAt is Reload for a control socket at a test path.
func reloadAt(path string, check bool) error {
	old := controlPathFor
	controlPathFor = func(string) string { return path }
	defer func() { controlPathFor = old }()
	return Reload("x", check)
}

func clonePlan(t *testing.T, n *plan.Namespace) *plan.Namespace {
	b, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var c plan.Namespace
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}
