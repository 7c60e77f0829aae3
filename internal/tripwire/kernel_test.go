//go:build linux

package tripwire_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
	tt "github.com/vpn-confinement/vpn-confinement/internal/tripwire/tripwiretest"
)

// Root tests: only inside test/sandbox.sh. Every test works in namespaces
// and cgroups it creates (removed at the end); the children that send and
// receive are started directly inside their cgroup and killed by PID.

func TestMain(m *testing.M) {
	tt.MaybeChild()
	os.Exit(m.Run())
}

func host(t *testing.T, ns *tt.NS, m tripwire.Mount) *tripwire.Host {
	return &tripwire.Host{NS: ns.NetNS, Lock: filepath.Join(t.TempDir(), "tripwire.lock"), Mount: m}
}

var (
	counterRe = regexp.MustCompile(`packets \d+ bytes \d+`)
	debugCtr  = regexp.MustCompile(`counter pkts \d+ bytes \d+`)
	// Rule headers of --debug=netlink: "inet vpnc_tripwire output 7 6"
	// (handle, position). Handles depend on how many transactions built the
	// table, not on what it holds.
	ruleHdr = regexp.MustCompile(`(?m)^(inet \S+ \S+)( \d+)+$`)
)

func listing(t *testing.T, n *tt.NS) string {
	t.Helper()
	return counterRe.ReplaceAllString(n.Nft(t, "list", "ruleset"), "packets 0 bytes 0")
}

// bytecode is the kernel's view as nft prints it with --debug=netlink:
// map elements (sorted: a hash set dumps in seed order) and every rule's
// expressions. It does not show the socket level; the listing does.
func bytecode(t *testing.T, n *tt.NS) string {
	t.Helper()
	out := n.Nft(t, "--debug=netlink", "list", "ruleset")
	out = debugCtr.ReplaceAllString(out, "counter pkts 0 bytes 0")
	out = ruleHdr.ReplaceAllString(out, "$1")
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], "\telement ") {
			j++
		}
		slices.Sort(lines[i:j])
		i = j + 1
	}
	return strings.Join(lines, "\n")
}

// nftDataUdata is the set userdata nft 1.0.6 appends after the key byte
// order for a map: NFTNL_UDATA_SET_DATABYTEORDER = 0 and
// NFTNL_UDATA_SET_DATA_INTERVAL = 0 (type, length, u32). Only nft reads
// set userdata, and a zero is what it assumes when they are absent (the
// listings compare equal); google/nftables v0.3.0 cannot send them, so the
// map comparison ignores exactly these bytes.
const nftDataUdata = "010400000000" + "060400000000"

// nftPath is a cgroup's path as nft -f takes cgroupsv2 values: relative
// to /sys/fs/cgroup (on a hybrid host it starts with "unified/").
func nftPath(t *testing.T, cg tripwire.Cgroup) string {
	p, ok := strings.CutPrefix(cg.Dir, "/sys/fs/cgroup/")
	if !ok {
		t.Skipf("cgroup %s is not below /sys/fs/cgroup, where nft resolves cgroupsv2 paths", cg.Dir)
	}
	return p
}

func loadNft(t *testing.T, n *tt.NS, text string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tripwire.nft")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Nft(t, "-f", path)
}

func compareWithNft(t *testing.T, goNS *tt.NS, text string) {
	t.Helper()
	cli := tt.NewNS(t, "tw-cli")
	loadNft(t, cli, text)
	if diff := cmp.Diff(listing(t, cli), listing(t, goNS)); diff != "" {
		t.Errorf("listing differs from nft -f (-nft +Go):\n%s", diff)
	}
	if diff := cmp.Diff(bytecode(t, cli), bytecode(t, goNS)); diff != "" {
		t.Errorf("bytecode differs from nft -f (-nft +Go):\n%s", diff)
	}
	nftSets := tt.SetAttrs(t, cli)
	for _, s := range nftSets {
		s["userdata"] = strings.TrimSuffix(s["userdata"], nftDataUdata)
	}
	if diff := cmp.Diff(nftSets, tt.SetAttrs(t, goNS)); diff != "" {
		t.Errorf("map attributes differ from nft -f (-nft +Go):\n%s", diff)
	}
}

