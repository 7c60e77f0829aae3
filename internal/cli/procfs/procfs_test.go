package procfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const statusText = `Name:	qbittorrent-nox
Umask:	0022
State:	S (sleeping)
Uid:	61234	61234	61234	61234
Gid:	61234	61234	61234	61234
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	2
`

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus(strings.NewReader(statusText))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Name: "qbittorrent-nox", UID: 61234, EUID: 61234, NoNewPrivs: true}
	if d := cmp.Diff(want, s); d != "" {
		t.Error(d)
	}
	// A root service with the full bounding set (what confinement removes).
	full := strings.Replace(statusText, "CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff", 1)
	s, _ = ParseStatus(strings.NewReader(full))
	if !Has(s.CapBnd, CapNetAdmin) || !Has(s.CapBnd, CapSysAdmin) {
		t.Errorf("CapBnd %x", s.CapBnd)
	}
	only12 := strings.Replace(statusText, "CapBnd:\t0000000000000000", "CapBnd:\t0000000000001000", 1)
	s, _ = ParseStatus(strings.NewReader(only12))
	if !Has(s.CapBnd, CapNetAdmin) || Has(s.CapBnd, CapSysAdmin) {
		t.Errorf("CapBnd %x", s.CapBnd)
	}
	if _, err := ParseStatus(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("status without CapBnd accepted")
	}
	// An unparsable set is treated as "everything", never as empty.
	bad := strings.Replace(statusText, "CapEff:\t0000000000000000", "CapEff:\tzz", 1)
	s, _ = ParseStatus(strings.NewReader(bad))
	if !Has(s.CapEff, CapSysAdmin) {
		t.Error("unparsable CapEff read as empty")
	}
}

func TestNetnsOfFakeProc(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "netns", "media")
	os.MkdirAll(filepath.Dir(pin), 0o755)
	os.WriteFile(pin, nil, 0o444)
	// /proc/100/ns/net is the same object as the pin (a hard link stands
	// in for the nsfs inode); /proc/200's is another namespace.
	for _, pid := range []string{"100", "200"} {
		os.MkdirAll(filepath.Join(dir, "proc", pid, "ns"), 0o755)
	}
	if err := os.Link(pin, filepath.Join(dir, "proc", "100", "ns", "net")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "proc", "200", "ns", "net"), nil, 0o444)
	want, _ := Stat(pin)
	a, err := NetnsOf(filepath.Join(dir, "proc"), 100)
	if err != nil || a != want {
		t.Errorf("pid 100: %v %v want %v", a, err, want)
	}
	b, _ := NetnsOf(filepath.Join(dir, "proc"), 200)
	if b == want {
		t.Error("pid 200 reported in the pinned namespace")
	}
	if _, err := NetnsOf(filepath.Join(dir, "proc"), 300); err == nil {
		t.Error("missing process")
	}
	if !strings.HasPrefix(want.String(), "net:[") {
		t.Error(want.String())
	}
}

func TestCgroupPIDs(t *testing.T) {
	sys := t.TempDir()
	// A hybrid host: the unified hierarchy lives below /sys/fs/cgroup/unified.
	cg := filepath.Join(sys, "fs", "cgroup", "unified", "system.slice", "app.service")
	os.MkdirAll(filepath.Join(cg, "worker"), 0o755)
	os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("42\n7\n"), 0o644)
	os.WriteFile(filepath.Join(cg, "worker", "cgroup.procs"), []byte("99\n"), 0o644)
	got, err := CgroupPIDs(sys, "/system.slice/app.service")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int{7, 42, 99}, got); d != "" {
		t.Error(d)
	}
	if _, err := CgroupPIDs(sys, "/system.slice/none.service"); err == nil {
		t.Error("missing cgroup")
	}
	if _, err := CgroupPIDs(sys, ""); err == nil {
		t.Error("empty cgroup")
	}
}

// fakeRoot builds a service's root where /etc/resolv.conf is an absolute
// symlink into /run, as on systemd-resolved hosts, plus an escape attempt.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(filepath.Join(root, "run", "vpnc-test-only"), 0o755)
	os.WriteFile(filepath.Join(root, "run", "vpnc-test-only", "resolv.conf"), []byte("nameserver 10.64.0.1\n"), 0o644)
	os.Symlink("/run/vpnc-test-only/resolv.conf", filepath.Join(root, "etc", "resolv.conf"))
	os.Symlink("../../../../../../../../run/vpnc-test-only/resolv.conf", filepath.Join(root, "etc", "up"))
	os.Symlink("loop2", filepath.Join(root, "etc", "loop1"))
	os.Symlink("loop1", filepath.Join(root, "etc", "loop2"))
	return root
}

