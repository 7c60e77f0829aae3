package resolvconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *testutil.Update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestResolvConfGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		dns  plan.DNS
	}{
		// The reference's baseline test config (anchor §5.1), without its blank line.
		{"single.resolv.conf", plan.DNS{Mode: plan.DNSStrict, Servers: addrs("10.64.0.1")}},
		{"search.resolv.conf", plan.DNS{Mode: plan.DNSStrict, Servers: addrs("10.64.0.1", "2001:db8::53"), Search: []string{"example.net", "corp.example."}}},
		// glibc reads three nameservers; the fourth is never rendered.
		{"four.resolv.conf", plan.DNS{Mode: plan.DNSCompat, Servers: addrs("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")}},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, ResolvConf(tc.dns)) })
	}
}

func TestNSSwitchGolden(t *testing.T) { golden(t, "nsswitch.conf", NSSwitch()) }

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077) // the files must be readable whatever the umask
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "run", "ns1")
	d := plan.DNS{Servers: addrs("10.64.0.1")}
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the files in place.
	d.Search = []string{"example.net"}
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"nsswitch.conf", "resolv.conf"}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for name, want := range map[string][]byte{"resolv.conf": ResolvConf(d), "nsswitch.conf": NSSwitch()} {
		p := filepath.Join(dir, name)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", name, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755", st.Mode().Perm())
	}
}

func TestWriteFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(file, "ns1"), plan.DNS{}); err == nil {
		t.Fatal("Write below a regular file succeeded")
	}
}
