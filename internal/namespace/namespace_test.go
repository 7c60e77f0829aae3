//go:build linux

package namespace

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/hostlink"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// testPlan is the reference's baseline test config (anchor §3.3): strict DNS,
// allowAllTunnel, IPv6 disabled, a host link with TCP 8080 from the host.
func testPlan(name string) *plan.Namespace {
	return &plan.Namespace{
		Version:         plan.Version,
		Name:            name,
		SecurityProfile: "default",
		DNS: plan.DNS{
			Mode:    plan.DNSStrict,
			Servers: []netip.Addr{netip.MustParseAddr("10.64.0.1")},
			Search:  []string{"example.net"},
		},
		Egress:  plan.Egress{Mode: plan.EgressAllowAllTunnel, AllowEssentialICMP: true},
		Ingress: plan.Ingress{FromHostTCP: []uint16{8080}},
		HostLink: &plan.HostLink{
			HostIf:   "vh-" + name,
			NsIf:     "vn-" + name,
			Subnet:   netip.MustParsePrefix("169.254.202.92/30"),
			HostAddr: netip.MustParseAddr("169.254.202.93"),
			NsAddr:   netip.MustParseAddr("169.254.202.94"),
		},
		WireGuard: plan.WireGuard{
			Interface: "wg0",
			Backend:   plan.BackendUserspace,
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.123.0.2/32")},
			Peers: []plan.Peer{{
				PublicKey:  "zCMaLUO3vFXqnFbhmL/IUYhG6QSTRE8NgmBkKFBX3zk=",
				Endpoint:   &plan.Endpoint{Host: "10.213.0.2", Port: 51820},
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			}},
		},
		Services: []plan.Unit{{Name: "qbittorrent.service"}, {Name: "prowlarr.service"}},
		Sockets:  []plan.Unit{{Name: "qbittorrent-web.socket"}},
	}
}

// setup gates on the sandbox and points the state dir at a temporary dir.
func setup(t *testing.T) *journal.Logger {
	t.Helper()
	testutil.RequireSandbox(t)
	old := plan.StateDir
	plan.StateDir = t.TempDir()
	t.Cleanup(func() { plan.StateDir = old; afterStep = nil })
	return journal.NewWriter(testWriter{t}, true)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func hostHandle(t *testing.T) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func nsHandle(t *testing.T, ns *netns.NetNS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func hasLink(t *testing.T, h *netlink.Handle, name string) bool {
	t.Helper()
	_, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatal(err)
	}
	return err == nil
}

// nsExec runs a command inside the pinned namespace the way an admin would.
func nsExec(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// assertGone checks that nothing of namespace n is left but the state record.
func assertGone(t *testing.T, n *plan.Namespace) {
	t.Helper()
	if exists(plan.NetnsPath(n.Name)) {
		t.Errorf("%s left behind", plan.NetnsPath(n.Name))
	}
	if exists(plan.RuntimePath(n.Name)) {
		t.Errorf("%s left behind", plan.RuntimePath(n.Name))
	}
	if hasLink(t, hostHandle(t), n.HostLink.HostIf) {
		t.Errorf("host link %s left behind", n.HostLink.HostIf)
	}
}

func TestUpDown(t *testing.T) {
	log := setup(t)
	n := testPlan("nstest1")
	if err := Up(n, log); err != nil {
		t.Fatal(err)
	}
	path := plan.NetnsPath(n.Name)
	if !netns.IsPinned(path) {
		t.Fatalf("%s is not a namespace pin", path)
	}
	ns, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h := nsHandle(t, ns)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is down")
	}
	if !hasLink(t, h, n.HostLink.NsIf) {
		t.Errorf("namespace side %s missing", n.HostLink.NsIf)
	}
	host, err := hostHandle(t).LinkByName(n.HostLink.HostIf)
	if err != nil {
		t.Fatalf("host side: %v", err)
	}
	as, err := hostHandle(t).AddrList(host, netlink.FAMILY_V4)
	if err != nil || len(as) != 1 || as[0].IPNet.String() != "169.254.202.93/30" {
		t.Errorf("host side addresses %v (%v), want 169.254.202.93/30", as, err)
	}
	if got := nsExec(t, n.Name, "ip", "-4", "-o", "addr", "show", "dev", n.HostLink.NsIf); !strings.Contains(got, "169.254.202.94/30") {
		t.Errorf("namespace side address: %s", got)
	}
	if got := nsExec(t, n.Name, "nft", "list", "tables"); !strings.Contains(got, "table inet vpn_confinement") {
		t.Errorf("nft list tables in the namespace:\n%s", got)
	}
	sysctls := nsExec(t, n.Name, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6",
		"/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if diff := cmp.Diff("1\n1\n0\n", sysctls); diff != "" {
		t.Errorf("sysctls disable_ipv6 all/default, ip_unprivileged_port_start (-want +got):\n%s", diff)
	}
	// The host's own setting is untouched.
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); string(b) == "0\n" {
		t.Error("ip_unprivileged_port_start changed outside the namespace")
	}
	for file, want := range map[string][]byte{"resolv.conf": resolvconf.ResolvConf(n.DNS), "nsswitch.conf": resolvconf.NSSwitch()} {
		got, err := os.ReadFile(plan.RuntimePath(n.Name) + "/" + file)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
	}
	record, err := os.ReadFile(RecordPath(n.Name))
	if diff := cmp.Diff("qbittorrent.service\nprowlarr.service\nqbittorrent-web.socket\n", string(record)); err != nil || diff != "" {
		t.Errorf("state record (%v) (-want +got):\n%s", err, diff)
	}

	if err := Down(n, log); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n)
	if hasLink(t, h, n.HostLink.NsIf) {
		t.Error("namespace side survived Down")
	}
	if !exists(RecordPath(n.Name)) {
		t.Error("Down removed the state record")
	}
	if err := Down(n, log); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestUpIPv6Tunnel(t *testing.T) {
	log := setup(t)
	n := testPlan("nstest6")
	n.IPv6 = true
	n.HostLink = nil
	if err := Up(n, log); err != nil {
		t.Fatal(err)
	}
	defer Down(n, log)
	if got := nsExec(t, n.Name, "cat", "/proc/sys/net/ipv6/conf/default/disable_ipv6"); got != "0\n" {
		t.Errorf("disable_ipv6 = %q with ipv6 mode tunnel", got)
	}
}

