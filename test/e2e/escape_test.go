// Attack tests (issue 9): everything a confined service, root or
// DynamicUser, might try to leave its namespace through the host's control
// planes, its runtime state or its own capabilities, run from inside real
// unit files, each with a positive control from the host that proves the
// same command works where it is allowed (so a failure proves the block,
// not a broken command), and an uplink capture with its own positive
// control proving 0 packets left.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

const escTool = "/usr/local/bin/vpnc-escape"

var buildEscape = sync.OnceValue(func() error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "vpnc-escape"), "./test/escape")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build vpnc-escape: %v\n%s", err, out)
	}
	return nil
})

// bootEscape is boot plus the attack tool.
func bootEscape(t *testing.T, name string, clients ...string) (*ct.Container, *ct.World) {
	t.Helper()
	testutil.RequireSandbox(t)
	if err := buildEscape(); err != nil {
		t.Fatal(err)
	}
	c, w := boot(t, name, clients...)
	b, err := os.ReadFile(filepath.Join(buildDir, "vpnc-escape"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(escTool, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return c, w
}

func attack(t *testing.T, c *ct.Container, unit string, cmds ...string) []ct.Attack {
	t.Helper()
	res, err := c.Attack(unit, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// mustFail asserts that an attack failed; want, when set, must match its
// output (the reason it failed).
func mustFail(t *testing.T, who string, a ct.Attack, want string) {
	t.Helper()
	if a.Code == 0 {
		t.Errorf("%s: the attack succeeded:\n%s", who, a)
		return
	}
	if want != "" && !regexp.MustCompile(want).MatchString(a.Output) {
		t.Errorf("%s: failed, but not for the expected reason /%s/:\n%s", who, want, a)
	}
}

// noOK asserts that a vpnc-escape run reported no success ("OK") on any
// line and that every line failed for one of the reasons in want.
func noOK(t *testing.T, who string, a ct.Attack, want string) {
	t.Helper()
	if a.Code != 0 && a.Code != 3 {
		t.Errorf("%s: vpnc-escape did not run:\n%s", who, a)
		return
	}
	re := regexp.MustCompile(want)
	for _, line := range strings.Split(strings.TrimSpace(a.Output), "\n") {
		switch {
		case strings.Contains(line, ": OK"):
			t.Errorf("%s: ESCAPE: %s", who, line)
		case !re.MatchString(line):
			t.Errorf("%s: failed for an unexpected reason (want /%s/): %s", who, want, line)
		}
	}
}

// Host-side decoys of the control planes that are not running in the
// container, one per hidden class: a connect from the host proves each is
// a live socket, so a failure inside proves it is hidden.
var decoys = []string{
	"/run/udev/control",                       // udevadm control (seqpacket, as systemd-udevd's)
	"/run/docker.sock",                        // Docker
	"/run/containerd/containerd.sock",         // containerd
	"/run/podman/podman.sock",                 // Podman
	"/run/crio/crio.sock",                     // CRI-O
	"/run/lxd/unix.socket",                    // LXD
	"/run/snapd.socket",                       // snapd
	"/run/libvirt/libvirt-sock",               // libvirt
	"/run/user/0/bus",                         // root's user bus
	"/run/user/0/systemd/private",             // root's user manager
	"/run/user/1000/systemd/private",          // a user's manager
	"/run/wireguard/esc-decoy.sock",           // a userspace tunnel's UAPI
	"/run/nscd/socket",                        // nscd (strict DNS)
	"/run/avahi-daemon/socket",                // avahi (strict DNS)
	"/run/systemd/resolve/io.systemd.Resolve", // resolved (strict DNS)
}

// writeTargets are the files an escape would write so that a privileged
// host process (systemd, the helpers, cron, udev, tmpfiles, dpkg) loads
// them later (issue 9, item 2). NAME is the namespace.
func writeTargets(name string) []string {
	return []string{
		"/run/systemd/generator/vpn-confinement/" + name + ".json",
		"/run/systemd/generator/esc-evil.service",
		"/run/systemd/generator.early/esc-evil.service",
		"/run/systemd/generator.late/esc-evil.service",
		"/run/systemd/system/esc-evil.service",
		"/run/systemd/transient/esc-evil.service",
		"/run/systemd/system.control/esc-evil.service",
		"/run/vpn-confinement/esc-evil",
		"/run/vpn-confinement/" + name + "/esc-evil",
		"/run/vpn-confinement/" + name + "/resolv.conf",
		"/run/vpn-confinement/_private/" + name + "/applied.json",
		"/var/lib/vpn-confinement/" + name + ".units",
		"/run/netns/esc-evil",
		"/etc/systemd/system/esc-evil.service",
		"/var/spool/cron/crontabs/root",
		"/run/udev/rules.d/99-esc-evil.rules",
		"/run/tmpfiles.d/esc-evil.conf",
		"/etc/cron.d/esc-evil",
		"/var/lib/dpkg/info/esc-evil.postinst",
	}
}

// hostFiles fingerprints paths on the host side (content or absence).
func hostFiles(c *ct.Container, paths []string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		b, err := c.ReadFile(p)
		if err != nil {
			out[p] = "absent"
			continue
		}
		out[p] = fmt.Sprintf("%d bytes: %q", len(b), lastLine(b))
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// The canary: a host unit that sends one UDP datagram onto the uplink and
// leaves a marker. An attack that made systemd start it would show up on
// the capture and as the marker; the host starting it at the end proves
// both would be seen.
const canaryUnit = `[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/touch /run/vpnc-test/canary.ran
ExecStart=-/usr/local/bin/vpnc-probe -timeout 300ms udp 10.213.0.2:9
`

// TestEscapeServiceManager: from a confined root service (allowRoot) and a
// DynamicUser one, both real unit files, every way to the service manager
// fails and nothing starts (issue 9, item 1); nothing the helpers or
// systemd load later is writable (item 2); the namespace's network state
// cannot be changed with the real capability set (item 3).
func TestEscapeServiceManager(t *testing.T) {
	c, w := bootEscape(t, "escsm", "escsm")
	p := w.Peers["escsm"]
	unit(t, c, "esc-root.service", ct.AttackerUnit("esc-root", false))
	unit(t, c, "esc-dyn.service", ct.AttackerUnit("esc-dyn", true))
	unit(t, c, "esc-canary.service", canaryUnit)
	unit(t, c, "esc-long.service", sleeper) // a running unit for verify
	yaml := w.NamespaceYAML(p, "wgesc", "services:\n  - unit: esc-root.service\n    allowRoot: true\n  - unit: esc-dyn.service\n  - unit: esc-long.service\n")
	if err := w.InstallNamespace(p, yaml); err != nil {
		t.Fatal(err)
	}
	// The directories privileged host processes load from exist on the
	// host side, so a failed write proves the confinement, not a missing
	// directory.
	mustRun(t, c, "sh", "-c", "mkdir -p /var/spool/cron/crontabs /run/udev/rules.d /run/tmpfiles.d /etc/cron.d /var/lib/dpkg/info "+
		"/run/systemd/system /run/systemd/transient /run/systemd/system.control /var/lib/vpn-confinement "+
		"&& chmod 1730 /var/spool/cron/crontabs && echo '# root crontab' > /var/spool/cron/crontabs/root")
	mustRun(t, c, append([]string{"systemd-run", "--quiet", "--unit=esc-decoys", escTool, "listen"}, decoys...)...)
	for i := 0; i < 100 && c.Run("test", "-S", decoys[len(decoys)-1]).Code != 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "vpn-ns@escsm.service", "vpn-wg@escsm.service", "esc-long.service")
	attackers := []string{"esc-root", "esc-dyn"}

	// Positive controls of the decoys and of the real control sockets,
	// from the host: each is a live socket there.
	hostSockets := append([]string{"/run/systemd/private", "/run/dbus/system_bus_socket", "/proc/1/root/run/systemd/private",
		"/proc/1/root/run/dbus/system_bus_socket", "/run/wireguard/wgsrv.sock"}, decoys...)
	if r := c.Run(append([]string{escTool, "connect"}, hostSockets...)...); r.Code != 3 || strings.Count(r.Stdout, ": OK") != len(hostSockets) {
		t.Fatalf("positive control: not every control socket is connectable from the host:\n%s", r)
	}

	t.Run("1-service-manager", func(t *testing.T) {
		cp, err := c.StartCapture("escsm")
		if err != nil {
			t.Fatal(err)
		}
		before, stamp := c.Units(), c.ReloadStamp()
		weight := c.Run("systemctl", "show", "-P", "CPUWeight", "esc-canary.service").Stdout
		startCanary := "org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StartUnit ss esc-canary.service replace"
		unitFile := `printf "[Service]\nExecStart=/bin/touch /run/vpnc-test/evil.ran\n" > `
		cmds := []string{
			/* 0 */ "systemctl is-system-running",
			/* 1 */ "systemctl daemon-reload",
			/* 2 */ "systemctl start esc-canary.service",
			/* 3 */ "systemctl set-property esc-canary.service CPUWeight=42",
			/* 4 */ "systemd-run --unit=esc-spawn /bin/touch /run/vpnc-test/spawn.ran",
			/* 5 */ "busctl --system --timeout=3 call " + startCanary,
			/* 6 */ "busctl --address=unix:path=/run/systemd/private --timeout=3 call " + startCanary,
			/* 7 */ "busctl --address=unix:path=/proc/1/root/run/systemd/private --timeout=3 call " + startCanary,
			// Every UNIX socket this process can find, each tried as a bus.
			/* 8 */ `for s in $(` + escTool + ` sockets); do
				timeout 5 busctl --address=unix:path=$s --timeout=3 call ` + startCanary + ` >/dev/null 2>&1; b=$?
				echo "SOCKET $s busctl=$b $(` + escTool + ` connect $s | cut -d" " -f2)"; done`,
			/* 9 */ escTool + " connect /run/systemd/private /run/dbus/system_bus_socket /proc/1/root/run/systemd/private /proc/1/root/run/dbus/system_bus_socket",
			// The same through every process's root (the host's mount
			// namespace is behind PID 1's and most daemons').
			/* 10 */ escTool + ` connect $(for p in /proc/[0-9]*; do echo $p/root/run/systemd/private $p/root/run/dbus/system_bus_socket; done)`,
			/* 11 */ escTool + " connect " + strings.Join(decoys, " "),
			/* 12 */ unitFile + "/run/systemd/system/esc-evil.service && systemctl daemon-reload && systemctl start esc-evil.service",
			/* 13 */ unitFile + "/etc/systemd/system/esc-evil.service && systemctl daemon-reload && systemctl start esc-evil.service",
			/* 14 */ "udevadm control --reload",
			/* 15 */ escTool + " connect /run/wireguard/wgsrv.sock",
		}
		for _, who := range attackers {
			res := attack(t, c, who, cmds...)
			if out := strings.TrimSpace(res[0].Output); res[0].Code == 0 || regexp.MustCompile(`^(running|degraded|starting|initializing|maintenance|stopping)$`).MatchString(out) {
				t.Errorf("%s: the service manager answered: %s", who, res[0])
			}
			for _, i := range []int{1, 2, 3, 4, 5, 6, 7, 12, 13} {
				mustFail(t, who, res[i], "")
			}
			for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14} {
				t.Logf("%s: %s → %d: %s", who, res[i].Cmd, res[i].Code, firstLine(res[i].Output))
			}
			// Socket enumeration: only the journal, sd_notify and userdb
			// remain, and none of them speaks D-Bus to systemd.
			var found, reach []string
			for _, line := range strings.Split(strings.TrimSpace(res[8].Output), "\n") {
				f := strings.Fields(line)
				if len(f) != 4 || f[0] != "SOCKET" {
					t.Errorf("%s: socket scan: %q", who, line)
					continue
				}
				found = append(found, f[1])
				if f[2] == "busctl=0" {
					t.Errorf("%s: ESCAPE: StartUnit over %s succeeded", who, f[1])
				}
				if f[3] != "OK" {
					continue // a hidden one: InaccessiblePaths= leaves a dead socket node
				}
				reach = append(reach, f[1])
				if !regexp.MustCompile(`^/run/systemd/(journal/[^/]+|notify|userdb/[^/]+)$`).MatchString(f[1]) {
					t.Errorf("%s: a socket outside the journal, notify and userdb is connectable: %s", who, f[1])
				}
			}
			if len(reach) == 0 {
				t.Errorf("%s: the socket scan connected to nothing, not even the journal: it proves nothing\n%s", who, res[8])
			}
			t.Logf("%s finds %d UNIX sockets, connects to %d: %s", who, len(found), len(reach), strings.Join(reach, " "))
			noOK(t, who+" control sockets", res[9], `: (ENOENT|EACCES|ECONNREFUSED)`)
			noOK(t, who+" /proc/*/root", res[10], `: (ENOENT|EACCES|ECONNREFUSED)`)
			noOK(t, who+" decoys", res[11], `: (ENOENT|EACCES|ECONNREFUSED)`)
			// udevadm is not installed here (no udev in the container);
			// its control socket is the decoy connect above.
			mustFail(t, who, res[14], "")
			noOK(t, who+" UAPI", res[15], `: (ENOENT|EACCES|ECONNREFUSED)`)
			for _, i := range []int{12, 13} {
				if !regexp.MustCompile(`(Read-only file system|Permission denied|No such file or directory|Directory nonexistent)`).MatchString(res[i].Output) {
					t.Errorf("%s: writing the unit file did not fail at the write:\n%s", who, res[i])
				}
			}
		}
		// Nothing new on the host side: no unit file, no unit, no reload,
		// no property change, no marker, and no packet on the uplink.
		for _, f := range []string{"/run/systemd/system/esc-evil.service", "/etc/systemd/system/esc-evil.service", "/run/vpnc-test/evil.ran", "/run/vpnc-test/spawn.ran", "/run/vpnc-test/canary.ran"} {
			if _, err := c.ReadFile(f); err == nil {
				t.Errorf("ESCAPE: %s exists on the host", f)
			}
		}
		if n := ct.NewUnits(before, c.Units(), "vpnc-capture-"); len(n) > 0 {
			t.Errorf("ESCAPE: new units on the host: %v", n)
		}
		if s := c.ReloadStamp(); s != stamp {
			t.Errorf("ESCAPE: the service manager reloaded (generators ran at %s, before %s)", s, stamp)
		}
		if got := c.Run("systemctl", "show", "-P", "CPUWeight", "esc-canary.service").Stdout; got != weight {
			t.Errorf("ESCAPE: esc-canary CPUWeight %q, was %q", got, weight)
		}
		if a := c.Active("esc-canary.service"); a != "inactive" {
			t.Errorf("ESCAPE: esc-canary is %s", a)
		}
		noLeaks(t, cp)

		// Positive controls: each command works from the host.
		cp2, _ := c.StartCaptureOn("escsm-canary", ct.UplinkIf)
		if out := strings.TrimSpace(c.Run("systemctl", "is-system-running").Stdout); !regexp.MustCompile(`^(running|degraded)$`).MatchString(out) {
			t.Errorf("positive control: is-system-running on the host: %q", out)
		}
		mustRun(t, c, "systemctl", "set-property", "--runtime", "esc-canary.service", "CPUWeight=42")
		mustRun(t, c, "systemd-run", "--wait", "--quiet", "--unit=esc-spawn", "/bin/true")
		mustRun(t, c, "sh", "-c", unitFile+"/run/systemd/system/esc-evil.service")
		mustRun(t, c, "systemctl", "daemon-reload")
		if s := c.ReloadStamp(); s == stamp {
			t.Errorf("positive control: daemon-reload from the host did not change the generators' timestamp %s", s)
		}
		mustRun(t, c, "systemctl", "start", "esc-evil.service")
		c.Run("rm", "-f", "/run/systemd/system/esc-evil.service", "/run/vpnc-test/evil.ran")
		mustRun(t, c, "busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartUnit", "ss", "esc-canary.service", "replace")
		if !c.WaitActive("esc-canary.service", "active", 10*time.Second) {
			t.Errorf("positive control: StartUnit over the system bus from the host did not start the canary")
		}
		if _, err := c.ReadFile("/run/vpnc-test/canary.ran"); err != nil {
			t.Errorf("positive control: the canary left no marker")
		}
		if pkts := cp2.Stop(); !strings.Contains(strings.Join(pkts, "\n"), ct.SrvUplink+".9:") {
			t.Errorf("positive control: the canary's datagram was not captured on the uplink: %v", pkts)
		}
		reload(t, c)
	})

	t.Run("1b-control-socket-created-after-start", func(t *testing.T) {
		// The hiding is decided when the service starts: measured here,
		// sockets that appear later (a container engine installed or
		// socket-activated after the service started) and sockets that
		// were hidden at the start but re-created since (a daemon
		// restarted: unlink + bind; the kernel detaches mounts on an
		// unlinked dentry in every namespace).
		late := []string{"/run/esc-late.sock", "/run/user/0/esc-late.sock", "/run/containerd/esc-late.sock", "/run/esc-late-dir/x.sock"}
		for _, who := range attackers {
			c.Run("rm", "-f", "/run/vpnc-test/go")
			done := make(chan []ct.Attack, 1)
			go func() {
				res, err := c.Attack(who, "while [ ! -e /run/vpnc-test/go ]; do sleep 0.05; done; "+escTool+" connect "+strings.Join(append(late, decoys...), " "))
				if err != nil {
					t.Error(err)
				}
				done <- res
			}()
			for i := 0; i < 200 && c.Active(who+".service") != "activating"; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // past ExecStartPre=, into the script
			mustRun(t, c, "systemd-run", "--quiet", "--unit=esc-late-"+who, escTool, "listen", late[0], late[1], late[2], late[3])
			mustRun(t, c, "systemctl", "restart", "esc-decoys.service")
			for i := 0; i < 100 && (c.Run("test", "-S", late[3]).Code != 0 || c.Run("test", "-S", decoys[len(decoys)-1]).Code != 0); i++ {
				time.Sleep(50 * time.Millisecond)
			}
			mustRun(t, c, "touch", "/run/vpnc-test/go")
			res := <-done
			c.Run("systemctl", "stop", "esc-late-"+who)
			if res == nil {
				continue
			}
			if who == attackers[0] {
				// verify finds the re-created file sockets on a unit that
				// ran through the restart, and passes once it restarted.
				r := c.Run(vpnc, "verify", "esc-long.service")
				if !regexp.MustCompile(`FAIL\s+control-planes\s+root-owned sockets reachable from the service: /run/docker.sock \([^)]*\), /run/snapd.socket \(`).MatchString(r.Stdout) {
					t.Errorf("verify of a unit that ran through the daemons' restart:\n%s", r)
				}
				mustRun(t, c, "systemctl", "restart", "esc-long.service")
				if r := c.Run(vpnc, "verify", "esc-long.service"); r.Code != 0 {
					t.Errorf("verify after a restart of the unit:\n%s", r)
				}
			}
			t.Logf("%s, sockets created after it started:\n%s", who, res[0].Output)
			// Reachable: what is new directly in /run or in a new
			// directory there, and the sockets hidden as files directly
			// in /run once their daemon re-created them. Everything
			// hidden as a directory stays hidden. (vpn-confinement.d(5),
			// CONTROL PLANES; verify reports the re-created ones.)
			reachable := map[string]bool{late[0]: true, late[3]: true, "/run/docker.sock": true, "/run/snapd.socket": true}
			for _, line := range strings.Split(strings.TrimSpace(res[0].Output), "\n") {
				path, _, _ := strings.Cut(line, ": ")
				if got := strings.Contains(line, ": OK"); got != reachable[path] {
					t.Errorf("%s: %s: reachable=%v, measured before %v (update the man page if this changed)", who, line, got, reachable[path])
				}
			}
		}
	})

	// What a confined root service can still do, measured, for the man
	// page's section of that name: each is asserted for root (works) and
	// for DynamicUser (does not), so the documentation cannot drift.
	t.Run("1c-what-root-can-still-do", func(t *testing.T) {
		wg := c.MainPID("vpn-wg@escsm.service")
		dbus := c.MainPID("dbus.service")
		if wg == 0 || dbus == 0 {
			t.Fatalf("no PID for vpn-wg@escsm (%d) or dbus (%d)", wg, dbus)
		}
		jv := escTool + " varlink /run/systemd/journal/io.systemd.journal io.systemd.Journal."
		cmds := []string{
			/* 0 */ "head -c 5 /etc/shadow",
			/* 1 */ "journalctl -b -q -n 1 -u vpn-wg@escsm.service -o cat",
			/* 2 */ fmt.Sprintf("kill -0 %d", wg),
			/* 3 */ fmt.Sprintf("kill -0 %d", dbus),
			/* 4 */ jv + "Synchronize",
			/* 5 */ jv + "Rotate",
			/* 6 */ jv + "RelinquishVar",
			/* 7 */ jv + "FlushToVar",
			/* 8 */ fmt.Sprintf("cat /proc/%d/environ", wg),
			/* 9 */ "logger -t vpn-confinement-wireguard ESC-SPOOFED-$(id -u)",
		}
		for _, who := range attackers {
			res := attack(t, c, who, cmds...)
			for i, a := range res {
				t.Logf("%s: %s → %d: %s", who, a.Cmd, a.Code, firstLine(a.Output))
				switch {
				case i == 8: // ptrace access to a more privileged process: never
					mustFail(t, who, a, "Permission denied")
				case i == 9:
					if a.Code != 0 {
						t.Errorf("%s: logging failed: %s", who, a)
					}
				case who == "esc-root" && i <= 3:
					if a.Code != 0 {
						t.Errorf("%s: measured before, now fails (update the man page): %s", who, a)
					}
				case who == "esc-root":
					if a.Code != 3 {
						t.Errorf("%s: journald's varlink call: %s", who, a)
					}
				case i >= 4: // the root-only varlink socket
					noOK(t, who, a, `: EACCES`)
				default:
					mustFail(t, who, a, `(Permission denied|Operation not permitted|EACCES|No journal files)`)
				}
			}
		}
		// Spoofed identifiers: journald adds the trusted fields itself
		// (_PID, _UID, _SYSTEMD_UNIT when it can still resolve the
		// sender's cgroup), so `journalctl -u vpn-wg@NAME` never shows
		// them, while -t (the sender's own SYSLOG_IDENTIFIER) does.
		var r ct.Result
		for i := 0; i < 50; i++ {
			if r = c.Run("journalctl", "-b", "-o", "cat", "-t", "vpn-confinement-wireguard", "-g", "ESC-SPOOFED"); strings.Count(r.Stdout, "ESC-SPOOFED") >= 2 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := strings.Count(r.Stdout, "ESC-SPOOFED"); n != 2 {
			t.Errorf("spoofed journal lines under -t vpn-confinement-wireguard: want 2, got %d:\n%s", n, r.Stdout)
		}
		if u := c.Run("journalctl", "-b", "-o", "cat", "-u", "vpn-wg@escsm.service", "-g", "ESC-SPOOFED").Stdout; strings.Contains(u, "ESC-SPOOFED") {
			t.Errorf("a spoofed line is attributed to vpn-wg@escsm.service:\n%s", u)
		}
	})

	t.Run("2-runtime-state-read-only", func(t *testing.T) {
		// daemon-reload empties the generator dirs: made again here.
		mustRun(t, c, "mkdir", "-p", "/run/systemd/generator.early", "/run/systemd/generator.late")
		targets := writeTargets("escsm")
		before := hostFiles(c, targets)
		for _, who := range attackers {
			res := attack(t, c, who, escTool+" write "+strings.Join(targets, " "), "mkdir /run/systemd/system/esc-evil.service.d")
			noOK(t, who, res[0], `: (EROFS|EACCES|ENOENT) `)
			mustFail(t, who, res[1], "")
			t.Logf("%s:\n%s", who, res[0].Output)
		}
		after := hostFiles(c, targets)
		for _, p := range targets {
			if before[p] != after[p] {
				t.Errorf("ESCAPE: %s changed on the host: %s → %s", p, before[p], after[p])
			}
		}
		// Positive control: the same tool writes every one of them from
		// the host (then the new ones are removed again).
		var fresh []string
		for _, p := range targets {
			if before[p] == "absent" && !strings.HasPrefix(p, "/run/netns/") {
				fresh = append(fresh, p)
			}
		}
		if r := c.Run(append([]string{escTool, "write"}, fresh...)...); strings.Count(r.Stdout, ": OK") != len(fresh) {
			t.Errorf("positive control: the host cannot write every target:\n%s", r)
		}
		c.Run(append([]string{"rm", "-f"}, fresh...)...)
	})

	t.Run("3-network-state", func(t *testing.T) {
		state := func() string {
			return c.Sh("ip netns exec escsm sh -c 'ip -d link; ip addr; ip route show table all; ip rule; nft -s list ruleset'").Stdout
		}
		before := state()
		cmds := []string{
			/* 0 */ "ip link add esc0 type veth peer name esc1",
			/* 1 */ "ip addr add 10.99.0.1/32 dev lo",
			/* 2 */ "ip route add 10.99.0.0/24 dev lo",
			/* 3 */ "ip rule add pref 99 lookup main",
			/* 4 */ "ip link set wgesc down",
			/* 5 */ "nft flush ruleset",
			/* 6 */ "nft add table inet esc",
			/* 7 */ "nsenter --net=/proc/1/ns/net true",
			/* 8 */ escTool + " setns /proc/1/ns/net",
			/* 9 */ escTool + " socket packet",
			/* 10 */ escTool + " socket raw",
			/* 11 */ "ip -br link",
			/* 12 */ "ip -br addr",
			// An fd it can open (its own namespace): setns() itself is
			// refused, not only the path to the host's.
			/* 13 */ escTool + " setns /proc/self/ns/net",
		}
		for _, who := range attackers {
			res := attack(t, c, who, cmds...)
			for i := 0; i <= 7; i++ {
				mustFail(t, who, res[i], `(Operation not permitted|Permission denied)`)
			}
			for _, a := range res {
				t.Logf("%s: %s → %d: %s", who, a.Cmd, a.Code, firstLine(a.Output))
			}
			noOK(t, who+" setns", res[8], `: (open|setns) (EPERM|EACCES)`)
			noOK(t, who+" AF_PACKET", res[9], `: (EAFNOSUPPORT|EPERM|EACCES)`)
			noOK(t, who+" SOCK_RAW", res[10], `: (EPERM|EACCES)`)
			noOK(t, who+" setns own", res[13], `: setns EPERM`)
			// Reads work: libtorrent and friends enumerate interfaces.
			if res[11].Code != 0 || !regexp.MustCompile(`(?m)^lo\s`).MatchString(res[11].Output) || !regexp.MustCompile(`(?m)^wgesc\s`).MatchString(res[11].Output) {
				t.Errorf("%s: netlink read of the links:\n%s", who, res[11])
			}
			if res[12].Code != 0 || !strings.Contains(res[12].Output, p.Address+"/32") {
				t.Errorf("%s: netlink read of the addresses:\n%s", who, res[12])
			}
		}
		if after := state(); after != before {
			t.Errorf("ESCAPE: the namespace's network state changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// Positive controls in a scratch namespace, with full privileges.
		mustRun(t, c, "ip", "netns", "add", "escscratch")
		defer c.Run("ip", "netns", "del", "escscratch")
		mustRun(t, c, "ip", "-n", "escscratch", "link", "set", "lo", "up")
		for i, cmd := range append(cmds[:11:11], cmds[13]) {
			if i == 4 {
				cmd = "ip link set lo down"
			}
			want := 0
			if strings.HasPrefix(cmd, escTool) {
				want = 3 // vpnc-escape: "succeeded"
			}
			if r := c.Run("ip", "netns", "exec", "escscratch", "sh", "-c", cmd); r.Code != want {
				t.Errorf("positive control %q with privileges: %s", cmd, r)
			}
		}
	})
}
