package tripwire

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := testutil.Testdata("tripwire", name)
	if *testutil.Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from golden (-want +got):\n%s", path, diff)
	}
}

func TestRenderGolden(t *testing.T) {
	golden(t, "empty.nft", Render(State{}))
	golden(t, "two.nft", Render(State{Elements: []Element{
		{ID: 4242, Namespace: "vpn-b", Path: "system.slice/b.service"},
		{ID: 17, Namespace: "vpn.a", Path: "system.slice/system-a.slice/a@1.service"},
		{ID: 17, Namespace: "vpn.a"}, // duplicate
	}, Namespaces: []string{"idle"}}))
}

func TestNamespaceOf(t *testing.T) {
	for chain, want := range map[string]string{"ns_vpn": "vpn", "ns_a.b-c": "a.b-c", "ns_": "", "output": "", "xns_a": ""} {
		got, ok := NamespaceOf(chain)
		if got != want || ok != (want != "") {
			t.Errorf("NamespaceOf(%q) = %q, %v; want %q", chain, got, ok, want)
		}
		if ok && ChainName(got) != chain {
			t.Errorf("ChainName(%q) = %q, want %q", got, ChainName(got), chain)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	hybrid := "12:pids:/system.slice/a.service\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n"
	for _, c := range []struct {
		name, in, want string
		err            error
	}{
		{"unified", "0::/system.slice/foo.service\n", "/system.slice/foo.service", nil},
		{"hybrid", hybrid, "/system.slice/a.service", nil},
		{"no newline", "0::/x", "/x", nil},
		{"v1 only", "12:pids:/a\n1:name=systemd:/a\n", "", ErrNoCgroup2},
		{"empty", "", "", ErrNoCgroup2},
	} {
		got, err := ParseProcCgroup(c.in)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: ParseProcCgroup = %q, %v; want %q, %v", c.name, got, err, c.want, c.err)
		}
	}
	if _, err := ParseProcCgroup("0::relative\n"); err == nil {
		t.Error("relative path accepted")
	}
}

func TestUnitPath(t *testing.T) {
	for in, want := range map[string]string{
		"/system.slice/docker.service/.control": "/system.slice/docker.service",
		"/system.slice/foo.service":             "/system.slice/foo.service",
		"/.control":                             "/.control",
		"/a/.controlx":                          "/a/.controlx",
	} {
		if got := UnitPath(in); got != want {
			t.Errorf("UnitPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	ok := []string{"/system.slice/foo.service", "/system.slice/system-vpn.slice/x@y.service", "/vpnc-test", "/a/b/c/d/e/f/g/h"}
	bad := []string{"/", "", "system.slice/x.service", "/system.slice", "/user.slice/user-1000.slice",
		"/a/../b", "/a/", "/a//b", "/a/b/c/d/e/f/g/h/i"}
	for _, p := range ok {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q): %v", p, err)
		}
	}
	for _, p := range bad {
		if err := CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) accepted", p)
		}
	}
	for p, want := range map[string]int{"/": 0, "/a": 1, "/system.slice/x.service": 2, "/a/b/c": 3} {
		if got := Depth(p); got != want {
			t.Errorf("Depth(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestCgroup2Mount(t *testing.T) {
	const (
		unified = "24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
		hybrid  = "25 30 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n" +
			"26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n" +
			"27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
		other   = "40 30 0:26 / /mnt/cg\\040two rw - cgroup2 none rw\n"
		subtree = "41 30 0:26 /machine.slice/ct /srv/cg rw - cgroup2 none rw\n"
		v1only  = "27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
	)
	for _, c := range []struct {
		name, in string
		want     Mount
		err      error
	}{
		{"unified", "1 0 8:1 / / rw - ext4 /dev/vda rw\n" + unified, Mount{"/sys/fs/cgroup", "/"}, nil},
		{"hybrid", hybrid, Mount{"/sys/fs/cgroup/unified", "/"}, nil},
		{"prefer standard", other + hybrid, Mount{"/sys/fs/cgroup/unified", "/"}, nil},
		{"escaped", other, Mount{"/mnt/cg two", "/"}, nil},
		{"root first", subtree + other, Mount{"/mnt/cg two", "/"}, nil},
		{"subtree", subtree, Mount{"/srv/cg", "/machine.slice/ct"}, nil},
		{"v1 only", v1only, Mount{}, ErrNoCgroup2},
	} {
		got, err := Cgroup2Mount(c.in)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: Cgroup2Mount = %+v, %v; want %+v, %v", c.name, got, err, c.want, c.err)
		}
	}
	m := Mount{"/srv/cg", "/machine.slice/ct"}
	if d, err := m.DirOf("/machine.slice/ct/system.slice/x.service"); err != nil || d != "/srv/cg/system.slice/x.service" {
		t.Errorf("DirOf in subtree = %q, %v", d, err)
	}
	if _, err := m.DirOf("/machine.slice/ctx/a"); err == nil {
		t.Error("DirOf outside the subtree accepted")
	}
}