// A pin left by a crash is never adopted: Up builds a fresh namespace and
// leaves the old one (still referenced here, like a lingering process)
// untouched, firewall and links included.
func TestStalePin(t *testing.T) {
	var buf bytes.Buffer
	setup(t)
	log := journal.NewWriter(&buf, false)
	n := testPlan("nstest2")
	old, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "leak0"
	if err := nsHandle(t, old).LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	if err := firewall.Apply(old, firewall.Build(n)); err != nil {
		t.Fatal(err)
	}
	// The crashed run's host link, with its peer in the stale namespace.
	if err := hostlink.Up(old, n.Name, n.HostLink); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(plan.NetnsPath(n.Name)); err != nil {
		t.Fatal(err)
	}
	n.HostLink = nil // the new plan has none: the old link must go anyway
	if err := Up(n, log); err != nil {
		t.Fatal(err)
	}
	defer Down(n, log)
	if !strings.Contains(buf.String(), plan.NetnsPath(n.Name)) {
		t.Errorf("no warning naming the stale pin; log:\n%s", buf.String())
	}
	if got := nsExec(t, n.Name, "ip", "-o", "link", "show"); strings.Contains(got, "leak0") {
		t.Errorf("new namespace adopted the stale one:\n%s", got)
	}
	if !hasLink(t, nsHandle(t, old), "leak0") {
		t.Error("the stale namespace's links were touched")
	}
	// nsenter joins the stale namespace through the fd we still hold.
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "nft", "list", "tables")
	dup, err := unix.Dup(old.Fd())
	if err != nil {
		t.Fatal(err)
	}
	oldFile := os.NewFile(uintptr(dup), "old-netns")
	defer oldFile.Close()
	cmd.ExtraFiles = []*os.File{oldFile}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "table inet vpn_confinement") {
		t.Errorf("the stale namespace lost its firewall: %v\n%s", err, out)
	}
	if hasLink(t, hostHandle(t), "vh-nstest2") || hasLink(t, nsHandle(t, old), "vn-nstest2") {
		t.Error("the stale namespace kept its host link")
	}
}

