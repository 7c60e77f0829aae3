package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// TestMultiNamespaceSocketsConfig covers scenarios 4, 5, 6 and 9: two
// namespaces side by side (one allowList + compat DNS, one highAssurance
// with endpoint pinning), socket activation both ways, and fail-closed
// handling of an invalid and then unparsable file.
func TestMultiNamespaceSocketsConfig(t *testing.T) {
	c, w := boot(t, "multi", "apps", "strictns")
	apps, strict := w.Peers["apps"], w.Peers["strictns"]
	unit(t, c, "web.service", sleeper)
	unit(t, c, "listed.service", sleeper)
	unit(t, c, "hs.socket", "[Socket]\nListenStream=127.0.0.1:7001\n")
	unit(t, c, "hs.service", "[Service]\nExecStart=/usr/local/bin/vpnc-probe serve-fd\nDynamicUser=yes\n")
	unit(t, c, "cs.socket", "[Socket]\nListenStream=127.0.0.1:7002\n")
	unit(t, c, "cs.service", "[Service]\nExecStart=/usr/local/bin/vpnc-probe serve-fd\nDynamicUser=yes\n")
	unit(t, c, "mirror.service", sleeper)

	appsYAML := w.NamespaceYAML(apps, "wgapps", `egress:
  mode: allowList
  allowedCidrs: [10.123.0.0/24]
  allowedTcpPorts: [7]
  allowedUdpPorts: [53, 5353]
services:
  - unit: web.service
  - unit: listed.service
  - unit: hs.service
  - unit: cs.service
sockets:
  - unit: cs.socket
`)
	appsYAML = strings.Replace(appsYAML, "dns:\n", "dns:\n  mode: compat\n", 1)
	strictYAML := w.NamespaceYAML(strict, "wgstrict", `securityProfile: highAssurance
egress:
  allowedCidrs: [10.123.0.1/32]
  allowedTcpPorts: [7]
services:
  - unit: mirror.service
`)
	strictYAML = strings.Replace(strictYAML, "  peers:\n", "  endpointPinning:\n    enable: true\n  peers:\n", 1)
	if err := w.InstallNamespace(apps, appsYAML); err != nil {
		t.Fatal(err)
	}
	if err := w.InstallNamespace(strict, strictYAML); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	for _, u := range []string{"web.service", "mirror.service", "hs.socket", "cs.socket"} {
		mustRun(t, c, "systemctl", "start", u)
	}
	if !c.WaitActive("mirror.service", "active", 15*time.Second) || !c.WaitActive("web.service", "active", 15*time.Second) {
		t.Fatalf("services not active:\n%s", c.Run("systemctl", "--no-pager", "status", "web.service", "mirror.service", "vpn-wg@strictns.service", "vpn-pin@strictns.service").Stdout)
	}

	t.Run("4-two-namespaces", func(t *testing.T) {
		a, s := c.NetnsInode("/run/netns/apps"), c.NetnsInode("/run/netns/strictns")
		if a == "" || a == s {
			t.Fatalf("namespaces not distinct: %q %q", a, s)
		}
		cp, _ := c.StartCapture("multi")
		// apps: allowList + compat DNS.
		expectOpen(t, c, "web.service", true, "tcp", ct.SrvTunnel+":7")
		expectOpen(t, c, "web.service", false, "tcp", ct.SrvTunnel+":8") // port outside the allowList
		expectOpen(t, c, "web.service", false, "udp", ct.SrvTunnel+":7")
		expectOpen(t, c, "web.service", true, "dns", "udp", ct.SrvOtherNS+":53", "compat.example")   // compat: any resolver in the tunnel
		expectOpen(t, c, "web.service", true, "dns", "udp", ct.SrvOtherNS+":5353", "compat.example") // compat: not pinned
		expectOpen(t, c, "web.service", false, "tcp", ct.SrvUplink+":7")
		// strictns: highAssurance, only 10.123.0.1:7 and its resolver.
		expectOpen(t, c, "mirror.service", true, "tcp", ct.SrvTunnel+":7")
		expectOpen(t, c, "mirror.service", false, "tcp", ct.SrvOtherNS+":7")
		expectOpen(t, c, "mirror.service", false, "dns", "udp", ct.SrvOtherNS+":53", "x.example")
		noLeaks(t, cp)
		// Stopping one namespace leaves the other intact.
		mustRun(t, c, "systemctl", "stop", "vpn-ns@apps.service")
		if !c.WaitActive("web.service", "inactive", 10*time.Second) {
			t.Errorf("web.service still running without its namespace")
		}
		expectOpen(t, c, "mirror.service", true, "tcp", ct.SrvTunnel+":7")
		mustRun(t, c, "systemctl", "start", "web.service", "hs.socket", "cs.socket")
	})

	t.Run("5-socket-activation", func(t *testing.T) {
		ns := c.NetnsInode("/run/netns/apps")
		// Host socket → confined service: the listener is on the host, the
		// service that answers lives in the namespace.
		r := c.Run("/usr/local/bin/vpnc-probe", "tcp", "127.0.0.1:7001")
		if r.Code != 0 {
			t.Fatalf("host socket: %s", r)
		}
		r = c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7001; cat <&3")
		if !strings.Contains(r.Stdout, "netns:"+ns) {
			t.Errorf("host-socket service answered %q, want netns:%s", r.Stdout, ns)
		}
		// Confined socket: it listens inside the namespace, not on the host.
		if r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7002"); r.Code == 0 || !strings.Contains(r.Stderr, "refused") {
			t.Errorf("confined socket reachable from the host namespace")
		}
		r = c.Run("ip", "netns", "exec", "apps", "/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7002; cat <&3")
		if !strings.Contains(r.Stdout, "netns:"+ns) {
			t.Errorf("confined socket answered %q (%s)", r.Stdout, r.Stderr)
		}
	})

	t.Run("9-pinning-high-assurance", func(t *testing.T) {
		counters := func() string {
			return c.Run("nft", "list", "table", "inet", "vpnc_pin_strictns").Stdout
		}
		if out := counters(); !strings.Contains(out, "counter packets") {
			t.Fatalf("pin table missing:\n%s", out)
		}
		expectOpen(t, c, "mirror.service", true, "tcp", ct.SrvTunnel+":7")
		before := counters()
		// Re-point the peer: outer packets to any other address are dropped.
		mustRun(t, c, "wg", "set", "wgstrict", "peer", w.ServerPub, "endpoint", ct.SrvUplink2+":51820")
		expectOpen(t, c, "mirror.service", false, "tcp", ct.SrvTunnel+":7")
		after := counters()
		if before == after || !strings.Contains(after, "drop") {
			t.Errorf("pin drop counter did not move:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		mustRun(t, c, "wg", "set", "wgstrict", "peer", w.ServerPub, "endpoint", fmt.Sprintf("%s:%d", ct.SrvUplink, ct.WGPort))
	})

	t.Run("6-fail-closed-config", func(t *testing.T) {
		mustRun(t, c, "systemctl", "stop", "listed.service", "web.service")
		// Invalid (parses): a typo'd key.
		bad := strings.Replace(appsYAML, "egress:\n  mode:", "egress:\n  mdoe: x\n  mode:", 1)
		c.WriteFile("/etc/vpn-confinement.d/apps.yaml", []byte(bad), 0o644)
		reload(t, c)
		if r := c.Run("systemctl", "start", "listed.service"); r.Code == 0 {
			t.Errorf("listed.service started although its file is invalid")
		}
		st := c.Run("systemctl", "status", "listed.service").Stdout
		if !strings.Contains(st, "BLOCKED by vpn-confinement") {
			t.Errorf("status does not show the reason:\n%s", st)
		}
		expectOpen(t, c, "mirror.service", true, "tcp", ct.SrvTunnel+":7") // the valid file is unaffected
		// Unparsable.
		c.WriteFile("/etc/vpn-confinement.d/apps.yaml", []byte("dns: [\nservices:\n  - unit: web.service\n"), 0o644)
		reload(t, c)
		for _, u := range []string{"listed.service", "web.service"} {
			if r := c.Run("systemctl", "start", u); r.Code == 0 {
				t.Errorf("%s started although its file is unparsable", u)
			}
		}
		if c.Active("mirror.service") != "active" {
			t.Errorf("mirror.service was affected by another file")
		}
		// Fixed again: everything comes back.
		c.WriteFile("/etc/vpn-confinement.d/apps.yaml", []byte(appsYAML), 0o644)
		reload(t, c)
		mustRun(t, c, "systemctl", "start", "listed.service")
	})
}
