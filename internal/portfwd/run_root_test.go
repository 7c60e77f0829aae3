//go:build linux

package portfwd_test

// Root tests of vpn-confinement-portfwd run (internal/portfwd.Run): the
// real helper binary, started inside a client namespace that holds the
// real firewall table (firewall.Build of the test plan), against
// test/natpmpd in a gateway namespace across a veth that plays the
// tunnel (its client end carries the plan's tunnel interface name, so the
// firewall's "iifname wg" rules and the helper's tunnel watch apply to
// it). Everything lives in namespaces made here inside test/sandbox.sh.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd/pmpnet"
)

var helperBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || os.Getenv("VPNC_SANDBOX") != "1" {
			return m.Run() // the tests skip themselves
		}
		dir, err := os.MkdirTemp("", "vpnc-pf-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		helperBin = filepath.Join(dir, "vpn-confinement-portfwd")
		cmd := exec.Command("go", "build", "-o", helperBin, "./helpers/portfwd")
		cmd.Dir = testutil.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build the helper: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

const gwPort = 38534

// rig is one client namespace with the firewall, a gateway namespace with
// the responder, and (once started) the helper.
type rig struct {
	t    *testing.T
	tp   *pmpnet.Topology
	srv  *natpmpd.Server
	n    *plan.Namespace
	plan string

	cmd    *exec.Cmd
	exited chan error
	log    lockedBuffer

	notifyMu sync.Mutex
	notify   []string

	setMu sync.Mutex
	sets  [][]uint16 // distinct consecutive states of the forwarded-port set
}

var rigs sync.Mutex
var rigN int

func newRig(t *testing.T, cfg natpmpd.Config) *rig {
	t.Helper()
	tp := pmpnet.NewTopology(t)
	cfg.Listen = tp.GWAddr.String() + ":5351"
	cfg.Stray = tp.Stray.String() + ":5351"
	r := &rig{t: t, tp: tp, srv: pmpnet.StartIn(t, tp.GW, cfg)}
	rigs.Lock()
	rigN++
	name := fmt.Sprintf("pfrun%d-%d", os.Getpid()%100000, rigN)
	rigs.Unlock()
	// allowList with nothing allowed: the lease's own exception (udp 5351
	// to the gateway) is the only way out, as the firewall promises.
	r.n = &plan.Namespace{
		Version: plan.Version, Name: name, SecurityProfile: "default",
		DNS:       plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{tp.GWAddr}},
		Egress:    plan.Egress{Mode: plan.EgressAllowList},
		WireGuard: plan.WireGuard{Interface: tp.ClientIf, Addresses: []netip.Prefix{netip.PrefixFrom(tp.Address, 32)}},
		PortForwarding: &plan.PortForwarding{
			Protocol: plan.PortForwardNATPMP, Gateway: tp.GWAddr,
		},
	}
	if err := firewall.Apply(tp.Client, firewall.Build(r.n)); err != nil {
		t.Fatal(err)
	}
	b, err := r.n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r.plan = filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(r.plan, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(plan.RuntimePath(name), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(plan.RuntimePath(name))
		os.RemoveAll(plan.PrivatePath(name))
		os.Remove(portfwd.MetricsPath(name))
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.watchSet(ctx)
	return r
}

// watchSet records every distinct state of the forwarded-port set, read
// from the kernel as fast as it answers, so a moment with both ports or
// with none between two ports would be seen.
func (r *rig) watchSet(ctx context.Context) {
	for ctx.Err() == nil {
		ports, err := firewall.Ports(r.tp.Client, firewall.TableName, firewall.SetForwarded)
		if err != nil {
			continue
		}
		if ports == nil {
			ports = []uint16{}
		}
		r.setMu.Lock()
		if len(r.sets) == 0 || !slices.Equal(r.sets[len(r.sets)-1], ports) {
			r.sets = append(r.sets, ports)
		}
		r.setMu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) setHistory() [][]uint16 {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	return slices.Clone(r.sets)
}

// history checks the states the set went through, once the watcher has
// seen the last one.
func (r *rig) history(want ...[]uint16) {
	r.t.Helper()
	last := want[len(want)-1]
	r.waitFor(fmt.Sprintf("the set watcher to see %v", last), 10*time.Second, func() bool {
		h := r.setHistory()
		return len(h) > 0 && slices.Equal(h[len(h)-1], last)
	})
	if h := r.setHistory(); !slices.EqualFunc(h, want, func(a, b []uint16) bool { return slices.Equal(a, b) }) {
		r.t.Errorf("forwarded_ports went through %v, want %v", h, want)
	}
}

// start runs the helper in the client namespace.
func (r *rig) start() {
	t := r.t
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			r.notifyMu.Lock()
			r.notify = append(r.notify, strings.Split(strings.TrimSpace(string(buf[:n])), "\n")...)
			r.notifyMu.Unlock()
		}
	}()
	r.log.Reset()
	r.cmd = exec.Command(helperBin, "-plan", r.plan, "-v", "run", r.n.Name)
	r.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	r.cmd.Stdout, r.cmd.Stderr = &r.log, &r.log
	if err := pmpnet.Command(r.tp.Client, r.cmd)(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan error, 1)
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() { r.stop() })
	r.waitFor("READY=1", 30*time.Second, func() bool { return r.notified("READY=1") })
}

