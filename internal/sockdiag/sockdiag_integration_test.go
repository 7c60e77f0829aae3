//go:build linux

package sockdiag

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// TestTCPInNamespace: sockets are read in the namespace asked for, never
// in the caller's (the trap of a netlink handle without the family).
func TestTCPInNamespace(t *testing.T) {
	testutil.RequireSandbox(t)
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := h.LinkByName("lo")
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	h.Close()
	var ln net.Listener
	var client, server net.Conn
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:47001"); err != nil {
			return err
		}
		client, err = net.Dial("tcp4", "127.0.0.1:47001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer client.Close()
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	l := netip.MustParseAddrPort("127.0.0.1:47001")
	inside, err := TCP(ns)
	if err != nil {
		t.Fatal(err)
	}
	ls := Listeners(inside, l)
	if len(ls) != 1 || Accepted(inside, l) != 1 {
		t.Fatalf("inside the namespace: %d listeners, %d accepted; want 1, 1 (%v)", len(ls), Accepted(inside, l), inside)
	}
	own, err := TCP(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(Listeners(own, l)) != 0 {
		t.Errorf("the caller's namespace shows the other namespace's listener")
	}
	hs := Holders("/proc", []uint32{ls[0].Inode})[ls[0].Inode]
	if len(hs) != 1 || hs[0].PID != os.Getpid() {
		t.Errorf("holders of the listener: %v, want this process (%d)", hs, os.Getpid())
	}
}
