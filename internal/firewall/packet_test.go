//go:build linux

package firewall

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Real-packet smoke test of the namespace table. The full-stack leak and
// DNS tests belong to the end-to-end suites; this one only shows that the
// loaded table acts on packets: two namespaces joined by two veth pairs,
// one named as the table's tunnel interface, the other a "leak" path.
//
//	client ns  wgfake0 10.213.60.1/30 ── veth ── 10.213.60.2/30 wgpeer0  peer ns
//	           leak0   10.213.61.1/30 ── veth ── 10.213.61.2/30 leakpeer0

func handle(t *testing.T, ns *netns.NetNS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func setUp(t *testing.T, h *netlink.Handle, name, addr string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" {
		a, err := netlink.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("addr %s on %s: %v", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// up gives ns a link name with address addr (a veth whose peer name+"p"
// stays in ns, so nothing answers: sends succeed unless the firewall drops
// them) and brings lo up. The test kernel may lack the dummy module.
func up(t *testing.T, ns *netns.NetNS, name, addr string) {
	t.Helper()
	h := handle(t, ns)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	setUp(t, h, "lo", "")
	setUp(t, h, name+"p", "")
	setUp(t, h, name, addr)
}

// veth joins a (name, addrA) and b (peer, addrB).
func veth(t *testing.T, a, b *netns.NetNS, name, addrA, peer, addrB string) {
	t.Helper()
	ha, hb := handle(t, a), handle(t, b)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer,
		PeerNamespace: netlink.NsFd(b.Fd())}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	setUp(t, ha, name, addrA)
	setUp(t, hb, peer, addrB)
}

// udpSend sends one datagram from a socket created in ns, with SO_MARK
// mark (0: none).
func udpSend(ns *netns.NetNS, mark uint32, dst string) error {
	return ns.Do(func() error {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if mark != 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
				}
			})
			return errors.Join(err, serr)
		}}
		c, err := d.Dial("udp", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("probe"))
		return err
	})
}

// sendUDP sends and checks the verdict: a drop in the output hook makes
// sendmsg fail with EPERM.
func sendUDP(t *testing.T, ns *netns.NetNS, mark uint32, dst string, wantDrop bool) {
	t.Helper()
	err := udpSend(ns, mark, dst)
	if dropped := errors.Is(err, syscall.EPERM); dropped != wantDrop || (err != nil && !dropped) {
		t.Errorf("UDP to %s (mark %#x): err %v, want dropped=%v", dst, mark, err, wantDrop)
	}
}

// listenUDP opens a UDP socket in ns bound to addr.
func listenUDP(t *testing.T, ns *netns.NetNS, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// received reports whether pc gets a datagram within d.
func received(pc net.PacketConn, d time.Duration) bool {
	pc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	_, _, err := pc.ReadFrom(buf)
	return err == nil
}

func TestPacketSmoke(t *testing.T) {
	client, peer := newNS(t, "client"), newNS(t, "peer")
	veth(t, client.ns, peer.ns, "wgfake0", "10.213.60.1/30", "wgpeer0", "10.213.60.2/30")
	veth(t, client.ns, peer.ns, "leak0", "10.213.61.1/30", "leakpeer0", "10.213.61.2/30")
	setUp(t, handle(t, client.ns), "lo", "")
	setUp(t, handle(t, peer.ns), "lo", "")

	n := &plan.Namespace{
		Version:   plan.Version,
		Name:      "smoke",
		DNS:       plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.213.60.3")}},
		Egress:    plan.Egress{Mode: plan.EgressAllowList, AllowedUDPPorts: []uint16{53, 9999}},
		WireGuard: plan.WireGuard{Interface: "wgfake0"},
	}
	if err := Apply(client.ns, Build(n)); err != nil {
		t.Fatal(err)
	}

	viaWG := listenUDP(t, peer.ns, "10.213.60.2:9999")
	viaLeak := listenUDP(t, peer.ns, "10.213.61.2:9999")
	dnsPeer := listenUDP(t, peer.ns, "10.213.60.2:53")
	inbound := listenUDP(t, client.ns, "0.0.0.0:7777")

	// Allowed port over the "tunnel" interface: delivered.
	sendUDP(t, client.ns, 0, "10.213.60.2:9999", false)
	if !received(viaWG, 2*time.Second) {
		t.Error("UDP to an allowed port via the tunnel interface was not delivered")
	}
	// Same port over the leak interface: dropped, counted.
	sendUDP(t, client.ns, 0, "10.213.61.2:9999", true)
	// Port not allowed via the tunnel: dropped, counted.
	sendUDP(t, client.ns, 0, "10.213.60.2:9998", true)
	// DNS to a resolver that is not configured: dropped by the strict DNS
	// block even though 53 is in the egress allowlist (not counted: only
	// the final drop is).
	sendUDP(t, client.ns, 0, "10.213.60.2:53", true)
	// Inbound to the client without a tunnel ingress port: dropped.
	if err := udpSend(peer.ns, 0, "10.213.60.1:7777"); err != nil {
		t.Fatalf("peer send: %v", err)
	}
	if received(inbound, 500*time.Millisecond) {
		t.Error("inbound UDP reached the confined namespace")
	}
	if received(viaLeak, 300*time.Millisecond) || received(dnsPeer, 300*time.Millisecond) {
		t.Error("a dropped datagram was delivered")
	}

	got, err := Counters(client.ns, TableName)
	if err != nil {
		t.Fatal(err)
	}
	if got["output drop"].Packets != 2 || got["input drop"].Packets != 1 {
		t.Errorf("counters = %v, want output drop 2, input drop 1", got)
	}
	t.Logf("counters: %v", got)
}
