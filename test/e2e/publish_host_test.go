package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// hostTable returns the accept and drop counters of the host-side table
// inet vpnc_hostlink_NAME (nft's listing, in the host's namespace).
func hostTable(t *testing.T, c *ct.Container, name string) (tcp, udp, drop int) {
	t.Helper()
	out := mustRun(t, c, "nft", "list", "table", "inet", "vpnc_hostlink_"+name)
	num := func(re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in the host-side table:\n%s", re, out)
		}
		var n int
		fmt.Sscan(m[1], &n)
		return n
	}
	return num(`tcp dport @to_host_tcp counter packets (\d+)`), num(`udp dport @to_host_udp counter packets (\d+)`),
		num(`iifname "[^"]+" counter packets (\d+) bytes \d+ drop`)
}

// TestPublishToHost: egress.toHost lets a confined client reach exactly
// the allowed host ports on the host's end of the host link, nothing else
// on the host, no LAN address, and the kill switch holds for the rest;
// the host-side table counts what it accepted; status shows the live
// connections.
func TestPublishToHost(t *testing.T) {
	c, w := boot(t, "pubhost", "hostns")
	p := w.Peers["hostns"]
	if err := c.SetupLAN(); err != nil {
		t.Fatal(err)
	}
	unit(t, c, "client.service", sleeper)
	// Real listeners: on the host, every address, an allowed and a
	// forbidden port; on the other LAN machine, the allowed port.
	mustRun(t, c, "systemd-run", "--quiet", "--unit=host-svc", "/usr/local/bin/vpnc-testpeer",
		"-tcp-echo", "0.0.0.0:9000,0.0.0.0:9001", "-udp-echo", "0.0.0.0:9000,0.0.0.0:9001",
		"-echo-log", "/run/vpnc-test/host-svc.log", "-ready", "/run/vpnc-test/host-svc.ready")
	mustRun(t, c, "systemd-run", "--quiet", "--unit=lan-svc", "ip", "netns", "exec", ct.LANNetns, "/usr/local/bin/vpnc-testpeer",
		"-tcp-echo", ct.LANPeer+":9000", "-udp-echo", ct.LANPeer+":9000", "-echo-log", "/run/vpnc-test/lan-svc.log", "-ready", "/run/vpnc-test/lan-svc.ready")
	for _, f := range []string{"/run/vpnc-test/host-svc.ready", "/run/vpnc-test/lan-svc.ready"} {
		deadline := time.Now().Add(10 * time.Second)
		for _, err := c.ReadFile(f); err != nil && time.Now().Before(deadline); _, err = c.ReadFile(f) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wghost", "egress:\n  toHost:\n    tcp: [9000]\n    udp: [9000]\nservices:\n  - unit: client.service\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "client.service")
	if !c.WaitActive("client.service", "active", 15*time.Second) {
		t.Fatalf("client.service not active: %s", c.Run("systemctl", "status", "client.service", "vpn-ns@hostns.service").Stdout)
	}
	b, err := c.ReadFile("/run/systemd/generator/vpn-confinement/hostns.json")
	var n plan.Namespace
	if err == nil {
		err = json.Unmarshal(b, &n)
	}
	if err != nil || n.HostLink == nil {
		t.Fatalf("plan without a host link: %v\n%s", err, b)
	}
	host, nsAddr := n.HostLink.HostAddr.String(), n.HostLink.NsAddr.String()
	tcp0, udp0, drop0 := hostTable(t, c, "hostns")
	cp, err := c.StartCapture("tohost")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("exactly-the-allowed-port", func(t *testing.T) {
		r := c.RunConfined(ct.ProbeOpts{Unit: "client.service"}, "/bin/bash", "-c", "exec 3<>/dev/tcp/"+host+"/9000; head -1 <&3")
		if !strings.HasPrefix(strings.TrimSpace(r.Stdout), "peer "+nsAddr+":") {
			t.Errorf("host %s:9000 from the namespace: %s (want the namespace's %s as the client)", host, r, nsAddr)
		}
		expectOpen(t, c, "client.service", true, "udp", host+":9000")
		for _, target := range []string{
			host + ":9001",          // a second host port
			host + ":7",             // the host's echo on every address
			ct.LANHost + ":9000",    // the host's LAN address, allowed port
			ct.HostUplink + ":9000", // the host's uplink address
			ct.LANPeer + ":9000",    // another machine on the LAN
		} {
			expectOpen(t, c, "client.service", false, "tcp", target)
			expectOpen(t, c, "client.service", false, "udp", target)
		}
		// The kill switch holds for everything else; the tunnel works.
		expectOpen(t, c, "client.service", true, "tcp", ct.SrvTunnel+":7")
		expectOpen(t, c, "client.service", false, "tcp", ct.HostUplink+":7")
		expectOpen(t, c, "client.service", false, "dns", "udp", ct.SrvOtherNS+":53", "leak.example")
		noLeaks(t, cp)
		// What the listeners saw: the namespace only on host port 9000.
		hb, _ := c.ReadFile("/run/vpnc-test/host-svc.log")
		for _, l := range strings.Split(strings.TrimSpace(string(hb)), "\n") {
			if strings.Contains(l, nsAddr) && !strings.Contains(l, ":9000") {
				t.Errorf("a host listener other than port 9000 saw the namespace: %s", l)
			}
		}
		if lb, _ := c.ReadFile("/run/vpnc-test/lan-svc.log"); len(strings.TrimSpace(string(lb))) > 0 {
			t.Errorf("the LAN machine saw connections:\n%s", lb)
		}
	})

	t.Run("host-side-counters", func(t *testing.T) {
		// One TCP connection and one UDP flow were accepted; the forbidden
		// ones never left the namespace, so the host side dropped nothing.
		tcp, udp, drop := hostTable(t, c, "hostns")
		if tcp-tcp0 != 1 || udp-udp0 != 1 || drop != drop0 {
			t.Errorf("host-side table: +%d TCP, +%d UDP accepted, +%d dropped; want +1, +1, +0", tcp-tcp0, udp-udp0, drop-drop0)
		}
	})

	t.Run("status-live-connections", func(t *testing.T) {
		if r := c.StartConfined(ct.ProbeOpts{Unit: "client.service"}, "vpnc-hold-host", "/bin/bash", "-c", "exec 3<>/dev/tcp/"+host+"/9000; sleep 60"); r.Code != 0 {
			t.Fatalf("start the held connection: %s", r)
		}
		deadline := time.Now().Add(10 * time.Second)
		for c.Established("sport = :9000") < 1 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		var rep struct {
			Namespaces []struct {
				ToHost struct {
					Connections map[string]int `json:"connections"`
					AcceptedTCP int            `json:"acceptedTcpPackets"`
					Present     bool           `json:"tablePresent"`
				} `json:"toHost"`
			} `json:"namespaces"`
		}
		r := c.Run("vpn-confinement", "status", "--json", "hostns")
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || len(rep.Namespaces) != 1 {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		th := rep.Namespaces[0].ToHost
		if th.Connections["9000"] != 1 || th.AcceptedTCP != tcp0+2 || !th.Present {
			t.Errorf("status toHost: %+v, want 1 connection on 9000 and %d accepted", th, tcp0+2)
		}
		text := c.Run("vpn-confinement", "status", "hostns").Stdout
		if !strings.Contains(text, "to host    confined services may open tcp/9000 (1 connection), udp/9000 on the host at "+host) {
			t.Errorf("status text:\n%s", text)
		}
		c.Run("systemctl", "stop", "vpnc-hold-host")
	})
}
