//go:build linux

package wireguard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
)

func testLog(t *testing.T) (*journal.Logger, *testnet.LogBuffer) { return testnet.Log(t) }

// waitHandshake sends a datagram into the tunnel (WireGuard handshakes
// only when it has something to send) and waits for the handshake.
func waitHandshake(t *testing.T, d *Device) Stats {
	t.Helper()
	d.target.Do(func() error {
		c, err := net.Dial("udp", "10.123.0.1:7")
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
		return err
	})
	var s Stats
	ok := testnet.WaitFor(10*time.Second, func() bool {
		var err error
		s, err = d.Stats()
		return err == nil && !s.LastHandshake.IsZero()
	})
	if !ok {
		t.Fatalf("no handshake within 10s (stats %+v)", s)
	}
	return s
}

// tcpEchoIn dials the server's TCP echo from a thread inside ns and returns
// the "peer ADDR" line the server saw.
func tcpEchoIn(ns *netns.NetNS, addr string) (string, error) {
	var line string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
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

func udpSocketPorts(t *testing.T, ns string) string {
	t.Helper()
	args := []string{"-H", "-uan"}
	var out []byte
	var err error
	if ns == "" {
		out, err = exec.Command("ss", args...).CombinedOutput()
	} else {
		var s string
		s, err = testnet.Exec(ns, append([]string{"ss"}, args...)...)
		out = []byte(s)
	}
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	return string(out)
}

// TestUserspaceTunnel brings the tunnel up in a bare namespace with the
// auto backend (no kernel module here) and sends real packets through it.
func TestUserspaceTunnel(t *testing.T) {
	tp := testnet.New(t)
	ns := tp.ConfinedNS()
	log, _ := testLog(t)
	tp.Plan.WireGuard.Backend = plan.BackendAuto
	start := time.Now()
	d, err := Create(context.Background(), tp.Plan, ns, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bring-up took %s", time.Since(start))
	defer d.Close()

	if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "wgprobe0"}}); err == nil {
		netlink.LinkDel(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "wgprobe0"}})
		t.Log("kernel WireGuard is available on this machine; the fallback is not exercised")
	} else if !isNotSupported(err) {
		t.Fatalf("probe kernel WireGuard: %v", err)
	} else if d.Backend() != plan.BackendUserspace {
		t.Fatalf("backend %q, want the userspace fallback", d.Backend())
	}

	s := waitHandshake(t, d)
	if out, err := testnet.Exec(tp.Name, "ping", "-c", "1", "-W", "2", "10.123.0.1"); err != nil {
		t.Errorf("ping through the tunnel: %v\n%s", err, out)
	}
	line, err := tcpEchoIn(ns, "10.123.0.1:7")
	if err != nil {
		t.Fatalf("TCP echo from inside the namespace: %v", err)
	}
	if !strings.HasPrefix(line, "peer 10.123.0.2:") {
		t.Errorf("server saw %q, want the tunnel address 10.123.0.2", line)
	}
	if out, err := testnet.Exec(tp.Name, "bash", "-c", "exec 3<>/dev/tcp/10.123.0.1/7; head -n1 <&3"); err != nil || !strings.HasPrefix(out, "peer 10.123.0.2:") {
		t.Errorf("TCP echo via ip netns exec: %v %q", err, out)
	}

	// The encrypted UDP socket lives in the birthplace (this sandbox's
	// namespace), never in the confined one.
	port := fmt.Sprintf(":%d ", s.ListenPort)
	if host := udpSocketPorts(t, ""); !strings.Contains(host, port) {
		t.Errorf("no UDP socket on %s in the birthplace:\n%s", port, host)
	}
	if inner := udpSocketPorts(t, tp.Name); strings.TrimSpace(inner) != "" {
		t.Errorf("UDP sockets inside the confined namespace:\n%s", inner)
	}
	if _, err := os.Stat(UAPISocket(tp.Plan.WireGuard.Interface)); err != nil {
		t.Errorf("UAPI socket: %v", err)
	}
	if out, err := exec.Command("wg", "show", tp.Plan.WireGuard.Interface, "latest-handshakes").CombinedOutput(); err != nil || strings.Contains(string(out), "\t0\n") {
		t.Errorf("wg show: %v %q", err, out)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, tp, ns)
	// Nothing leaves once the tunnel is gone: the routes went with the link.
	err = ns.Do(func() error {
		c, err := net.Dial("udp", "10.213.0.2:7")
		if err == nil {
			_, err = c.Write([]byte("leak"))
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Error("UDP send to the server's uplink succeeded after teardown")
	}
	if _, err := tcpEchoIn(ns, "10.123.0.1:7"); err == nil {
		t.Error("TCP echo through a closed tunnel succeeded")
	}
}

func assertGone(t *testing.T, tp *testnet.Topology, ns *netns.NetNS) {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	iface := tp.Plan.WireGuard.Interface
	if !testnet.WaitFor(2*time.Second, func() bool { _, err := h.LinkByName(iface); return err != nil }) {
		t.Errorf("link %s still in the namespace", iface)
	}
	if _, err := os.Stat(UAPISocket(iface)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UAPI socket left behind: %v", err)
	}
}

// TestKernelBackendFailsClosed: backend kernel on a host without the module
// is an error, not a silent userspace device, and leaves nothing behind.
func TestKernelBackendFailsClosed(t *testing.T) {
	tp := testnet.New(t)
	ns := tp.ConfinedNS()
	log, _ := testLog(t)
	tp.Plan.WireGuard.Backend = plan.BackendKernel
	d, err := Create(context.Background(), tp.Plan, ns, log)
	if err == nil {
		d.Close()
		t.Skip("kernel WireGuard is available here")
	}
	if !isNotSupported(err) {
		t.Errorf("err = %v, want operation not supported", err)
	}
	assertGone(t, tp, ns)
}

// TestCheckDetectsLinkLoss: deleting the link inside the namespace makes
// Check fail (the supervisor then brings the tunnel back); the userspace
// device notices its TUN is gone.
func TestCheckDetectsLinkLoss(t *testing.T) {
	tp := testnet.New(t)
	ns := tp.ConfinedNS()
	log, _ := testLog(t)
	d, err := Create(context.Background(), tp.Plan, ns, log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitHandshake(t, d)
	if err := d.Check(); err != nil {
		t.Fatalf("Check of a live tunnel: %v", err)
	}
	out, err := exec.Command("ip", "-n", tp.Name, "link", "del", tp.Plan.WireGuard.Interface).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link del: %v %s", err, out)
	}
	if !testnet.WaitFor(3*time.Second, func() bool { return d.Check() != nil }) {
		t.Fatal("Check did not notice the deleted link")
	}
	select {
	case <-d.Wait():
	case <-time.After(5 * time.Second):
		t.Error("the userspace device did not stop after its TUN was deleted")
	}
	d.Close()
	assertGone(t, tp, ns)
}

// refreshLoop re-resolves peer 0 as the supervisor does, until ctx ends.
func refreshLoop(ctx context.Context, d *Device, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.RefreshHostname(ctx, 0)
		}
	}
}

