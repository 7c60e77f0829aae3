//go:build linux

package wireguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
)

// TestInterruptedUp injects a failure after every step of the bring-up:
// each failed Create removes what it made, down is idempotent on whatever
// is left, and the next Create works.
func TestInterruptedUp(t *testing.T) {
	tp := testnet.New(t)
	ns := tp.ConfinedNS()
	log, _ := testLog(t)
	tp.Plan.WireGuard.Pinning = &plan.Pinning{FwMark: 0x4242, Table: "vpnc_pin_t"}
	opts := Options{UpdatePins: func(string, []netip.AddrPort) error { return nil }}
	steps := []string{"keys", "resolve", "pin", "netlink", "link", "configure", "device-up", "addresses", "link-up", "routes"}
	for _, step := range steps {
		o := opts
		o.failAt = step
		d, err := CreateWithOptions(context.Background(), tp.Plan, ns, log, o)
		if err == nil || !strings.Contains(err.Error(), "injected failure after step "+step) {
			if d != nil {
				d.Close()
			}
			t.Fatalf("step %s: err = %v", step, err)
		}
		assertGone(t, tp, ns)
		for i := 0; i < 2; i++ {
			if err := Down(tp.Plan, log); err != nil {
				t.Fatalf("down after failed step %s: %v", step, err)
			}
		}
	}
	d, err := CreateWithOptions(context.Background(), tp.Plan, ns, log, opts)
	if err != nil {
		t.Fatalf("up after the interrupted ones: %v", err)
	}
	waitHandshake(t, d)
	d.Close()
	assertGone(t, tp, ns)
}

// TestDown covers what down removes and what it must never touch.
func TestDown(t *testing.T) {
	tp := testnet.New(t)
	log, _ := testLog(t)
	iface := tp.Plan.WireGuard.Interface

	// Nothing there at all (namespace never created): success.
	if err := Down(tp.Plan, log); err != nil {
		t.Fatalf("down with no namespace: %v", err)
	}

	ns := tp.ConfinedNS()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// A live tunnel: down deletes its link (the running helper then exits).
	d, err := Create(context.Background(), tp.Plan, ns, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := Down(tp.Plan, log); err != nil {
		t.Fatal(err)
	}
	if !testnet.WaitFor(5*time.Second, func() bool { return d.Check() != nil }) {
		t.Fatal("the link is still there after down")
	}
	d.Close()
	assertGone(t, tp, ns)

	// A stale UAPI socket (a crashed device) is removed.
	stale := UAPISocket(iface)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := Down(tp.Plan, log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket not removed: %v", err)
	}

	// A live socket of the same name (another device) is left alone.
	l, err = net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Down(tp.Plan, log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("live socket removed: %v", err)
	}
	l.Close()

	// A link of another kind with the tunnel's name is never deleted.
	// (veth: this kernel has no dummy module)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: iface}, PeerName: "vp" + tp.Name}); err != nil {
		t.Fatal(err)
	}
	if err := Down(tp.Plan, log); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName(iface); err != nil {
		t.Errorf("down deleted a veth: %v", err)
	}
	// ... and it blocks a new tunnel instead of being adopted.
	if d, err := Create(context.Background(), tp.Plan, ns, log); err == nil {
		d.Close()
		t.Error("Create adopted a foreign link")
	}
	if _, err := h.LinkByName(iface); err != nil {
		t.Errorf("failed Create deleted the foreign link: %v", err)
	}
}
