//go:build linux

package leak_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/namespace"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// probeTimeout bounds every probe: a dropped packet means waiting this long.
const probeTimeout = 800 * time.Millisecond

func TestMain(m *testing.M) {
	// namespace.Up records confined units in the state dir; keep that on
	// the sandbox's tmpfs, never in the machine's /var/lib.
	if os.Getenv("VPNC_SANDBOX") == "1" {
		d, err := os.MkdirTemp("/run", "vpnc-leak-state-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		plan.StateDir = d
	}
	os.Exit(m.Run())
}

func testLog(t *testing.T) *journal.Logger {
	l, _ := testnet.Log(t)
	return l
}

// world is a confined namespace built by the real namespace.Up (firewall,
// host link, DNS files) with a tunnel to the test provider.
type world struct {
	tp  *testnet.Topology
	ns  *netns.NetNS
	dev *wireguard.Device
	log *journal.Logger
	// upNS and upWG are the measured bring-up times.
	upNS, upWG time.Duration
}

// bringUp builds the world; edit adjusts the plan first. withTunnel false
// stops after the namespace (for tests that run the helper binary).
func bringUp(t *testing.T, edit func(n *plan.Namespace), withTunnel bool) *world {
	t.Helper()
	tp := testnet.New(t)
	if edit != nil {
		edit(tp.Plan)
	}
	w := &world{tp: tp, log: testLog(t)}
	start := time.Now()
	if err := namespace.Up(tp.Plan, w.log); err != nil {
		t.Fatalf("namespace up: %v", err)
	}
	w.upNS = time.Since(start)
	t.Cleanup(func() {
		if err := namespace.Down(tp.Plan, w.log); err != nil {
			t.Errorf("namespace down: %v", err)
		}
	})
	ns, err := netns.Open(plan.NetnsPath(tp.Name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	w.ns = ns
	if !withTunnel {
		return w
	}
	start = time.Now()
	w.dev, err = wireguard.Create(context.Background(), tp.Plan, ns, w.log)
	if err != nil {
		t.Fatalf("tunnel up: %v", err)
	}
	w.upWG = time.Since(start)
	t.Cleanup(func() { w.dev.Close() })
	w.waitHandshake(t)
	return w
}

// waitHandshake pokes the tunnel (WireGuard handshakes on demand) and
// waits until the server has a session with us.
func (w *world) waitHandshake(t *testing.T) {
	t.Helper()
	ok := testnet.WaitFor(10*time.Second, func() bool {
		udpProbe(w.ns, "10.123.0.1:7")
		return !w.tp.ServerPeer().LastHandshakeTime.IsZero()
	})
	if !ok {
		t.Fatal("no handshake within 10s")
	}
}

// The probes below run on a thread inside ns (netns.Do), creating and
// using their socket there, so they see exactly what a confined service
// sees. None spawns goroutines inside Do: a goroutine started there would
// run on another thread, in the host namespace.

// udpProbe sends a datagram to addr and waits for the echo.
func udpProbe(ns *netns.NetNS, addr string) error {
	return ns.Do(func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		if _, err := c.Write([]byte("probe")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		_, err = c.Read(buf)
		return err
	})
}

// tcpProbe connects to a TCP echo at addr and returns its first line.
func tcpProbe(ns *netns.NetNS, addr string) (string, error) {
	var line string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, probeTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

// dnsProbe sends one A query for qname over proto to addr and waits for
// any answer.
func dnsProbe(ns *netns.NetNS, proto, addr, qname string) error {
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(qname, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	return ns.Do(func() error {
		c, err := net.DialTimeout(proto, addr, probeTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(probeTimeout))
		if proto == "tcp" {
			q = append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
		}
		if _, err := c.Write(q); err != nil {
			return err
		}
		off := 0
		if proto == "tcp" {
			off = 2 // length prefix
		}
		buf := make([]byte, 512)
		if _, err := io.ReadAtLeast(c, buf, off+12); err != nil {
			return err
		}
		if buf[off] != 0x12 || buf[off+1] != 0x34 || buf[off+2]&0x80 == 0 {
			return fmt.Errorf("not an answer to our query")
		}
		return nil
	})
}

// parallel runs probes concurrently (blocked ones each wait a timeout) and
// returns their errors in order.
func parallel(fs ...func() error) []error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f() }()
	}
	wg.Wait()
	return errs
}

// leakLink adds a veth straight from the confined namespace to the server
// namespace (10.77.0.1/30 ↔ 10.77.0.2/30): a path around the tunnel, as
// if an admin or a compromised service had plugged one in.
func (w *world) leakLink(t *testing.T) (nsIf, srvIf string) {
	t.Helper()
	nsIf, srvIf = "lk"+w.tp.Name[2:], "lks"+w.tp.Name[2:]
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nsIf, Namespace: netlink.NsFd(w.ns.Fd())},
		PeerName:      srvIf,
		PeerNamespace: netlink.NsFd(w.tp.ServerNS.Fd()),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add leak veth: %v", err)
	}
	for _, side := range []struct {
		ns   *netns.NetNS
		name string
		addr string
	}{{w.ns, nsIf, "10.77.0.1/30"}, {w.tp.ServerNS, srvIf, "10.77.0.2/30"}} {
		h, err := netlink.NewHandleAt(vnetns.NsHandle(side.ns.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(side.addr)
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	return nsIf, srvIf
}

// routeVia adds routes for dsts in the confined namespace through gw.
func (w *world) routeVia(t *testing.T, gw string, dsts ...string) {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(w.ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, d := range dsts {
		_, dst, err := net.ParseCIDR(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.RouteReplace(&netlink.Route{Dst: dst, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatalf("route %s via %s: %v", d, gw, err)
		}
	}
}

// echoesFrom returns the echo log entries whose client address is in p.
func (w *world) echoesFrom(p netip.Prefix) []testnet.Query {
	var out []testnet.Query
	for _, e := range w.tp.Echoes() {
		if ap, err := netip.ParseAddrPort(e.Client); err == nil && p.Contains(ap.Addr().Unmap()) {
			out = append(out, e)
		}
	}
	return out
}