func TestForeignHostIf(t *testing.T) {
	log := setup(t)
	n := testPlan("nstest3")
	host := hostHandle(t)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = n.HostLink.HostIf
	foreign := &netlink.Bridge{LinkAttrs: attrs} // dummy links are not available here
	if err := host.LinkAdd(foreign); err != nil {
		t.Fatal(err)
	}
	defer host.LinkDel(foreign)
	err := Up(n, log)
	if err == nil || !strings.HasPrefix(err.Error(), "create host link: ") || !strings.Contains(err.Error(), n.HostLink.HostIf) {
		t.Fatalf("Up over a foreign %s: %v", n.HostLink.HostIf, err)
	}
	if exists(plan.NetnsPath(n.Name)) || exists(plan.RuntimePath(n.Name)) {
		t.Error("failed Up left its pin or runtime dir")
	}
	if err := Down(n, log); err != nil {
		t.Errorf("Down: %v", err)
	}
	if !hasLink(t, host, n.HostLink.HostIf) {
		t.Fatal("the foreign link was deleted")
	}
}

func TestFaultInjection(t *testing.T) {
	log := setup(t)
	n := testPlan("nstest4")
	errInjected := errors.New("injected")
	for _, s := range upSteps {
		t.Run(s.name, func(t *testing.T) {
			afterStep = func(step string) error {
				if step == s.name {
					return errInjected
				}
				return nil
			}
			err := Up(n, log)
			if !errors.Is(err, errInjected) || !strings.HasPrefix(err.Error(), s.name+": ") {
				t.Fatalf("Up = %v, want the injected error after %q", err, s.name)
			}
			assertGone(t, n)
		})
	}
	afterStep = nil
	if err := Up(n, log); err != nil {
		t.Fatalf("Up after the failures: %v", err)
	}
	if err := Down(n, log); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n)
}

func TestInvalidName(t *testing.T) {
	for _, name := range []string{"", "..", "a/b", "-x", strings.Repeat("a", 65)} {
		n := testPlan("x")
		n.Name = name
		if err := Up(n, nil); err == nil {
			t.Errorf("Up(%q) succeeded", name)
		}
		if err := DownName(name, nil); err == nil {
			t.Errorf("DownName(%q) succeeded", name)
		}
	}
}

type resources struct {
	pins, links, fds, goroutines int
}

func count(t *testing.T) resources {
	t.Helper()
	entries, err := os.ReadDir(plan.NetnsDir)
	if err != nil {
		t.Fatal(err)
	}
	// Only this package's namespaces: other packages' root tests may run
	// in the same sandbox at the same time.
	var pins []os.DirEntry
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "nstest") {
			pins = append(pins, e)
		}
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	h.Close() // before counting fds
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return resources{len(pins), len(links), len(fds), runtime.NumGoroutine()}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestCycles brings the namespace up and down many times: nothing may
// accumulate (pins, links, fds, goroutines), and it reports what a cycle costs.
func TestCycles(t *testing.T) {
	setup(t)
	n := testPlan("nstest5")
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	// One warm-up cycle so lazily created runtime state is in the baseline.
	if err := Up(n, nil); err != nil {
		t.Fatal(err)
	}
	if err := Down(n, nil); err != nil {
		t.Fatal(err)
	}
	before := count(t)
	ups, downs := make([]time.Duration, cycles), make([]time.Duration, cycles)
	// Per-step cost, measured through the fault-injection hook.
	perStep := map[string][]time.Duration{}
	var last time.Time
	afterStep = func(step string) error {
		perStep[step] = append(perStep[step], time.Since(last))
		last = time.Now()
		return nil
	}
	for i := range cycles {
		start := time.Now()
		last = start
		if err := Up(n, nil); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		ups[i] = time.Since(start)
		start = time.Now()
		if err := Down(n, nil); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		downs[i] = time.Since(start)
	}
	afterStep = nil
	after := count(t)
	for _, s := range upSteps {
		if d := perStep[s.name]; len(d) > 0 {
			t.Logf("  up step %-22s median %v", s.name, median(d))
		}
	}
	t.Logf("%d cycles with host link: up median %v (min %v, max %v), down median %v (max %v)",
		cycles, median(ups), slices.Min(ups), slices.Max(ups), median(downs), slices.Max(downs))
	if after.pins != before.pins || after.links != before.links || after.fds != before.fds ||
		after.goroutines > before.goroutines+2 {
		t.Errorf("resources before %+v, after %+v", before, after)
	}
}
