//go:build linux

package main

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

var bin string // the helper, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vpnc-netns-test-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "vpn-confinement-netns")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("build helper: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper runs the binary and returns its exit code and output.
func helper(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		return ee.ExitCode(), string(out)
	}
	return 0, string(out)
}

func writePlan(t *testing.T, name string) string {
	t.Helper()
	n := &plan.Namespace{
		Version: plan.Version,
		Name:    name,
		DNS:     plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.64.0.1")}},
		Egress:  plan.Egress{Mode: plan.EgressAllowAllTunnel, AllowEssentialICMP: true},
		HostLink: &plan.HostLink{
			HostIf: "vh-" + name, NsIf: "vn-" + name,
			Subnet:   netip.MustParsePrefix("169.254.84.148/30"),
			HostAddr: netip.MustParseAddr("169.254.84.149"),
			NsAddr:   netip.MustParseAddr("169.254.84.150"),
		},
		WireGuard: plan.WireGuard{
			Interface: "wg0", Backend: plan.BackendUserspace,
			Addresses: []netip.Prefix{netip.MustParsePrefix("10.123.0.2/32")},
			Peers: []plan.Peer{{
				PublicKey:  "zCMaLUO3vFXqnFbhmL/IUYhG6QSTRE8NgmBkKFBX3zk=",
				Endpoint:   &plan.Endpoint{Host: "10.213.0.2", Port: 51820},
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			}},
		},
		Services: []plan.Unit{{Name: "nshelper1.service"}},
	}
	b, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func oneErrorLine(t *testing.T, out, want string) {
	t.Helper()
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, want) {
		t.Errorf("output %q: want one line containing %q", out, want)
	}
}

// Failures before anything is touched; these need no root.
func TestRejects(t *testing.T) {
	p := writePlan(t, "nshelper1")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"up"}, 2, "usage"},
		{[]string{"start", "nshelper1"}, 2, "usage"},
		{[]string{"up", "../etc"}, 1, `invalid namespace name "../etc"`},
		{[]string{"-plan", p, "up", "other"}, 1, `is for namespace "nshelper1", not "other"`},
		{[]string{"-plan", filepath.Join(t.TempDir(), "missing.json"), "up", "nshelper1"}, 1, "read plan"},
	} {
		code, out := helper(t, tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d; output:\n%s", tc.args, code, tc.code, out)
		}
		if tc.code == 1 {
			oneErrorLine(t, out, tc.want)
		} else if !strings.Contains(out, tc.want) {
			t.Errorf("%v: output %q, want %q", tc.args, out, tc.want)
		}
	}
}

func TestUpDown(t *testing.T) {
	testutil.RequireSandbox(t)
	p, state := writePlan(t, "nshelper1"), t.TempDir()
	pin := plan.NetnsPath("nshelper1")
	if code, out := helper(t, "-plan", p, "-state-dir", state, "up", "nshelper1"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	if !netns.IsPinned(pin) {
		t.Fatalf("%s not pinned after up", pin)
	}
	if b, err := os.ReadFile(filepath.Join(state, "nshelper1.units")); err != nil || string(b) != "nshelper1.service\n" {
		t.Errorf("state record %q (%v)", b, err)
	}
	for range 2 { // down is idempotent
		if code, out := helper(t, "-plan", p, "-state-dir", state, "down", "nshelper1"); code != 0 {
			t.Fatalf("down: exit %d\n%s", code, out)
		}
	}
	if _, err := os.Lstat(pin); err == nil {
		t.Errorf("%s left after down", pin)
	}
	if _, err := os.Lstat(plan.RuntimePath("nshelper1")); err == nil {
		t.Errorf("%s left after down", plan.RuntimePath("nshelper1"))
	}
}

// The namespace was removed from the configuration (daemon-reload deleted
// its plan) before it was stopped: down still cleans up by name.
func TestDownWithoutPlan(t *testing.T) {
	testutil.RequireSandbox(t)
	p, state := writePlan(t, "nshelper2"), t.TempDir()
	if code, out := helper(t, "-plan", p, "-state-dir", state, "up", "nshelper2"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if code, out := helper(t, "-plan", p, "-state-dir", state, "down", "nshelper2"); code != 0 {
		t.Fatalf("down without plan: exit %d\n%s", code, out)
	}
	for _, path := range []string{plan.NetnsPath("nshelper2"), plan.RuntimePath("nshelper2")} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("%s left after down without plan", path)
		}
	}
	if out, _ := exec.Command("ip", "link", "show", "vh-nshelper2").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("host link left after down without plan: %s", out)
	}
}
