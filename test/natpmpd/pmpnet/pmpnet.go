//go:build linux

// Package pmpnet builds a ProtonVPN-shaped network for root tests of NAT-PMP
// code (see Topology) and starts things inside its namespaces.
package pmpnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
)

// Topology is a ProtonVPN-shaped test network for root tests: a gateway
// namespace holding 10.2.0.1/24 (Proton's gateway address) and 10.2.0.3/24
// (a second address, for wrong-source replies), a client namespace holding
// 10.2.0.2/24, and a veth between them. Both namespaces are made by the
// test, unpinned, inside test/sandbox.sh; they die with the test.
type Topology struct {
	GW, Client             *netns.NetNS
	GWAddr, Stray, Address netip.Addr
	GWIf, ClientIf         string
}

var topologies atomic.Int32

// NewTopology builds the topology or skips t outside the sandbox.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	testutil.RequireSandbox(t)
	tp := &Topology{
		GW: NewNS(t), Client: NewNS(t),
		GWAddr:  netip.MustParseAddr("10.2.0.1"),
		Stray:   netip.MustParseAddr("10.2.0.3"),
		Address: netip.MustParseAddr("10.2.0.2"),
	}
	name := fmt.Sprintf("pmp%d-%d", os.Getpid()%100000, topologies.Add(1))
	tp.GWIf, tp.ClientIf = name+"g", name+"c"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tp.ClientIf}, PeerName: tp.GWIf, PeerNamespace: netlink.NsFd(tp.GW.Fd())}
	if err := Handle(t, tp.Client).LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	LinkUp(t, tp.Client, tp.ClientIf, "10.2.0.2/24")
	LinkUp(t, tp.GW, tp.GWIf, "10.2.0.1/24", "10.2.0.3/24")
	return tp
}

// NewNS makes an unpinned namespace with lo up.
func NewNS(t testing.TB) *netns.NetNS {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	LinkUp(t, ns, "lo")
	return ns
}

// Handle is a netlink handle in ns, closed with the test.
func Handle(t testing.TB, ns *netns.NetNS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// LinkUp adds the addresses (CIDR strings) to ifname in ns and sets it up.
func LinkUp(t testing.TB, ns *netns.NetNS, ifname string, addrs ...string) {
	t.Helper()
	h := Handle(t, ns)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// StartIn starts a responder whose sockets live in ns.
func StartIn(t testing.TB, ns *netns.NetNS, cfg natpmpd.Config) *natpmpd.Server {
	t.Helper()
	var s *natpmpd.Server
	err := ns.Do(func() error {
		var err error
		s, err = natpmpd.Start(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Command prepares cmd to start in ns: a child forked from a thread inside
// ns is born there. Call the returned func instead of cmd.Start.
func Command(ns *netns.NetNS, cmd *exec.Cmd) func() error {
	return func() error { return ns.Do(cmd.Start) }
}

// ListenIn returns a natpmp.Client.ListenPacket-shaped func opening the
// socket in ns through listen (natpmp.Listen, a parameter so that the
// test network does not depend on the client under test).
func ListenIn(ns *netns.NetNS, listen func(ctx context.Context, local netip.Addr) (net.PacketConn, error)) func(ctx context.Context) (net.PacketConn, error) {
	return func(ctx context.Context) (pc net.PacketConn, err error) {
		err = ns.Do(func() error {
			pc, err = listen(ctx, netip.Addr{})
			return err
		})
		return pc, err
	}
}