// TestEndpointRefresh: a hostname endpoint is re-resolved in the
// birthplace; when the answer changes the peer and the pin set follow, and
// the tunnel keeps working over the new provider address.
func TestEndpointRefresh(t *testing.T) {
	tp := testnet.New(t)
	tp.AddServerAddress(testnet.SrvUplink2)
	ns := tp.ConfinedNS()
	log, _ := testLog(t)
	first, second := netip.MustParseAddr("10.213.0.2"), netip.MustParseAddr("10.213.0.3")
	r := &switchResolver{addr: first}
	var pinMu sync.Mutex
	var pins [][]netip.AddrPort
	tp.Plan.WireGuard.Peers[0].Endpoint = &plan.Endpoint{Host: "vpn.test", Port: testnet.WGPort}
	tp.Plan.WireGuard.Peers[0].EndpointRefreshSeconds = 1
	tp.Plan.WireGuard.Peers[0].PersistentKeepalive = 1
	tp.Plan.WireGuard.Pinning = &plan.Pinning{FwMark: 0x1234, Table: "vpnc_pin_test"}
	d, err := CreateWithOptions(context.Background(), tp.Plan, ns, log, Options{
		Resolver: r,
		UpdatePins: func(table string, eps []netip.AddrPort) error {
			pinMu.Lock()
			defer pinMu.Unlock()
			pins = append(pins, eps)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go refreshLoop(ctx, d, time.Second)
	waitHandshake(t, d)
	if s, _ := d.Stats(); s.Endpoints[0] != netip.AddrPortFrom(first, testnet.WGPort) {
		t.Fatalf("endpoint %v, want %v", s.Endpoints[0], first)
	}

	r.set(second)
	want := netip.AddrPortFrom(second, testnet.WGPort)
	if !testnet.WaitFor(5*time.Second, func() bool { s, _ := d.Stats(); return s.Endpoints[0] == want }) {
		t.Fatalf("device endpoint did not move to %v", want)
	}
	pinMu.Lock()
	last := pins[len(pins)-1]
	pinMu.Unlock()
	if len(last) != 1 || last[0] != want {
		t.Errorf("pin set %v, want [%v]", last, want)
	}
	if _, err := tcpEchoIn(ns, "10.123.0.1:7"); err != nil {
		t.Errorf("tunnel after the endpoint moved: %v", err)
	}

	// A failing lookup keeps the endpoint (never unpins, never clears).
	r.fail()
	time.Sleep(2500 * time.Millisecond)
	if s, _ := d.Stats(); s.Endpoints[0] != want {
		t.Errorf("endpoint changed to %v after a failed lookup", s.Endpoints[0])
	}
	if r.lookups() < 3 {
		t.Errorf("only %d lookups", r.lookups())
	}
}

type switchResolver struct {
	mu    sync.Mutex
	addr  netip.Addr
	err   bool
	calls int
}

func (s *switchResolver) set(a netip.Addr) { s.mu.Lock(); s.addr, s.err = a, false; s.mu.Unlock() }
func (s *switchResolver) fail()            { s.mu.Lock(); s.err = true; s.mu.Unlock() }
func (s *switchResolver) lookups() int     { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

func (s *switchResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if host != "vpn.test" || s.err {
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	return []netip.Addr{s.addr}, nil
}
