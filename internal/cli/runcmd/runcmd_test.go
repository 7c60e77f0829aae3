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
	if d := cmp.Diff(want, Properties(n, Unit(plan.HardeningBaseline, false, nil))); d != "" {
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
	// A root command is confined like a root service (allowRoot): the
	// drop-privileges set, ProtectSystem=strict, /run read-only.
	for _, o := range []Options{{Plan: n, Command: []string{"id"}, Root: true}, {Plan: n, Command: []string{"id"}, User: "root"}} {
		s := strings.Join(func() []string { a, _ := Argv(o); return a }(), "\n")
		for _, want := range []string{"-p\nCapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_KILL CAP_NET_BIND_SERVICE CAP_SETGID CAP_SETUID CAP_SYS_CHROOT",
			"-p\nProtectSystem=strict", "-p\nReadOnlyPaths=/run"} {
			if !strings.Contains(s, want) {
				t.Errorf("root run (%+v) lacks %q:\n%s", o, want, s)
			}
		}
	}
	// --family and safe -p properties.
	argv, err = Argv(Options{Plan: n, Command: []string{"x"}, Families: []string{"AF_PACKET", "bluetooth"}, Props: []string{"MemoryMax=1G", "ReadWritePaths=/srv/downloads -/var/lib/aria2"}})
	if err != nil {
		t.Fatal(err)
	}
	s = strings.Join(argv, "\n")
	for _, want := range []string{"-p\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET AF_BLUETOOTH", "-p\nMemoryMax=1G", "-p\nReadWritePaths=/srv/downloads -/var/lib/aria2\n--\nx"} {
		if !strings.Contains(s, want) {
			t.Errorf("argv lacks %q:\n%s", want, s)
		}
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Families: []string{"AF_in-et"}}, "not an address family name"},
		{Options{Props: []string{"CapabilityBoundingSet=CAP_NET_ADMIN"}}, "-p CapabilityBoundingSet: not passed through, the confinement decides it (allowed: CPUQuota"},
		{Options{Props: []string{"NetworkNamespacePath=/proc/1/ns/net"}}, "not passed through"},
		{Options{Props: []string{"StandardOutput=file:/etc/passwd"}}, "not passed through"},
		{Options{Props: []string{"InaccessiblePaths="}}, "an empty value resets the setting"},
		{Options{Props: []string{"ReadWritePaths=/etc/systemd/system"}}, "/etc/systemd/system is in /etc/systemd"},
		{Options{Props: []string{"ReadWritePaths=/run/../etc/cron.d"}}, "/etc/cron.d is in /etc/cron.d"},
		{Options{Props: []string{"MemoryMax"}}, "want KEY=VALUE"},
	} {
		tc.o.Plan, tc.o.Command = n, []string{"x"}
		if _, err := Argv(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
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