// stop sends SIGTERM and waits for the helper; it reports the exit.
func (r *rig) stop() error {
	if r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	select {
	case err := <-r.exited:
		r.exited <- err
		return err
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.exited:
		r.exited <- err
		return err
	case <-time.After(60 * time.Second):
		r.cmd.Process.Kill()
		return errors.New("the helper did not stop within 60 s of SIGTERM")
	}
}

func (r *rig) notified(s string) bool {
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	return slices.ContainsFunc(r.notify, func(l string) bool { return strings.Contains(l, s) })
}

func (r *rig) ports() []uint16 {
	ports, err := firewall.Ports(r.tp.Client, firewall.TableName, firewall.SetForwarded)
	if err != nil {
		r.t.Fatal(err)
	}
	return ports
}

func (r *rig) waitFor(what string, d time.Duration, ok func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			r.t.Fatalf("waited %v for %s; helper log:\n%s", d, what, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) waitPorts(d time.Duration, want ...uint16) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("forwarded_ports = %v", want), d, func() bool {
		got := r.ports()
		return len(got) == len(want) && (len(want) == 0 || slices.Equal(got, want))
	})
}

// files checks the port file, the env file, the state file and the
// metrics. The firewall changes first; the state file is written last.
func (r *rig) files(port uint16) {
	r.t.Helper()
	name := r.n.Name
	r.waitFor(fmt.Sprintf("state file with port %d", port), 10*time.Second, func() bool {
		st, err := portfwd.LoadState(name)
		return err == nil && st.Port == port
	})
	b, err := os.ReadFile(portfwd.PortFile(name))
	switch {
	case port == 0 && !errors.Is(err, os.ErrNotExist):
		r.t.Errorf("port file after the loss: %q, %v (want none)", b, err)
	case port != 0 && string(b) != fmt.Sprintf("%d\n", port):
		r.t.Errorf("port file %q, %v; want %d", b, err, port)
	}
	want := "VPN_FORWARDED_PORT=\n"
	if port != 0 {
		want = fmt.Sprintf("VPN_FORWARDED_PORT=%d\n", port)
	}
	if b, err := os.ReadFile(portfwd.EnvFile(name)); string(b) != want {
		r.t.Errorf("env file %q, %v; want %q", b, err, want)
	}
	m, err := os.ReadFile(portfwd.MetricsPath(name))
	if line := fmt.Sprintf("vpnc_forwarded_port{namespace=%q,protocol=\"natpmp\"} %d\n", name, port); !bytes.Contains(m, []byte(line)) {
		r.t.Errorf("metrics file lacks %q: %v\n%s", line, err, m)
	}
}

// nftList is `nft list set` inside the client namespace: the kernel's
// view through another encoder than ours.
func (r *rig) nftList() string {
	var out []byte
	var err error
	r.tp.Client.Do(func() error {
		out, err = exec.Command("nft", "list", "set", "inet", firewall.TableName, firewall.SetForwarded).CombinedOutput()
		return nil
	})
	if err != nil {
		r.t.Fatalf("nft list set: %v\n%s", err, out)
	}
	return string(out)
}

func (r *rig) inputDrops() uint64 {
	c, err := firewall.Counters(r.tp.Client, firewall.TableName)
	if err != nil {
		r.t.Fatal(err)
	}
	return c["input drop"].Packets
}

