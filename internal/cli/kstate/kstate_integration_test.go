//go:build linux

package kstate

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// scratchNS is a throwaway namespace with lo up and a veth pair
// dummy0/dummy1 (this kernel has no dummy links), dummy0 10.9.0.1/24,
// closed (and so destroyed) at the end of the test.
func scratchNS(t *testing.T) *netns.NetNS {
	t.Helper()
	testutil.RequireSandbox(t)
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, _ := h.LinkByName("lo")
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}, PeerName: "dummy1"}
	if err := h.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	l, _ := h.LinkByName("dummy0")
	ip := &net.IPNet{IP: net.IPv4(10, 9, 0, 1), Mask: net.CIDRMask(24, 32)}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ip}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetAlias(l, "test-alias"); err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestLinksAndRoutes(t *testing.T) {
	ns := scratchNS(t)
	links, err := Links(ns)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Link{}
	for _, l := range links {
		byName[l.Name] = l
	}
	lo, d := byName["lo"], byName["dummy0"]
	if lo.Kind != "loopback" || !lo.Up {
		t.Errorf("lo: %+v", lo)
	}
	if d.Kind != "veth" || !d.Up || d.Alias != "test-alias" || len(d.Addrs) != 1 || d.Addrs[0] != netip.MustParsePrefix("10.9.0.1/24") {
		t.Errorf("dummy0: %+v", d)
	}
	routes, err := Routes(ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].String() != "10.9.0.0/24 dev dummy0" {
		t.Errorf("routes: %v", routes)
	}
	r, err := RouteTo(ns, netip.MustParseAddr("10.9.0.7"))
	if err != nil || r.Dev != "dummy0" {
		t.Errorf("route to 10.9.0.7: %v %v", r, err)
	}
	if _, err := RouteTo(ns, netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("route to an unreachable address")
	}
}

// TestReadTable loads a small kill-switch-like table and reads it back,
// including drops counted by an anonymous counter, a named counter and
// the fall-through counter of a policy-drop chain.
func TestReadTable(t *testing.T) {
	ns := scratchNS(t)
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if fw, err := ReadTable(ns, nftables.TableFamilyINet, "vpn_confinement"); err != nil || fw != nil {
		t.Fatalf("absent table: %v %v", fw, err)
	}
	tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "vpn_confinement"})
	drop := nftables.ChainPolicyDrop
	out := c.AddChain(&nftables.Chain{Name: "output", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	in := c.AddChain(&nftables.Chain{Name: "input", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	c.AddObj(&nftables.CounterObj{Table: tb, Name: "dropped_dns"})
	oif := func(name string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
		}
	}
	udp := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
	}
	c.AddRule(&nftables.Rule{Table: tb, Chain: out, Exprs: append(oif("lo"), &expr.Verdict{Kind: expr.VerdictAccept})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: out, Exprs: append(append([]expr.Any{}, udp...), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: out, Exprs: []expr.Any{&expr.Objref{Type: 1, Name: "dropped_dns"}, &expr.Verdict{Kind: expr.VerdictDrop}}})
	c.AddRule(&nftables.Rule{Table: tb, Chain: in, Exprs: []expr.Any{&expr.Counter{}}})
	set := &nftables.Set{Table: tb, Name: "allowed4", KeyType: nftables.TypeIPAddr, Interval: true}
	if err := c.AddSet(set, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Two UDP packets (dropped by the counted rule) and one TCP SYN
	// (dropped by the named counter's rule).
	err = ns.Do(func() error {
		for i := 0; i < 2; i++ {
			if c, err := net.Dial("udp", "10.9.0.2:9"); err == nil {
				c.Write([]byte("x"))
				c.Close()
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 9, 0, 2}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := ReadTable(ns, nftables.TableFamilyINet, "vpn_confinement")
	if err != nil || fw == nil {
		t.Fatalf("read: %v %v", fw, err)
	}
	if fw.Rules != 4 || fw.Sets != 1 || len(fw.Chains) != 2 {
		t.Errorf("got %d rules, %d sets, %d chains", fw.Rules, fw.Sets, len(fw.Chains))
	}
	if fw.Chains[1].Name != "output" || fw.Chains[1].Hook != "output" || fw.Chains[1].Policy != "drop" {
		t.Errorf("chain: %+v", fw.Chains[1])
	}
	if fw.DropPackets != 3 || fw.DropBytes == 0 {
		t.Errorf("dropped %d packets (%d bytes), want 3", fw.DropPackets, fw.DropBytes)
	}
	if len(fw.Counters) != 1 || fw.Counters[0].Name != "dropped_dns" || fw.Counters[0].Packets != 1 {
		t.Errorf("named counters: %+v", fw.Counters)
	}
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// TestReadWireGuard reads the userspace (wireguard-go) peer of the test
// topology: type, port, peer, and nothing secret.
func TestReadWireGuard(t *testing.T) {
	tp := testnet.New(t)
	w, err := ReadWireGuard(tp.ServerNS, tp.ServerIf)
	if err != nil || w == nil {
		t.Fatalf("read: %v %v", w, err)
	}
	if w.Type != "userspace" || w.ListenPort != int(testnet.WGPort) || w.PublicKey != tp.ServerKey.PublicKey().String() {
		t.Errorf("device: %+v", w)
	}
	if len(w.Peers) != 1 || w.Peers[0].PublicKey != tp.ClientKey.PublicKey().String() || !w.Peers[0].LastHandshake.IsZero() {
		t.Errorf("peers: %+v", w.Peers)
	}
	links, err := Links(tp.ServerNS)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range links {
		if l.Name == tp.ServerIf {
			found = l.Kind == "tun"
		}
	}
	if !found {
		t.Errorf("wireguard-go device must show as a tun link: %+v", links)
	}
	none, err := ReadWireGuard(tp.ServerNS, "nope0")
	if err != nil || none != nil {
		t.Errorf("missing device: %v %v", none, err)
	}
}