// TestKernelMatchesNft: the table Ensure and Add load is, object for
// object, what nft -f loads from Render: listing, rule bytecode, and the
// map's netlink attributes (flags, key/data types and lengths, userdata).
func TestKernelMatchesNft(t *testing.T) {
	m := tt.Mount(t)
	goNS := tt.NewNS(t, "tw-go")
	h := host(t, goNS, m)
	if err := h.Ensure(); err != nil {
		t.Fatal(err)
	}
	golden := testutil.Testdata("tripwire", "empty.nft")
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	// The listing of the kernel's table is the rendered golden, byte for
	// byte (nft lists an empty map without elements line).
	if diff := cmp.Diff(string(want), listing(t, goNS)); diff != "" {
		t.Errorf("listing after Ensure differs from %s:\n%s", golden, diff)
	}
	compareWithNft(t, goNS, tripwire.Render(tripwire.State{}))

	a := tt.NewCgroup(t, m, "/", "vpnc-tw-a")
	b := tt.NewCgroup(t, m, "/", "vpnc-tw-b")
	nested := tt.NewCgroup(t, m, a.Path, "sub")
	for _, c := range []struct {
		ns string
		cg tripwire.Cgroup
	}{{"alpha", a}, {"alpha", nested}, {"beta.2", b}} {
		got, err := h.Add(c.ns, c.cg.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.cg {
			t.Errorf("Add resolved %+v, want %+v", got, c.cg)
		}
	}
	st := tripwire.State{Elements: []tripwire.Element{
		{ID: a.ID, Namespace: "alpha", Path: nftPath(t, a)},
		{ID: nested.ID, Namespace: "alpha", Path: nftPath(t, nested)},
		{ID: b.ID, Namespace: "beta.2", Path: nftPath(t, b)},
	}}
	compareWithNft(t, goNS, tripwire.Render(st))
	t.Logf("ruleset:\n%s", listing(t, goNS))
}

// TestTraffic: real packets from processes in real cgroups.
func TestTraffic(t *testing.T) {
	m := tt.Mount(t)
	ns := tt.NewNS(t, "tw-host")
	h := host(t, ns, m)
	unit := tt.NewCgroup(t, m, "/", "vpnc-tw-unit")
	nested := tt.NewCgroup(t, m, unit.Path, "delegated")
	other := tt.NewCgroup(t, m, "/", "vpnc-tw-other")

	sink := tt.Listen(t, nil, ns.Path, "127.0.0.1:0")
	sink6 := tt.Listen(t, nil, ns.Path, "[::1]:0")
	send := func(cg *tripwire.Cgroup, to string, wantDrop bool) {
		t.Helper()
		r := tt.Send(t, cg, ns.Path, to, 5)
		want := tt.Result{OK: 5}
		if wantDrop {
			want = tt.Result{EPERM: 5}
		}
		if r != want {
			who := "the test's cgroup"
			if cg != nil {
				who = cg.Path
			}
			t.Errorf("5 datagrams from %s to %s: %+v, want %+v", who, to, r, want)
		}
	}

	// Positive control: without the tripwire the unit's packets arrive.
	send(&unit, sink.Addr, false)
	if n := sink.Count(t); n != 5 {
		t.Fatalf("control: listener got %d of 5 datagrams", n)
	}
	sink = tt.Listen(t, nil, ns.Path, "127.0.0.1:0")

	for _, c := range []struct {
		ns string
		cg tripwire.Cgroup
	}{{"alpha", unit}, {"beta", other}} {
		if _, err := h.Add(c.ns, c.cg.Path); err != nil {
			t.Fatal(err)
		}
	}
	send(&unit, sink.Addr, true)
	send(&nested, sink.Addr, true) // a level deeper: matched through its ancestor
	send(&unit, sink6.Addr, true)  // inet: IPv6 too
	send(nil, sink.Addr, false)    // stands in for the tunnel helper
	send(&other, sink.Addr, true)
	send(&other, sink.Addr, true)

	// Input: the unit's socket receives; the sender is outside.
	in := tt.Listen(t, &unit, ns.Path, "127.0.0.1:0")
	sendFromTest(t, ns, in.Addr, 4)
	if n := in.Count(t); n != 0 {
		t.Errorf("unit's listener received %d datagrams through the tripwire", n)
	}
	checkCounters(t, h, map[string]uint64{"alpha": 15 + 4, "beta": 10})

	// Ensure is idempotent and keeps elements and counters; on an intact
	// table it writes nothing (the rule handles stay the same).
	before := ns.Nft(t, "-a", "list", "ruleset")
	for range 3 {
		if err := h.Ensure(); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(before, ns.Nft(t, "-a", "list", "ruleset")); diff != "" {
		t.Errorf("Ensure changed the table:\n%s", diff)
	}
	checkCounters(t, h, map[string]uint64{"alpha": 19, "beta": 10})

	// Remove: the unit's traffic passes again; the counter stays.
	if _, err := h.Remove("alpha", other.ID); err == nil {
		t.Error("Remove of another namespace's cgroup succeeded")
	}
	for i, want := range []bool{true, false} { // idempotent
		if removed, err := h.Remove("alpha", unit.ID); err != nil || removed != want {
			t.Fatalf("Remove #%d = %v, %v; want %v", i+1, removed, err, want)
		}
	}
	send(&unit, sink.Addr, false)
	send(&nested, sink.Addr, false)
	if n := sink.Count(t); n != 5+10 {
		t.Errorf("sink got %d datagrams, want 15 (tunnel stand-in + unit after Remove)", n)
	}
	if n := sink6.Count(t); n != 0 {
		t.Errorf("sink6 got %d datagrams through the tripwire", n)
	}
	checkCounters(t, h, map[string]uint64{"alpha": 19, "beta": 10})
	els, err := h.Elements()
	if err != nil {
		t.Fatal(err)
	}
	if want := []tripwire.Element{{ID: other.ID, Namespace: "beta"}}; !cmp.Equal(els, want) {
		t.Errorf("Elements = %+v, want %+v", els, want)
	}
}

func sendFromTest(t *testing.T, ns *tt.NS, to string, n int) {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp", to); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("from outside")); err != nil {
			t.Errorf("send from the test's cgroup: %v", err)
		}
	}
}

