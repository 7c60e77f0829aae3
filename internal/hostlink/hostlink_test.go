//go:build linux

package hostlink

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

func testLink(hostIf, nsIf string) *plan.HostLink {
	return &plan.HostLink{
		HostIf:   hostIf,
		NsIf:     nsIf,
		Subnet:   netip.MustParsePrefix("169.254.202.92/30"),
		HostAddr: netip.MustParseAddr("169.254.202.93"),
		NsAddr:   netip.MustParseAddr("169.254.202.94"),
	}
}

func newNS(t *testing.T) *netns.NetNS {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func handle(t *testing.T, ns *netns.NetNS) *netlink.Handle {
	t.Helper()
	var h *netlink.Handle
	var err error
	if ns == nil {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func link(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		if notFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	return l
}

// addrs returns the addresses of l, IPv6 included.
func addrs(t *testing.T, h *netlink.Handle, l netlink.Link) []string {
	t.Helper()
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

// addForeign creates a link that is not ours: a bridge (dummy links are not
// available on the test kernel) or a veth whose peer is in the host namespace.
func addForeign(t *testing.T, h *netlink.Handle, kind, name, alias string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	var d netlink.Link = &netlink.Bridge{LinkAttrs: attrs}
	if kind == "veth" {
		v := netlink.NewVeth(attrs)
		v.PeerName = name + "p"
		d = v
	}
	if err := h.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	if alias != "" {
		if err := h.LinkSetAlias(d, alias); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { h.LinkDel(d) })
}

func TestUpDown(t *testing.T) {
	testutil.RequireSandbox(t)
	ns := newNS(t)
	hl := testLink("vh-hl0", "vn-hl0")
	if err := Up(ns, "hltest", hl); err != nil {
		t.Fatal(err)
	}
	host, inside := handle(t, nil), handle(t, ns)

	hostSide := link(t, host, "vh-hl0")
	if hostSide == nil {
		t.Fatal("host side missing")
	}
	if !Owned(hostSide, "hltest") || Owned(hostSide, "hltest-other") {
		t.Errorf("host side alias %q, type %s", hostSide.Attrs().Alias, hostSide.Type())
	}
	if hostSide.Attrs().Flags&net.FlagUp == 0 {
		t.Error("host side not up")
	}
	// No IPv6 (not even link-local) on either side.
	if diff := cmp.Diff([]string{"169.254.202.93/30"}, addrs(t, host, hostSide)); diff != "" {
		t.Errorf("host side addresses (-want +got):\n%s", diff)
	}
	nsSide := link(t, inside, "vn-hl0")
	if nsSide == nil {
		t.Fatal("namespace side missing")
	}
	if nsSide.Attrs().Flags&net.FlagUp == 0 {
		t.Error("namespace side not up")
	}
	if diff := cmp.Diff([]string{"169.254.202.94/30"}, addrs(t, inside, nsSide)); diff != "" {
		t.Errorf("namespace side addresses (-want +got):\n%s", diff)
	}
	if link(t, host, "vn-hl0") != nil {
		t.Error("peer also exists in the host namespace")
	}

	if err := Down("hltest", hl); err != nil {
		t.Fatal(err)
	}
	if link(t, host, "vh-hl0") != nil || link(t, inside, "vn-hl0") != nil {
		t.Error("Down left a side of the pair")
	}
	if err := Down("hltest", hl); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestUpReplacesOurs(t *testing.T) {
	testutil.RequireSandbox(t)
	old, fresh := newNS(t), newNS(t)
	hl := testLink("vh-hl1", "vn-hl1")
	if err := Up(old, "hltest", hl); err != nil {
		t.Fatal(err)
	}
	// A stale pair of ours under another host name (hostIf was renamed).
	if err := Up(newNS(t), "hltest", testLink("vh-hl1old", "vn-hl1old")); err != nil {
		t.Fatal(err)
	}
	if err := Up(fresh, "hltest", hl); err != nil {
		t.Fatalf("Up over our own link: %v", err)
	}
	host := handle(t, nil)
	if link(t, handle(t, old), "vn-hl1") != nil {
		t.Error("old namespace still has its peer")
	}
	if link(t, handle(t, fresh), "vn-hl1") == nil {
		t.Error("new namespace has no peer")
	}
	if link(t, host, "vh-hl1old") != nil {
		t.Error("renamed stale link of ours survived Up")
	}
	if err := Down("hltest", hl); err != nil {
		t.Fatal(err)
	}
	if link(t, host, "vh-hl1") != nil {
		t.Error("Down left the host side")
	}
}

func TestForeign(t *testing.T) {
	testutil.RequireSandbox(t)
	host := handle(t, nil)
	for _, tc := range []struct{ name, kind, ifname, alias string }{
		{"untagged veth", "veth", "vh-hl2", ""},
		{"bridge", "bridge", "vh-hl6", ""},
		{"bridge with our alias", "bridge", "vh-hl3", Alias("hltest")}, // not a veth: not ours
		{"veth of another namespace", "", "vh-hl4", Alias("hltest-other")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.alias == Alias("hltest-other") {
				if err := Up(newNS(t), "hltest-other", testLink(tc.ifname, "vn-hlother")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { Down("hltest-other", nil) })
			} else {
				addForeign(t, host, tc.kind, tc.ifname, tc.alias)
			}
			ns := newNS(t)
			hl := testLink(tc.ifname, "vn-hl2")
			err := Up(ns, "hltest", hl)
			if err == nil || !strings.Contains(err.Error(), tc.ifname) || !strings.Contains(err.Error(), "not ours") {
				t.Fatalf("Up over a foreign %s: %v, want an error naming it", tc.ifname, err)
			}
			if link(t, handle(t, ns), "vn-hl2") != nil {
				t.Error("failed Up left a peer in the namespace")
			}
			if err := Down("hltest", hl); err != nil {
				t.Errorf("Down with a foreign link: %v", err)
			}
			if err := Down("hltest", nil); err != nil {
				t.Errorf("Down without plan: %v", err)
			}
			if link(t, host, tc.ifname) == nil {
				t.Errorf("foreign %s was deleted", tc.ifname)
			}
		})
	}
}

func TestPeerNameTaken(t *testing.T) {
	testutil.RequireSandbox(t)
	ns := newNS(t)
	addForeign(t, handle(t, ns), "bridge", "vn-hl7", "")
	err := Up(ns, "hltest", testLink("vh-hl7", "vn-hl7"))
	if err == nil || !strings.Contains(err.Error(), "vn-hl7") {
		t.Fatalf("Up with NsIf taken in the namespace: %v, want an error naming it", err)
	}
	if link(t, handle(t, nil), "vh-hl7") != nil {
		t.Error("failed Up left the host side")
	}
}

func TestDownWithoutPlan(t *testing.T) {
	testutil.RequireSandbox(t)
	ns := newNS(t)
	if err := Up(ns, "hltest", testLink("vh-hl5", "vn-hl5")); err != nil {
		t.Fatal(err)
	}
	if err := Down("hltest", nil); err != nil {
		t.Fatal(err)
	}
	if link(t, handle(t, nil), "vh-hl5") != nil {
		t.Error("Down by alias left the link")
	}
}

func TestUpRejectsBadLink(t *testing.T) {
	bad := []*plan.HostLink{
		nil,
		testLink("", "vn-x"),
		testLink("vh-this-is-too-long", "vn-x"),
		{HostIf: "vh-x", NsIf: "vn-x", Subnet: netip.MustParsePrefix("169.254.0.4/30"),
			HostAddr: netip.MustParseAddr("169.254.0.9"), NsAddr: netip.MustParseAddr("169.254.0.6")},
	}
	for _, hl := range bad {
		if err := check(hl); err == nil {
			t.Errorf("check(%+v) = nil", hl)
		}
	}
	if err := check(testLink("vh-x", "vn-x")); err != nil {
		t.Error(err)
	}
}
