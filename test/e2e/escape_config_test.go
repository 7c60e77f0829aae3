package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

const vpnc = "/usr/local/bin/vpn-confinement"

// blocked asserts that unit cannot start, that systemctl status says why,
// and that verify reports it.
func blocked(t *testing.T, c *ct.Container, unit string) {
	t.Helper()
	c.Run("systemctl", "stop", unit)
	if r := c.Run("systemctl", "start", unit); r.Code == 0 {
		t.Errorf("%s started although it is blocked", unit)
	}
	if st := c.Run("systemctl", "status", "--no-pager", unit).Stdout; !strings.Contains(st, "BLOCKED by vpn-confinement") {
		t.Errorf("systemctl status %s does not say BLOCKED:\n%s", unit, st)
	}
	if r := c.Run(vpnc, "verify", unit); r.Code == 0 || !strings.Contains(r.Stdout, "is blocked") {
		t.Errorf("verify %s does not report it blocked: %s", unit, r)
	}
}

// A datagram to the provider's uplink address: on the uplink capture when
// sent from the host's namespace, through the tunnel (not on it) when
// sent confined.
const uplinkDatagrams = `for i in 1 2 3 4 5; do /usr/local/bin/vpnc-probe -timeout 200ms udp 10.213.0.2:9; done`

