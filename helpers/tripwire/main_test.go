//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
	tt "github.com/vpn-confinement/vpn-confinement/internal/tripwire/tripwiretest"
)

// Root tests of the binary as systemd runs it: inside the unit's cgroup
// (started there by clone3) and inside a network namespace that is not the
// host's (nsenter), with the default -host-netns /proc/1/ns/net: in the
// sandbox that is the sandbox's own namespace, which plays the host.

func TestMain(m *testing.M) {
	tt.MaybeChild()
	os.Exit(m.Run())
}

const hostNS = "/proc/1/ns/net" // what -host-netns defaults to

type fixture struct {
	t            *testing.T
	bin          string
	conf         *tt.NS // the confinement namespace the hooks run in
	lock, marker string
}

func newFixture(t *testing.T) *fixture {
	tt.Mount(t)
	testnet.Lock(t) // the table goes into the sandbox's host namespace
	f := &fixture{t: t, bin: testnet.Binary(t, "vpn-confinement-tripwire", "./helpers/tripwire"),
		conf: tt.NewNS(t, "tw-conf"), lock: filepath.Join(t.TempDir(), "tripwire.lock"),
		marker: filepath.Join(t.TempDir(), "run", "tripwire.unsupported")}
	t.Cleanup(func() {
		if err := firewall.DeleteTable(nil, tripwire.Table); err != nil {
			t.Errorf("delete the test's table: %v", err)
		}
	})
	return f
}

// run runs the helper in cgroup cg (nil: the test's) inside the
// confinement namespace and returns its exit code, stdout and stderr.
func (f *fixture) run(cg *tripwire.Cgroup, args ...string) (int, string, string) {
	f.t.Helper()
	full := append([]string{"--net=" + f.conf.Path, f.bin, "-lock", f.lock, "-marker", f.marker}, args...)
	cmd := tt.Command(f.t, cg, "nsenter", full...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	f.t.Fatal(err)
	return 0, "", ""
}

func (f *fixture) ok(cg *tripwire.Cgroup, args ...string) (string, string) {
	f.t.Helper()
	code, out, errs := f.run(cg, args...)
	if code != 0 {
		f.t.Fatalf("%v: exit %d\n%s", args, code, errs)
	}
	return out, errs
}

func (f *fixture) status() tripwire.Status {
	f.t.Helper()
	out, _ := f.ok(nil, "status")
	var st tripwire.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("status output %q: %v", out, err)
	}
	return st
}

func nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestHooks: add, traffic, status, remove, as ExecStartPre=+/ExecStopPost=+
// would run them.
func TestHooks(t *testing.T) {
	f := newFixture(t)
	m := tt.Mount(t)
	unit := tt.NewCgroup(t, m, "/", "vpnc-tw-unit")
	sink := tt.Listen(t, nil, hostNS, "127.0.0.1:0")

	if _, errs := f.ok(&unit, "add", "vpn1"); !strings.Contains(errs, unit.Path) {
		t.Errorf("add logged %q, want the unit's cgroup %s", errs, unit.Path)
	}
	// The table is in the host namespace, not in the one the hook ran in.
	nft(t, "list", "table", "inet", tripwire.Table)
	if out := f.conf.Nft(t, "list", "ruleset"); out != "" {
		t.Errorf("the hook wrote into its own namespace:\n%s", out)
	}

	if r := tt.Send(t, &unit, hostNS, sink.Addr, 3); r != (tt.Result{EPERM: 3}) {
		t.Errorf("unit's datagrams in the host namespace: %+v, want 3 dropped", r)
	}
	if r := tt.Send(t, nil, hostNS, sink.Addr, 2); r != (tt.Result{OK: 2}) {
		t.Errorf("datagrams from outside the unit: %+v, want 2 sent", r)
	}
	st := f.status()
	want := tripwire.Status{Supported: true, Table: true, Escapes: 3, Namespaces: map[string]tripwire.NamespaceStatus{
		"vpn1": {Packets: 3, Bytes: st.Namespaces["vpn1"].Bytes, Cgroups: []uint64{unit.ID}}}}
	if diff := cmp.Diff(want, st); diff != "" || st.Namespaces["vpn1"].Bytes == 0 {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	// A delegated unit's hooks run in its .control subgroup; the unit is
	// what gets registered.
	deleg := tt.NewCgroup(t, m, "/", "vpnc-tw-deleg")
	control := tripwire.Cgroup{Path: deleg.Path + "/.control", Dir: deleg.Dir + "/.control"}
	if err := os.Mkdir(control.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(control.Dir) }) // runs before deleg's cleanup
	f.ok(&control, "add", "vpn2")
	if got := f.status().Namespaces["vpn2"].Cgroups; !slices.Equal(got, []uint64{deleg.ID}) {
		t.Errorf("vpn2 cgroups = %v, want the unit %d", got, deleg.ID)
	}

	// ensure on an intact table changes nothing (same rule handles).
	before := nft(t, "-a", "list", "table", "inet", tripwire.Table)
	f.ok(nil, "ensure")
	if diff := cmp.Diff(before, nft(t, "-a", "list", "table", "inet", tripwire.Table)); diff != "" {
		t.Errorf("ensure changed the table:\n%s", diff)
	}

	for range 2 { // idempotent
		f.ok(&unit, "remove", "vpn1")
	}
	f.ok(&control, "remove", "vpn2")
	if r := tt.Send(t, &unit, hostNS, sink.Addr, 2); r != (tt.Result{OK: 2}) {
		t.Errorf("after remove: %+v, want 2 sent", r)
	}
	if n := sink.Count(t); n != 4 {
		t.Errorf("sink got %d datagrams, want 4", n)
	}
	st = f.status()
	if v := st.Namespaces["vpn1"]; v.Packets != 3 || len(v.Cgroups) != 0 || len(st.Namespaces["vpn2"].Cgroups) != 0 {
		t.Errorf("after remove: status %+v, want vpn1's 3 packets kept and no cgroups", st)
	}
}