// listen opens TCP listeners on ports in the client namespace.
func (r *rig) listen(ports ...uint16) {
	for _, p := range ports {
		var ln net.Listener
		err := r.tp.Client.Do(func() error {
			var err error
			ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
			return err
		})
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

// dial connects from the gateway side, across the "tunnel".
func (r *rig) dial(port uint16) error {
	var d net.Conn
	err := r.tp.GW.Do(func() error {
		var err error
		d, err = net.DialTimeout("tcp4", netip.AddrPortFrom(r.tp.Address, port).String(), time.Second)
		return err
	})
	if err == nil {
		d.Close()
	}
	return err
}

func TestRunLeaseChangeLoss(t *testing.T) {
	testutil.RequireSandbox(t)
	t.Parallel()
	r := newRig(t, natpmpd.Config{Port: gwPort, MaxLifetime: 4})
	r.srv.ChangePortAt(2, 40000) // the first renewal hands out another port
	r.listen(gwPort, gwPort+1, 40000)
	r.start()

	r.waitPorts(30*time.Second, gwPort)
	if out := r.nftList(); !strings.Contains(out, fmt.Sprintf("elements = { %d }", gwPort)) {
		t.Errorf("nft list set:\n%s", out)
	}
	r.files(gwPort)
	r.waitFor("STATUS=forwarded port", 10*time.Second, func() bool { return r.notified(fmt.Sprintf("STATUS=forwarded port %d", gwPort)) })

	// Inbound: the leased port reaches a listener through the tunnel
	// interface; the next port, where a listener waits too, is dropped
	// and counted.
	if err := r.dial(gwPort); err != nil {
		t.Errorf("connection to the forwarded port: %v", err)
	}
	drops := r.inputDrops()
	if err := r.dial(gwPort + 1); err == nil {
		t.Errorf("connection to port %d (not forwarded) succeeded", gwPort+1)
	}
	if got := r.inputDrops(); got <= drops {
		t.Errorf("input drop counter %d → %d: the refused connection was not dropped by the kill switch", drops, got)
	}

	// The port changes on the first renewal (3 s into a 4 s lease).
	r.waitPorts(30*time.Second, 40000)
	r.files(40000)
	if err := r.dial(40000); err != nil {
		t.Errorf("connection to the new port: %v", err)
	}
	if err := r.dial(gwPort); err == nil {
		t.Errorf("connection to the old port %d succeeded after the change", gwPort)
	}
	if !strings.Contains(r.log.String(), fmt.Sprintf("changed the port from %d to 40000", gwPort)) {
		t.Errorf("no change line in the log:\n%s", r.log.String())
	}
	// Replaced in one transaction: never both, never neither in between.
	r.history([]uint16{}, []uint16{gwPort}, []uint16{40000})

	// Loss: the gateway goes silent; the lease runs out and the port
	// closes.
	r.srv.SetMode(natpmpd.Silent)
	r.waitPorts(30 * time.Second)
	r.files(0)
	if l := r.log.String(); !strings.Contains(l, "port 40000 closed: lease of port 40000 expired") {
		t.Errorf("no loss line in the log:\n%s", l)
	}
	if err := r.dial(40000); err == nil {
		t.Errorf("connection to port 40000 succeeded after the loss")
	}
	// It comes back when the gateway answers again.
	r.srv.SetMode(natpmpd.Normal)
	r.waitPorts(90*time.Second, 40000)
	r.files(40000)
	r.history([]uint16{}, []uint16{gwPort}, []uint16{40000}, []uint16{}, []uint16{40000})

	// SIGTERM: closed before the helper exits.
	if err := r.stop(); err != nil {
		t.Errorf("helper exit after SIGTERM: %v\n%s", err, r.log.String())
	}
	if got := r.ports(); len(got) != 0 {
		t.Errorf("forwarded_ports after SIGTERM: %v", got)
	}
	r.files(0)
}

// TestRunTunnelLink: the lease lives as long as the tunnel's link; when it
// is deleted the port closes at once, and comes back with the link.
func TestRunTunnelLink(t *testing.T) {
	testutil.RequireSandbox(t)
	t.Parallel()
	r := newRig(t, natpmpd.Config{Port: gwPort})
	r.start()
	r.waitPorts(30*time.Second, gwPort)

	h := pmpnet.Handle(t, r.tp.Client)
	l, err := h.LinkByName(r.tp.ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	r.waitPorts(10 * time.Second)
	r.files(0)
	if s := r.log.String(); !strings.Contains(s, "tunnel "+r.tp.ClientIf+" is gone") || !strings.Contains(s, fmt.Sprintf("port %d closed: tunnel %s is gone", gwPort, r.tp.ClientIf)) {
		t.Errorf("log does not say the tunnel went:\n%s", s)
	}
	// The helper waits; nothing is leased without the link.
	if got := r.ports(); len(got) != 0 {
		t.Errorf("forwarded_ports without a tunnel: %v", got)
	}

	addLink := func() {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: r.tp.ClientIf}, PeerName: r.tp.GWIf, PeerNamespace: netlink.NsFd(r.tp.GW.Fd())}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		pmpnet.LinkUp(t, r.tp.Client, r.tp.ClientIf, r.tp.Address.String()+"/24")
		pmpnet.LinkUp(t, r.tp.GW, r.tp.GWIf, r.tp.GWAddr.String()+"/24", r.tp.Stray.String()+"/24")
	}
	addLink()
	r.waitPorts(90*time.Second, gwPort)
	r.files(gwPort)

	// Recreated between two polls, as the tunnel helper does it: a new
	// link, so a new lease all the same.
	l, err = h.LinkByName(r.tp.ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	addLink()
	r.waitFor("a second close", 10*time.Second, func() bool {
		return strings.Count(r.log.String(), fmt.Sprintf("port %d closed: tunnel %s", gwPort, r.tp.ClientIf)) == 2
	})
	r.waitPorts(90*time.Second, gwPort)
	r.files(gwPort)

	if err := r.stop(); err != nil {
		t.Errorf("helper exit after SIGTERM: %v", err)
	}
	r.waitPorts(time.Second)
	r.files(0)
	// ExecStopPost's down verb, after the helper: idempotent.
	down := exec.Command(helperBin, "-plan", r.plan, "down", r.n.Name)
	var out []byte
	r.tp.Client.Do(func() error { out, err = down.CombinedOutput(); return nil })
	if err != nil {
		t.Errorf("down: %v\n%s", err, out)
	}
	r.files(0)
	r.history([]uint16{}, []uint16{gwPort}, []uint16{}, []uint16{gwPort}, []uint16{}, []uint16{gwPort}, []uint16{})
}

// TestRunHostileReplies: a malformed or hostile NAT-PMP answer is refused
// with a log line and opens nothing; once the gateway behaves, the port
// opens (so it was the reply that kept it closed).
func TestRunHostileReplies(t *testing.T) {
	testutil.RequireSandbox(t)
	t.Parallel()
	for _, c := range []struct {
		fault natpmpd.Fault
		log   string
	}{
		{natpmpd.WrongOpcode, "malformed NAT-PMP reply: opcode 130, want 129"},
		{natpmpd.WrongVersion, "malformed NAT-PMP reply: version 2, want 0"},
		{natpmpd.Truncated, "malformed NAT-PMP reply: 12 bytes, want 16"},
		{natpmpd.Oversized, "malformed NAT-PMP reply: 20 bytes, want 16"},
		{natpmpd.ZeroPort, "malformed NAT-PMP reply: external port 0 with lifetime 60 s"},
		{natpmpd.HugeLifetime, "malformed NAT-PMP reply: granted lifetime 4294967295 s"},
		{natpmpd.Refuse, "gateway refused udp request: result 2 (not authorized/refused)"},
		// The stray reply never reaches the helper: the kill switch drops
		// it (not a reply to anything the namespace sent), and the helper
		// reports silence after its call timeout.
		{natpmpd.WrongSource, "no NAT-PMP reply from 10.2.0.1:5351 after"},
	} {
		t.Run(c.fault.String(), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, natpmpd.Config{Port: gwPort})
			r.srv.SetMode(c.fault)
			drops := r.inputDrops()
			r.start()
			r.waitFor("the log line "+c.log, 90*time.Second, func() bool { return strings.Contains(r.log.String(), c.log) })
			if got := r.ports(); len(got) != 0 {
				t.Errorf("forwarded_ports after a %s reply: %v", c.fault, got)
			}
			if _, err := os.Stat(portfwd.PortFile(r.n.Name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("port file after a %s reply: %v", c.fault, err)
			}
			if c.fault == natpmpd.WrongSource {
				if got := r.inputDrops(); got <= drops {
					t.Errorf("input drop counter %d → %d: the stray reply was not dropped", drops, got)
				}
			}
			r.srv.SetMode(natpmpd.Normal)
			r.waitPorts(90*time.Second, gwPort)
			r.history([]uint16{}, []uint16{gwPort})
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for the helper's output and the
// test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
