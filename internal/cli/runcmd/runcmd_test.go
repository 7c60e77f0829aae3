package runcmd

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

func fixturePlan(t *testing.T, c, name string) *plan.Namespace {
	t.Helper()
	n, err := plan.Load(testutil.Testdata("generator", c, "expected", "vpn-confinement", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSameAsListedService: the properties are exactly the settings of the
// generator's golden drop-in for a listed (baseline) service.
func TestSameAsListedService(t *testing.T) {
	n := fixturePlan(t, "01-minimal", "vpnapps")
	p := testutil.Testdata("generator", "01-minimal", "expected", "qbittorrent.service.d", "50-vpn-confinement.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range unitfile.Parse(p, b) {
		if s.Key != "Documentation" {
			want = append(want, "-p", s.Key+"="+s.Value)
		}
	}
	if d := cmp.Diff(want, Properties(n, plan.HardeningBaseline)); d != "" {
		t.Errorf("run differs from a listed service (-drop-in +run):\n%s", d)
	}
}

func TestArgv(t *testing.T) {
	n := fixturePlan(t, "01-minimal", "vpnapps")
	argv, err := Argv(Options{Plan: n, Command: []string{"curl", "-s", "https://example.org"}, Env: []string{"A=b c"}})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(argv, "\n")
	for _, want := range []string{
		"systemd-run\n--wait\n--collect\n--service-type=exec\n--description=vpn-confinement run in vpnapps: curl -s https://example.org\n--pipe",
		"--setenv=A=b c",
		"-p\nDynamicUser=yes",
		"-p\nNetworkNamespacePath=/run/netns/vpnapps",
		"-p\nBindsTo=vpn-ns@vpnapps.service\n-p\nWants=vpn-wg@vpnapps.service",
		"-p\nCapabilityBoundingSet=\n",
		"-p\nBindReadOnlyPaths=/run/vpn-confinement/vpnapps/resolv.conf:/etc/resolv.conf",
		"\n--\ncurl\n-s\nhttps://example.org",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("argv lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Documentation") {
		t.Error("Documentation= is not a transient property")
	}

	argv, _ = Argv(Options{Plan: n, Command: []string{"id"}, User: "alice", Pty: true, Hardening: plan.HardeningStrict})
	s = strings.Join(argv, "\n")
	for _, want := range []string{"--pty", "-p\nUser=alice", "-p\nProtectSystem=strict", "-p\nSystemCallFilter=@system-service"} {
		if !strings.Contains(s, want) {
			t.Errorf("argv lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "DynamicUser") {
		t.Error("--user must not add DynamicUser=")
	}
	argv, _ = Argv(Options{Plan: n, Command: []string{"id"}, Root: true})
	if s := strings.Join(argv, " "); strings.Contains(s, "DynamicUser") || strings.Contains(s, "User=") {
		t.Errorf("--root: %s", s)
	}
	for _, o := range []Options{
		{Plan: n},
		{Plan: n, Command: []string{"x"}, Hardening: "max"},
		{Plan: n, Command: []string{"x"}, Root: true, User: "bob"},
		{Plan: n, Command: []string{"x"}, User: "bob; rm"},
		{Plan: n, Command: []string{"x"}, Env: []string{"NOEQUALS"}},
	} {
		if _, err := Argv(o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
}

func TestQuote(t *testing.T) {
	got := Quote([]string{"systemd-run", "-p", "A=b c", "--", "sh", "-c", "echo 'x'"})
	want := `systemd-run -p 'A=b c' -- sh -c 'echo '\''x'\'''`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