// TestEscapeConfigRefusals: a listed unit with privileged exec prefixes
// (issue 9, item 4), late drop-ins that weaken the confinement (item 5)
// and a YAML file with a second document (item 6) are refused by the
// generator with file:line, their units are blocked and nothing of them
// runs; verify reports it, and also reports a weakening the generator
// cannot see (systemctl set-property on the live unit).
func TestEscapeConfigRefusals(t *testing.T) {
	c, w := bootEscape(t, "escrf", "escrf", "escpfx", "escy")

	// Measured under systemd 252 (FACTS.md §1): "+", "!", "!!" and
	// PermissionsStartOnly=yes commands never leave the network namespace
	// (NetworkNamespacePath= holds for every hook), but "+" and the
	// PermissionsStartOnly= hooks run as uid 0 with every capability and
	// without InaccessiblePaths=, so from inside the namespace they could
	// flush its firewall, read the keys, or setns() into the host's
	// namespace: the generator refuses them, and the tests below prove
	// that nothing of such a unit runs at all.
	unit(t, c, "esc-plus.service", "[Service]\nType=oneshot\nDynamicUser=yes\n"+
		"ExecStartPre=+/bin/sh -c 'touch /run/vpnc-test/plus-pre.ran; "+uplinkDatagrams+"; echo ESC-PLUS-PRE'\n"+
		"ExecStart=/bin/sh -c 'echo ESC-PLUS-MAIN; "+uplinkDatagrams+"'\n")
	unit(t, c, "esc-pso.service", "[Service]\nType=oneshot\nUser=nobody\nPermissionsStartOnly=yes\n"+
		"ExecStartPre=/bin/sh -c 'echo ESC-PSO-PRE; "+uplinkDatagrams+"'\n"+
		"ExecStart=/bin/sh -c 'echo ESC-PSO-MAIN'\n")
	unit(t, c, "esc-late.service", sleeper)
	unit(t, c, "esc-yaml.service", "[Service]\nType=oneshot\nDynamicUser=yes\nExecStart=/bin/sh -c '"+uplinkDatagrams+"; echo ESC-YAML-RAN'\n")

	pfx, rf, y := w.Peers["escpfx"], w.Peers["escrf"], w.Peers["escy"]
	if err := w.InstallNamespace(pfx, w.NamespaceYAML(pfx, "wgpfx", "services:\n  - unit: esc-plus.service\n  - unit: esc-pso.service\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.InstallNamespace(rf, w.NamespaceYAML(rf, "wgrf", "egress:\n  mode: allowList\n  allowedCidrs: [10.123.0.0/24]\n  allowedTcpPorts: [7]\nservices:\n  - unit: esc-late.service\n")); err != nil {
		t.Fatal(err)
	}
	head := w.NamespaceYAML(y, "wgy", "")
	multi := head + "---\nservices:\n  - unit: esc-yaml.service\n"
	if err := w.InstallNamespace(y, multi); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "esc-late.service")
	if !c.WaitActive("esc-late.service", "active", 15*time.Second) {
		t.Fatalf("esc-late not active: %s", c.Run("systemctl", "status", "--no-pager", "esc-late.service").Stdout)
	}
	validate := c.Run(vpnc, "validate")
	t.Logf("validate:\n%s", validate.Stdout+validate.Stderr)
	if validate.Code != 1 {
		t.Errorf("validate with two invalid files: exit %d, want 1", validate.Code)
	}
	out := validate.Stdout + validate.Stderr

	t.Run("4-exec-prefixes", func(t *testing.T) {
		for _, want := range []string{
			"/etc/systemd/system/esc-plus.service:4: ExecStartPre=+/bin/sh",
			"/etc/systemd/system/esc-pso.service:4: PermissionsStartOnly=yes",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("validate does not report %q", want)
			}
		}
		cp, err := c.StartCapture("escpfx")
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"esc-plus.service", "esc-pso.service"} {
			blocked(t, c, u)
		}
		noLeaks(t, cp)
		if _, err := c.ReadFile("/run/vpnc-test/plus-pre.ran"); err == nil {
			t.Errorf("the + command of esc-plus ran")
		}
		if j := c.Run("journalctl", "-b", "-o", "cat", "-g", "ESC-(PLUS|PSO)").Stdout; strings.Contains(j, "ESC-") {
			t.Errorf("a command of a blocked unit ran:\n%s", j)
		}
		// Positive control: the same commands from the host put their
		// datagrams on the uplink, where the capture sees them.
		cp2, _ := c.StartCaptureOn("escpfx-control", ct.UplinkIf)
		mustRun(t, c, "sh", "-c", uplinkDatagrams+"; true") // no echo server on port 9
		if n := strings.Count(strings.Join(cp2.Stop(), "\n"), ct.SrvUplink+".9:"); n != 5 {
			t.Errorf("positive control: %d of 5 host datagrams captured", n)
		}
	})

	t.Run("5-late-drop-ins", func(t *testing.T) {
		// The live unit passes verify first (the positive control of
		// its effective and control-plane checks).
		if r := c.Run(vpnc, "verify", "esc-late.service"); r.Code != 0 || !strings.Contains(r.Stdout, "PASS  overrides") || !strings.Contains(r.Stdout, "PASS  control-planes") {
			t.Fatalf("verify of the confined unit:\n%s", r)
		}
		// A weakening the generator never sees: set-property on the live
		// unit (it writes 50-IPAddressDeny.conf, which sorts before ours,
		// and applies at once).
		mustRun(t, c, "systemctl", "set-property", "--runtime", "esc-late.service", "IPAddressDeny=")
		if r := c.Run(vpnc, "verify", "esc-late.service"); r.Code == 0 || !regexp.MustCompile(`FAIL\s+overrides .*IPAddressDeny=, the drop-in denies any`).MatchString(r.Stdout) {
			t.Errorf("verify after set-property IPAddressDeny=:\n%s", r)
		}
		reload(t, c) // ours, applied after it, wins again
		if r := c.Run(vpnc, "verify", "esc-late.service"); r.Code != 0 {
			t.Errorf("verify after the reload:\n%s", r)
		}
		c.Run("rm", "-rf", "/run/systemd/system.control/esc-late.service.d")
		reload(t, c)

		for _, tc := range []struct{ path, body, want string }{
			{"/etc/systemd/system/esc-late.service.d/60-caps.conf", "[Service]\nCapabilityBoundingSet=CAP_NET_ADMIN\n", "60-caps.conf:2: CapabilityBoundingSet=CAP_NET_ADMIN"},
			{"/etc/systemd/system/esc-late.service.d/60-inacc.conf", "[Service]\nInaccessiblePaths=\n", "60-inacc.conf:2: InaccessiblePaths="},
			{"/etc/systemd/system/esc-late.service.d/60-tmpfs.conf", "[Service]\nTemporaryFileSystem=\n", "60-tmpfs.conf:2: TemporaryFileSystem="},
			{"/etc/systemd/system/esc-late.service.d/60-bind.conf", "[Service]\nBindPaths=/run/systemd/private\n", "60-bind.conf:2: BindPaths=/run/systemd/private"},
			{"/etc/systemd/system/esc-late.service.d/60-robind.conf", "[Service]\nBindReadOnlyPaths=/run/systemd/private\n", "60-robind.conf:2: BindReadOnlyPaths=/run/systemd/private re-exposes"},
			{"/etc/systemd/system/esc-late.service.d/10-bus.conf", "[Service]\nBindReadOnlyPaths=/run/dbus/system_bus_socket:/tmp/bus\n", "10-bus.conf:2: BindReadOnlyPaths=/run/dbus/system_bus_socket:/tmp/bus re-exposes /run/dbus"},
			{"/etc/systemd/system/esc-late.service.d/zz-netns.conf", "[Service]\nNetworkNamespacePath=\n", "zz-netns.conf:2: NetworkNamespacePath= in a drop-in applied after"},
			{"/etc/systemd/system/esc-late.service.d/60-plus.conf", "[Service]\nExecStartPre=+/bin/true\n", "60-plus.conf:2: ExecStartPre=+/bin/true"},
			{"/etc/systemd/system/esc-late.service.d/50-vpn-confinement.conf", "[Service]\n", "esc-late.service.d/50-vpn-confinement.conf: a drop-in named 50-vpn-confinement.conf outranks"},
			{"/run/systemd/system.control/esc-late.service.d/60-caps.conf", "[Service]\nCapabilityBoundingSet=CAP_SYS_ADMIN\n", "/run/systemd/system.control/esc-late.service.d/60-caps.conf:2: CapabilityBoundingSet=CAP_SYS_ADMIN"},
			{"/run/systemd/system/esc-late.service.d/override.conf", "[Service]\nCapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_ADMIN\n", "override.conf:2: CapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_ADMIN"},
			{"/etc/systemd/system/service.d/60-all.conf", "[Service]\nAmbientCapabilities=CAP_NET_ADMIN\n", "/etc/systemd/system/service.d/60-all.conf:2: AmbientCapabilities=CAP_NET_ADMIN"},
		} {
			name := tc.path[strings.LastIndex(tc.path, "/")+1:]
			t.Run(name, func(t *testing.T) {
				mustRun(t, c, "systemctl", "stop", "esc-late.service")
				if err := c.WriteFile(tc.path, []byte(tc.body), 0o644); err != nil {
					t.Fatal(err)
				}
				defer func() {
					c.Run("rm", "-f", tc.path)
					reload(t, c)
					// restart: were the unit running, a start would keep
					// the process as it is (found: a unit started through
					// a shadowed drop-in kept running unconfined).
					if r := c.Run("systemctl", "restart", "esc-late.service"); r.Code != 0 {
						t.Errorf("without the drop-in the unit does not start again: %s", r)
					}
				}()
				reload(t, c)
				r := c.Run(vpnc, "validate", "/etc/vpn-confinement.d/escrf.yaml")
				if r.Code != 1 || !strings.Contains(r.Stdout+r.Stderr, tc.want) {
					t.Errorf("validate: want exit 1 naming %q, got %s", tc.want, r)
				}
				blocked(t, c, "esc-late.service")
			})
		}
		if r := c.Run(vpnc, "verify", "esc-late.service"); r.Code != 0 {
			t.Errorf("verify after the drop-ins were removed:\n%s", r)
		}
	})

	t.Run("6-strict-yaml", func(t *testing.T) {
		line := strings.Count(head, "\n") + 1
		want := fmt.Sprintf("/etc/vpn-confinement.d/escy.yaml:%d:", line)
		if !strings.Contains(out, want) || !strings.Contains(out, "second YAML document") {
			t.Errorf("validate does not report the second document at %s", want)
		}
		if r := c.Run(vpnc, "validate", "/etc/vpn-confinement.d/escy.yaml"); r.Code != 1 {
			t.Errorf("validate of the file alone: %s", r)
		}
		cp, err := c.StartCapture("escy")
		if err != nil {
			t.Fatal(err)
		}
		blocked(t, c, "esc-yaml.service")
		noLeaks(t, cp)
		if j := c.Run("journalctl", "-b", "-o", "cat", "-g", "ESC-YAML-RAN").Stdout; strings.Contains(j, "ESC-YAML-RAN") {
			t.Errorf("the unit of the multi-document file ran:\n%s", j)
		}
		// Positive controls: the unit's own command from the host puts 5
		// datagrams on the uplink; the same file as one document confines
		// the unit, which runs and leaves none there.
		cp2, _ := c.StartCaptureOn("escy-control", ct.UplinkIf)
		mustRun(t, c, "sh", "-c", uplinkDatagrams+"; true") // no echo server on port 9
		if n := strings.Count(strings.Join(cp2.Stop(), "\n"), ct.SrvUplink+".9:"); n != 5 {
			t.Errorf("positive control: %d of 5 host datagrams captured", n)
		}
		c.WriteFile("/etc/vpn-confinement.d/escy.yaml", []byte(strings.Replace(multi, "---\n", "", 1)), 0o644)
		reload(t, c)
		cp3, _ := c.StartCapture("escy-fixed")
		mustRun(t, c, "systemctl", "start", "esc-yaml.service")
		noLeaks(t, cp3)
		if j := c.Run("journalctl", "-b", "-o", "cat", "-u", "esc-yaml.service", "-g", "ESC-YAML-RAN").Stdout; !strings.Contains(j, "ESC-YAML-RAN") {
			t.Errorf("the unit of the fixed file did not run")
		}
	})
}
