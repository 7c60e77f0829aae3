// End-to-end tests with systemd 252 as PID 1 in a throwaway container.
// Every traffic probe runs inside a confined cgroup (systemd-run with the
// properties of the generated drop-in), with tcpdump on the container's
// uplink counting anything that is not the WireGuard flow.
//
// Run: make test-e2e (as root; runs inside test/sandbox.sh).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

var buildDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || os.Getenv("VPNC_SANDBOX") != "1" {
			return m.Run() // tests skip themselves
		}
		// On the sandbox's private tmpfs /run: gone with the sandbox even if
		// this process is killed.
		dir, err := os.MkdirTemp("/run", "vpnc-e2e-build-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		buildDir = dir
		root := testutil.RepoRoot()
		steps := [][]string{
			{"make", "-s", "-C", root, "build", "B=" + dir, "PREFIX=/usr/local"},
			{"go", "build", "-o", filepath.Join(dir, "vpnc-probe"), "./test/probe"},
			{"go", "build", "-o", filepath.Join(dir, "vpnc-testpeer"), "./test/testpeer"},
		}
		for _, s := range steps {
			cmd := exec.Command(s[0], s[1:]...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n%s", strings.Join(s, " "), err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// boot starts a container with the tool installed and the provider world.
func boot(t *testing.T, name string, clients ...string) (*ct.Container, *ct.World) {
	t.Helper()
	testutil.RequireSandbox(t)
	c, err := ct.Start(filepath.Join(testutil.RepoRoot(), "test", "e2e"), name, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of the failed container:\n%s", c.Run("journalctl", "--no-pager", "-n", "150").Stdout)
		}
		c.Stop()
	})
	if err := c.Install(testutil.RepoRoot(), buildDir, filepath.Join(buildDir, "vpnc-probe"), filepath.Join(buildDir, "vpnc-testpeer")); err != nil {
		t.Fatal(err)
	}
	w, err := c.SetupWorld(clients...)
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// unit writes a service into the container.
func unit(t *testing.T, c *ct.Container, name, body string) {
	t.Helper()
	if err := c.WriteFile("/etc/systemd/system/"+name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

const sleeper = "[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"

func mustRun(t *testing.T, c *ct.Container, argv ...string) string {
	t.Helper()
	r := c.Run(argv...)
	if r.Code != 0 {
		t.Fatalf("%s: %s", strings.Join(argv, " "), r)
	}
	return r.Stdout
}

func reload(t *testing.T, c *ct.Container) {
	t.Helper()
	mustRun(t, c, "systemctl", "daemon-reload")
}

func expectOpen(t *testing.T, c *ct.Container, unit string, want bool, probe ...string) {
	t.Helper()
	got, r := c.Probe(unit, probe...)
	if got != want {
		t.Errorf("probe %v from %s: open=%v, want %v (%s)", probe, unit, got, want, strings.TrimSpace(r.Stdout+r.Stderr))
	}
}

// eventuallyOpen probes until the probe gets through or d passes: after a
// tunnel (re)start the handshake may still be under way.
func eventuallyOpen(t *testing.T, c *ct.Container, unit string, d time.Duration, probe ...string) {
	t.Helper()
	start := time.Now()
	for {
		got, r := c.ProbeWith(ct.ProbeOpts{Unit: unit, NoStart: true}, probe...)
		if got {
			t.Logf("probe %v from %s open after %v", probe, unit, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > d {
			t.Errorf("probe %v from %s still not open after %v (%s)", probe, unit, d, strings.TrimSpace(r.Stdout+r.Stderr))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func noLeaks(t *testing.T, cp *ct.Capture) {
	t.Helper()
	var pkts []string
	for _, p := range cp.Stop() {
		// The host kernel's answer to the provider's WireGuard packets that
		// reach a killed or stopped helper's closed UDP port (the helper is
		// restarted at once, on a new port): "IP H > P: ICMP H udp port N
		// unreachable" is about the host's own socket, not confined traffic.
		if f := strings.Fields(p); len(f) >= 11 && f[1] == "IP" && f[5] == "ICMP" && f[6] == f[2] && f[7] == "udp" && f[8] == "port" && strings.TrimSuffix(f[10], ",") == "unreachable" {
			t.Logf("not counted (host's ICMP about its own closed tunnel port): %s", p)
			continue
		}
		pkts = append(pkts, p)
	}
	if len(pkts) > 0 {
		t.Errorf("%d packets left on the uplink outside the WireGuard flow:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
	if !cp.ControlSeen {
		t.Errorf("the capture missed its positive control packet: its zero count proves nothing")
	}
}

// TestConfinedService covers scenarios 1, 2, 3, 7, 8 and 10 on one
// container: a DynamicUser service reaches the provider only through the
// tunnel, every leak path is closed (measured on the uplink), the chain
// fails closed, a root service cannot undo its confinement.
func TestConfinedService(t *testing.T) {
	c, w := boot(t, "confined", "vpnapps")
	p := w.Peers["vpnapps"]
	unit(t, c, "app.service", sleeper)
	unit(t, c, "rootapp.service", "[Service]\nExecStart=/bin/sleep infinity\n")
	// A host-side listener the namespace must not reach over the host link.
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgvpn", "publishToHost:\n  tcp: [8080]\nservices:\n  - unit: app.service\n  - unit: rootapp.service\n    allowRoot: true\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "app.service")
	if !c.WaitActive("app.service", "active", 10*time.Second) {
		t.Fatalf("app.service not active: %s", c.Run("systemctl", "status", "app.service", "vpn-ns@vpnapps.service", "vpn-wg@vpnapps.service").Stdout)
	}

	t.Run("1-namespace-dns-dropin", func(t *testing.T) {
		// Type=simple is active from the fork on, before the child has its
		// mount namespace (seen: the host's resolv.conf): wait for the exec.
		if !waitComm(c, "app.service", "sleep") {
			t.Fatal("app.service never ran sleep")
		}
		pid := c.MainPID("app.service")
		if got, want := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)), c.NetnsInode("/run/netns/vpnapps"); got == "" || got != want {
			t.Errorf("app netns inode %q, /run/netns/vpnapps %q", got, want)
		}
		r := c.Run("nsenter", "-t", fmt.Sprint(pid), "-m", "cat", "/etc/resolv.conf")
		if !strings.Contains(r.Stdout, "nameserver "+ct.SrvTunnel) {
			t.Errorf("service sees resolv.conf:\n%s", r)
		}
		if out := c.Run("systemctl", "cat", "app.service").Stdout; !strings.Contains(out, "NetworkNamespacePath=/run/netns/vpnapps") {
			t.Errorf("systemctl cat lacks the drop-in:\n%s", out)
		}
		expectOpen(t, c, "app.service", true, "tcp", ct.SrvTunnel+":7")
		expectOpen(t, c, "app.service", true, "dns", "udp", ct.SrvTunnel+":53", "example.org")
		expectOpen(t, c, "app.service", true, "resolve", "anything.example")
	})

	t.Run("2-leak-matrix", func(t *testing.T) {
		cp, err := c.StartCapture("leaks")
		if err != nil {
			t.Fatal(err)
		}
		for _, proto := range []string{"udp", "tcp"} {
			for _, port := range []string{"53", "853", "5353", "5355"} {
				expectOpen(t, c, "app.service", false, "dns", proto, ct.SrvOtherNS+":"+port, "leak.example")
				expectOpen(t, c, "app.service", false, "dns", proto, ct.SrvUplink+":"+port, "leak.example")
			}
		}
		// The provider's own uplink address answers through the tunnel (it
		// is the server's address), but the host's end of the uplink is
		// reachable only without the tunnel.
		expectOpen(t, c, "app.service", true, "tcp", ct.SrvUplink+":7")
		if r := c.Run("/usr/local/bin/vpnc-probe", "tcp", ct.HostUplink+":7"); r.Code != 0 {
			t.Errorf("host echo on the uplink not reachable from the host: %s", r)
		}
		expectOpen(t, c, "app.service", false, "tcp", ct.HostUplink+":7")
		expectOpen(t, c, "app.service", false, "udp", ct.HostUplink+":7")
		// A leak interface added to the namespace with a route out: the
		// firewall must drop everything that does not leave via the tunnel.
		c.Sh("ip link add leak0 netns vpnapps type veth peer name leakh && ip addr add 10.77.0.1/24 dev leakh && ip link set leakh up && ip -n vpnapps addr add 10.77.0.2/24 dev leak0 && ip -n vpnapps link set leak0 up")
		// Count every frame the confined end sends, whatever it is.
		mac := strings.TrimSpace(c.Run("ip", "netns", "exec", "vpnapps", "cat", "/sys/class/net/leak0/address").Stdout)
		leakCap, _ := c.StartCaptureFilter("leak", "leakh", "ether src "+mac)
		expectOpen(t, c, "app.service", false, "tcp", "10.77.0.1:22")
		expectOpen(t, c, "app.service", false, "udp", "10.77.0.1:53")
		expectOpen(t, c, "app.service", false, "dns", "udp", "10.77.0.1:53", "leak.example")
		if pkts := leakCap.Stop(); len(pkts) > 0 {
			t.Errorf("packets left through the leak interface:\n%s", strings.Join(pkts, "\n"))
		}
		c.Sh("ip link del leakh")
		expectOpen(t, c, "app.service", false, "udp", "[fd00:213::2]:7")
		// The host end of the host link.
		plan, _ := c.ReadFile("/run/systemd/generator/vpn-confinement/vpnapps.json")
		if i := strings.Index(string(plan), `"hostAddr": "`); i > 0 {
			host := strings.SplitN(string(plan)[i+13:], `"`, 2)[0]
			if r := c.Run("/usr/local/bin/vpnc-probe", "tcp", host+":7"); r.Code != 0 {
				t.Errorf("the host's echo on its host-link address %s is not reachable from the host: %s", host, r)
			}
			expectOpen(t, c, "app.service", false, "tcp", host+":7")
			expectOpen(t, c, "app.service", false, "udp", host+":7")
		} else {
			t.Errorf("plan has no host link:\n%s", plan)
		}
		// Resolver IPC is hidden.
		c.Sh("mkdir -p /run/nscd /run/systemd/resolve && touch /run/nscd/socket /run/systemd/resolve/io.systemd.Resolve")
		r := c.RunConfined(ct.ProbeOpts{Unit: "app.service"}, "/bin/sh", "-c",
			"for p in /run/nscd/socket /run/systemd/resolve/io.systemd.Resolve /run/dbus/system_bus_socket /etc/vpn-confinement.d/keys/vpnapps.key; do cat $p >/dev/null 2>&1 && echo VISIBLE $p; done; true")
		if strings.Contains(r.Stdout, "VISIBLE") {
			t.Errorf("resolver IPC or keys visible inside the service:\n%s", r.Stdout)
		}
		noLeaks(t, cp)
		if log := w.DNSLog(); strings.Contains(log, ct.SrvOtherNS) || strings.Contains(log, "leak.example") {
			t.Errorf("a blocked DNS query reached a resolver:\n%s", log)
		}
	})

	t.Run("7-root-service-cannot-escape", func(t *testing.T) {
		for _, cmd := range []string{
			"nft flush ruleset",
			"ip route add 10.213.0.0/24 dev lo",
			"nsenter --net=/proc/1/ns/net true",
			"cat /etc/vpn-confinement.d/keys/vpnapps.key",
			"cat /run/credentials/vpn-wg@vpnapps.service/wireguard-private-key",
		} {
			r := c.RunConfined(ct.ProbeOpts{Unit: "rootapp.service", Root: true}, "/bin/sh", "-c", cmd)
			if r.Code == 0 {
				t.Errorf("root service could run %q: %s", cmd, r)
			}
		}
		if r := c.Run("ip", "netns", "exec", "vpnapps", "nft", "list", "table", "inet", "vpn_confinement"); r.Code != 0 {
			t.Errorf("firewall gone: %s", r)
		}
	})

	t.Run("8-resolved-symlink-host", func(t *testing.T) {
		c.Sh("printf 'nameserver 127.0.0.53\\n' > /run/systemd/resolve/stub-resolv.conf && ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf")
		r := c.RunConfined(ct.ProbeOpts{Unit: "app.service"}, "/bin/cat", "/etc/resolv.conf")
		if !strings.Contains(r.Stdout, "nameserver "+ct.SrvTunnel) {
			t.Errorf("with a resolved symlink the service sees:\n%s", r)
		}
		expectOpen(t, c, "app.service", true, "resolve", "symlinked.example")
	})

	t.Run("10-verify-silent", func(t *testing.T) {
		r := c.Run("systemd-analyze", "verify", "vpn-ns@vpnapps.service", "vpn-wg@vpnapps.service", "app.service", "rootapp.service")
		if r.Code != 0 || r.Stdout+r.Stderr != "" {
			t.Errorf("systemd-analyze verify not silent: %s", r)
		}
	})

	t.Run("3-fail-closed-lifecycle", func(t *testing.T) {
		cp, err := c.StartCapture("lifecycle")
		if err != nil {
			t.Fatal(err)
		}
		// onTunnelLoss: block (the default). The tunnel stopped: the
		// service keeps running (same PID) with no way out.
		pid0 := c.MainPID("app.service")
		mustRun(t, c, "systemctl", "stop", "vpn-wg@vpnapps.service")
		if c.Active("app.service") != "active" || c.MainPID("app.service") != pid0 {
			t.Errorf("app %s (PID %d, was %d) after the tunnel stopped; block keeps it running", c.Active("app.service"), c.MainPID("app.service"), pid0)
		}
		if open, r := c.ProbeWith(ct.ProbeOpts{Unit: "app.service", NoStart: true}, "tcp", ct.SrvTunnel+":7"); open {
			t.Errorf("traffic flows with the tunnel stopped: %s", r)
		}
		if r := c.Run("ip", "netns", "exec", "vpnapps", "ip", "route", "get", ct.SrvUplink); r.Code == 0 {
			t.Errorf("namespace has a route out without the tunnel: %s", r.Stdout)
		}
		mustRun(t, c, "systemctl", "start", "vpn-wg@vpnapps.service")
		eventuallyOpen(t, c, "app.service", 15*time.Second, "tcp", ct.SrvTunnel+":7")

		// Kill the tunnel process: systemd restarts it at once, the
		// service never stops and its traffic comes back by itself.
		// (--kill-who=main: the helper's process, as a crash would; the
		// whole cgroup can race a process's exit into EIO.) Wait for the
		// new main process: right after the kill systemd may still report
		// the old one active.
		old := c.MainPID("vpn-wg@vpnapps.service")
		mustRun(t, c, "systemctl", "kill", "--kill-who=main", "-s", "KILL", "vpn-wg@vpnapps.service")
		deadline := time.Now().Add(10 * time.Second)
		for pid := c.MainPID("vpn-wg@vpnapps.service"); pid == old || pid == 0 || c.Active("vpn-wg@vpnapps.service") != "active"; pid = c.MainPID("vpn-wg@vpnapps.service") {
			if time.Now().After(deadline) {
				t.Fatalf("the tunnel did not come back: %s", c.Run("systemctl", "status", "vpn-wg@vpnapps.service").Stdout)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if c.MainPID("app.service") != pid0 {
			t.Errorf("app PID %d after the tunnel was killed, want %d", c.MainPID("app.service"), pid0)
		}
		eventuallyOpen(t, c, "app.service", 15*time.Second, "tcp", ct.SrvTunnel+":7")

		// Delete the namespace pin under the running service: it keeps its
		// (policed) namespace and never lands on the host network.
		pid := c.MainPID("app.service")
		before := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid))
		mustRun(t, c, "ip", "netns", "delete", "vpnapps")
		if got, host := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)), c.NetnsInode("/proc/1/ns/net"); got != before || got == host {
			t.Errorf("after deleting the pin the service is in netns %s (before %s, host %s)", got, before, host)
		}
		r := c.Run("nsenter", "-t", fmt.Sprint(pid), "-n", "/usr/local/bin/vpnc-probe", "-timeout", "1s", "tcp", ct.HostUplink+":7")
		if r.Code == 0 {
			t.Errorf("after deleting the pin the service reached the uplink: %s", r)
		}
		mustRun(t, c, "systemctl", "restart", "vpn-ns@vpnapps.service")
		mustRun(t, c, "systemctl", "start", "app.service")
		expectOpen(t, c, "app.service", true, "tcp", ct.SrvTunnel+":7")
		noLeaks(t, cp)
	})
}