func TestInRoot(t *testing.T) {
	root := fakeRoot(t)
	// The naive way follows the absolute link on the caller's side.
	if _, err := os.ReadFile(filepath.Join(root, "etc", "resolv.conf")); err == nil {
		t.Skip("the host has /run/vpnc-test-only; cannot tell the two apart")
	}
	for _, p := range []string{"/etc/resolv.conf", "etc/up"} {
		b, err := ReadInRoot(root, p, 1<<16)
		if err != nil || string(b) != "nameserver 10.64.0.1\n" {
			t.Errorf("%s: %q %v", p, b, err)
		}
		r, err := ResolveInRoot(root, p)
		if err != nil || r != "/run/vpnc-test-only/resolv.conf" {
			t.Errorf("resolve %s: %q %v", p, r, err)
		}
	}
	id, mode, err := StatInRoot(root, "/etc/resolv.conf")
	want, _ := Stat(filepath.Join(root, "run", "vpnc-test-only", "resolv.conf"))
	if err != nil || id != want || !mode.IsRegular() {
		t.Errorf("stat: %v %v %v", id, mode, err)
	}
	if _, _, err := StatInRoot(root, "/etc/none"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ResolveInRoot(root, "/etc/loop1"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("loop: %v", err)
	}
}

func TestParseNetUnix(t *testing.T) {
	// From systemd 252 in the e2e container.
	text := `Num       RefCount Protocol Flags    Type St Inode Path
00000000b127858f: 00000003 00000000 00000000 0001 03 785866 /run/systemd/journal/stdout
000000002a4a3d27: 00000003 00000000 00000000 0002 03 786285
0000000075de54b1: 00000003 00000000 00000000 0002 03 784814 /run/systemd/notify
0000000096d9f565: 00000002 00000000 00010000 0001 01 784817 /run/systemd/private
000000009d9ac870: 00000002 00000000 00000000 0002 01 784827 /run/systemd/journal/dev-log
00000000767c1c4a: 00000002 00000000 00010000 0001 01 785795 /run/dbus/system_bus_socket
00000000767c1c4b: 00000002 00000000 00010000 0005 01 785796 /run/seq packet.sock
00000000767c1c4c: 00000002 00000000 00010000 0001 01 785797 @abstract
`
	got, err := ParseNetUnix(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []UnixSocket{
		{Path: "/run/systemd/notify", Inode: 784814, Type: "dgram"},
		{Path: "/run/systemd/private", Inode: 784817, Type: "stream"},
		{Path: "/run/systemd/journal/dev-log", Inode: 784827, Type: "dgram"},
		{Path: "/run/dbus/system_bus_socket", Inode: 785795, Type: "stream"},
		{Path: "/run/seq packet.sock", Inode: 785796, Type: "seqpacket"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}

func TestCapNames(t *testing.T) {
	if CapName(CapNetAdmin) != "CAP_NET_ADMIN" || CapName(CapSysAdmin) != "CAP_SYS_ADMIN" || CapName(40) != "CAP_CHECKPOINT_RESTORE" || CapName(41) != "capability 41" {
		t.Error(CapName(12), CapName(21), CapName(40), CapName(41))
	}
	if d := cmp.Diff([]int{0, 12, 21}, Caps(1|1<<12|1<<21)); d != "" {
		t.Error(d)
	}
}

func TestMayConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it chowns files to other users")
	}
	root := t.TempDir()
	mk := func(p string, mode os.FileMode, uid, gid int, dir bool) {
		full := filepath.Join(root, p)
		if dir {
			os.MkdirAll(full, mode)
		} else {
			os.WriteFile(full, nil, mode)
		}
		os.Chmod(full, mode)
		os.Chown(full, uid, gid)
	}
	os.Chmod(root, 0o755)
	mk("run", 0o755, 0, 0, true)
	mk("run/private", 0o700, 0, 0, true)
	mk("run/private/ctl.sock", 0o777, 0, 0, false)
	mk("run/open.sock", 0o666, 0, 0, false)
	mk("run/owned.sock", 0o600, 0, 0, false)
	mk("run/grp", 0o750, 0, 105, true)
	mk("run/grp/pg.sock", 0o770, 0, 105, false)
	os.Symlink("/run", filepath.Join(root, "var-run"))
	user := Cred{FSUID: 61234, FSGID: 61234}
	rootNoCaps := Cred{}
	rootBaseline := Cred{CapEff: 1 << CapDacOverride}
	member := Cred{FSUID: 61234, FSGID: 61234, Groups: []uint32{105}}
	for _, tc := range []struct {
		path string
		c    Cred
		want bool
	}{
		{"/run/private/ctl.sock", user, false},      // 0700 directory
		{"/run/private/ctl.sock", rootNoCaps, true}, // owner
		{"/run/open.sock", user, true},              // world-writable
		{"/var-run/open.sock", user, true},          // symlink resolved in root
		{"/run/owned.sock", user, false},            // 0600 root's
		{"/run/owned.sock", rootBaseline, true},     // CAP_DAC_OVERRIDE
		{"/run/grp/pg.sock", user, false},           // not in the group
		{"/run/grp/pg.sock", member, true},          // supplementary group
	} {
		got, err := MayConnect(root, tc.path, tc.c)
		if err != nil || got != tc.want {
			t.Errorf("%s as %+v: %v %v, want %v", tc.path, tc.c, got, err, tc.want)
		}
	}
	c, err := ParseCred("Uid:\t0\t0\t0\t61234\nGid:\t1\t1\t1\t61234\nGroups:\t105 106\nCapEff:\t0000000000000002\n")
	if err != nil || c.FSUID != 61234 || c.FSGID != 61234 || len(c.Groups) != 2 || c.CapEff != 2 {
		t.Errorf("ParseCred: %+v %v", c, err)
	}
}