func checkCounters(t *testing.T, h *tripwire.Host, want map[string]uint64) {
	t.Helper()
	got, err := h.Counters()
	if err != nil {
		t.Fatal(err)
	}
	gotP := map[string]uint64{}
	for ns, c := range got {
		gotP[ns] = c.Packets
	}
	if diff := cmp.Diff(want, gotP); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// TestPrune: elements of cgroups that are gone are removed, live ones kept.
func TestPrune(t *testing.T) {
	m := tt.Mount(t)
	ns := tt.NewNS(t, "tw-prune")
	h := host(t, ns, m)
	live := tt.NewCgroup(t, m, "/", "vpnc-tw-live")
	gone := tt.NewCgroup(t, m, "/", "vpnc-tw-gone")
	for _, cg := range []tripwire.Cgroup{live, gone} {
		if _, err := h.Add("p", cg.Path); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(gone.Dir); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[uint64]bool{live.ID: true, gone.ID: false} {
		if ok, err := m.Exists(id); err != nil || ok != want {
			t.Errorf("Exists(%d) = %v, %v; want %v", id, ok, err, want)
		}
	}
	removed, err := h.Prune()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []uint64{gone.ID}) {
		t.Errorf("Prune removed %v, want [%d]", removed, gone.ID)
	}
	els, err := h.Elements()
	if err != nil {
		t.Fatal(err)
	}
	if want := []tripwire.Element{{ID: live.ID, Namespace: "p"}}; !cmp.Equal(els, want) {
		t.Errorf("Elements after Prune = %+v, want %+v", els, want)
	}
}

// TestConcurrentAdd: units of many namespaces start at once; every Add
// succeeds and the table holds each rule once (the lock serialises the
// check-then-create of Ensure and of the namespace chains).
func TestConcurrentAdd(t *testing.T) {
	m := tt.Mount(t)
	ns := tt.NewNS(t, "tw-conc")
	lock := filepath.Join(t.TempDir(), "tripwire.lock")
	const n = 12
	cgs := make([]tripwire.Cgroup, n)
	for i := range cgs {
		cgs[i] = tt.NewCgroup(t, m, "/", "vpnc-tw-c")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &tripwire.Host{NS: ns.NetNS, Lock: lock, Mount: m} // one Host per "process"
			if errs[i] = h.Ensure(); errs[i] == nil {
				_, errs[i] = h.Add(fmt.Sprintf("ns%d", i%4), cgs[i].Path)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent Ensure+Add: %v", n, time.Since(start))
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var st tripwire.State
	for i, cg := range cgs {
		st.Elements = append(st.Elements, tripwire.Element{ID: cg.ID, Namespace: fmt.Sprintf("ns%d", i%4)})
	}
	h := host(t, ns, m)
	els, err := h.Elements()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st.Normalize().Elements, els); diff != "" {
		t.Errorf("elements (-want +got):\n%s", diff)
	}
	out := listing(t, ns)
	for _, hook := range tripwire.Hooks {
		if got := strings.Count(out, "type filter hook "+hook+" "); got != 1 {
			t.Errorf("%d %s chains", got, hook)
		}
	}
	if got := strings.Count(out, tripwire.Rule(2)); got != 2 {
		t.Errorf("%q appears %d times, want 2:\n%s", tripwire.Rule(2), got, out)
	}
	if got := strings.Count(out, "counter packets 0 bytes 0 drop"); got != 4 {
		t.Errorf("%d namespace chains, want 4:\n%s", got, out)
	}
}

// TestEnsureRepairs: damaged base chains are restored; elements stay.
func TestEnsureRepairs(t *testing.T) {
	m := tt.Mount(t)
	ns := tt.NewNS(t, "tw-repair")
	h := host(t, ns, m)
	cg := tt.NewCgroup(t, m, "/", "vpnc-tw-r")
	if _, err := h.Add("r", cg.Path); err != nil {
		t.Fatal(err)
	}
	want := listing(t, ns)
	ns.Nft(t, "flush", "chain", "inet", tripwire.Table, "output")
	ns.Nft(t, "add", "rule", "inet", tripwire.Table, "input", "accept")
	ns.Nft(t, "flush", "chain", "inet", tripwire.Table, tripwire.ChainName("r"))
	if err := h.Ensure(); err != nil {
		t.Fatal(err)
	}
	// Ensure never touches namespace chains; Add repairs its own.
	if _, err := h.Add("r", cg.Path); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, listing(t, ns)); diff != "" {
		t.Errorf("after repair (-want +got):\n%s", diff)
	}
	ns.Nft(t, "delete", "chain", "inet", tripwire.Table, "input")
	ns.Nft(t, "add", "chain", "inet", tripwire.Table, "input", "{ type filter hook input priority 10; policy accept; }")
	if err := h.Ensure(); err != nil {
		t.Fatal(err)
	}
	// The recreated chain is listed last (chains list in creation order).
	if diff := cmp.Diff(blocks(want), blocks(listing(t, ns))); diff != "" {
		t.Errorf("after recreating the input chain (-want +got):\n%s", diff)
	}
}

// blocks splits a listing into its map and chain blocks, sorted.
func blocks(listing string) []string {
	b := strings.Split(strings.TrimSuffix(listing, "}\n"), "\n\n")
	for i := range b {
		b[i] = strings.TrimSpace(b[i])
	}
	slices.Sort(b)
	return b
}

// TestSupported: this kernel supports the tripwire; a host without
// cgroup2 is reported as unsupported with the reason.
func TestSupported(t *testing.T) {
	tt.Mount(t)
	ns := tt.NewNS(t, "tw-probe")
	h := &tripwire.Host{NS: ns.NetNS}
	start := time.Now()
	if err := h.Supported(); err != nil {
		t.Fatalf("Supported: %v", err)
	}
	t.Logf("Supported probe: %v", time.Since(start))
	if out := ns.Nft(t, "list", "ruleset"); out != "" {
		t.Errorf("probe left a table behind:\n%s", out)
	}
	fake := t.TempDir() // a "/proc/PID" whose mountinfo has no cgroup2
	os.WriteFile(filepath.Join(fake, "mountinfo"), []byte("27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"), 0o644)
	h = &tripwire.Host{NS: ns.NetNS, Proc: fake}
	err := h.Supported()
	if !tripwire.IsUnsupported(err) || !strings.Contains(err.Error(), "cgroup2") {
		t.Errorf("Supported without cgroup2 = %v, want an UnsupportedError naming cgroup2", err)
	}
}

// TestAddRefuses: cgroups that would drop the host's or the tunnel's
// traffic are never registered.
func TestAddRefuses(t *testing.T) {
	m := tt.Mount(t)
	ns := tt.NewNS(t, "tw-refuse")
	h := host(t, ns, m)
	for _, c := range []struct{ ns, path string }{
		{"a", "/"}, {"a", "/system.slice"}, {"a", "/vpnc-tw-missing-" + testnet.Suffix()}, {"bad name", "/x"}, {"", "/x"},
	} {
		if _, err := h.Add(c.ns, c.path); err == nil {
			t.Errorf("Add(%q, %q) succeeded", c.ns, c.path)
		}
	}
}