// TestAddFails: with support, a refused or failed add fails the start.
func TestAddFails(t *testing.T) {
	f := newFixture(t)
	m := tt.Mount(t)
	slice := tripwire.Cgroup{Path: "/vpnc-tw-" + testnet.Suffix() + ".slice"}
	slice.Dir, _ = m.DirOf(slice.Path)
	if err := os.Mkdir(slice.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(slice.Dir) })
	if code, _, errs := f.run(&slice, "add", "vpn1"); code != 1 || !strings.Contains(errs, "slice") {
		t.Errorf("add from a slice: exit %d, %q; want 1 and a refusal", code, errs)
	}
	unit := tt.NewCgroup(t, m, "/", "vpnc-tw-unit")
	if code, _, errs := f.run(&unit, "add", "bad/name"); code != 1 {
		t.Errorf("add with an invalid name: exit %d, %q; want 1", code, errs)
	}
	if code, _, _ := f.run(&unit, "frobnicate"); code != 2 {
		t.Errorf("unknown verb: exit %d, want 2", code)
	}
	if _, err := os.Stat(f.marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failure on a supported host wrote the unsupported marker: %v", err)
	}
}

// TestUnsupported: without cgroup2, add warns, records why, and succeeds;
// a later supported add clears the record.
func TestUnsupported(t *testing.T) {
	f := newFixture(t)
	m := tt.Mount(t)
	unit := tt.NewCgroup(t, m, "/", "vpnc-tw-unit")
	v1 := t.TempDir() // a "/proc/PID" whose mountinfo has no cgroup2
	if err := os.WriteFile(filepath.Join(v1, "mountinfo"), []byte("27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs := f.ok(&unit, "-proc", v1, "add", "vpn1")
	if !strings.Contains(errs, "not available") {
		t.Errorf("add without cgroup2 logged %q, want a warning", errs)
	}
	b, err := os.ReadFile(f.marker)
	if err != nil || !strings.Contains(string(b), "cgroup2") {
		t.Errorf("marker: %q, %v; want the reason", b, err)
	}
	f.ok(&unit, "-proc", v1, "remove", "vpn1") // nothing to remove
	f.ok(&unit, "add", "vpn1")
	if _, err := os.Stat(f.marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker left after a supported add: %v", err)
	}
	f.ok(&unit, "remove", "vpn1")
}

// TestHookInOtherMountNS: a hook whose mount namespace has a fresh /sys
// (here `ip netns exec`, which mounts one; a cgroup2 mount is not in it)
// still reaches the host's cgroups through PID 1 and registers.
func TestHookInOtherMountNS(t *testing.T) {
	f := newFixture(t)
	m := tt.Mount(t)
	unit := tt.NewCgroup(t, m, "/", "vpnc-tw-unit")
	cmd := tt.Command(t, &unit, "ip", "netns", "exec", f.conf.Name, f.bin, "-lock", f.lock, "-marker", f.marker, "add", "vpn1")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "not available") {
		t.Fatalf("add under ip netns exec: %v\n%s", err, out)
	}
	if got := f.status().Namespaces["vpn1"].Cgroups; !slices.Equal(got, []uint64{unit.ID}) {
		t.Errorf("vpn1 cgroups = %v, want %d", got, unit.ID)
	}
}
