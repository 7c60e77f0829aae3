package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

const nginxWelcome = "Welcome to nginx!"

// fdserve is a socket-activatable confined service: it accepts on fd 3 and
// answers every connection with the inode of its network namespace.
const fdserve = "[Service]\nExecStart=/usr/local/bin/vpnc-probe serve-fd\nDynamicUser=yes\n"

// publishYAML is the namespace body of the publish tests: the packaged
// nginx (unmodified unit) published on web, and fdserve handed the host
// socket of 127.0.0.1:8090 itself.
func publishYAML(web string, zeroCopy bool) string {
	s := "publish:\n  - listen: " + web + "\n    port: 80\n"
	if zeroCopy {
		s += "  - listen: 127.0.0.1:8090\n    unit: fdserve.service\n"
	}
	return s + "services:\n  - unit: nginx.service\n    allowRoot: true\n  - unit: fdserve.service\n"
}

// nginxAccess returns the confined nginx's access-log lines with agent.
func nginxAccess(c *ct.Container, agent string) []string {
	b, _ := c.ReadFile("/var/log/nginx/access.log")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"`+agent+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// expectServed fetches url (from the host, or from the LAN) and checks
// that the confined nginx answered: the page, and its access log line
// with the proxy's loopback address as the client.
func expectServed(t *testing.T, c *ct.Container, lan bool, url, agent string) {
	t.Helper()
	get := c.HostCurl
	if lan {
		get = c.CurlFromLAN
	}
	before := len(nginxAccess(c, agent))
	r := get(url, "-A", agent)
	if r.Code != 0 || !strings.Contains(r.Stdout, nginxWelcome) {
		t.Errorf("GET %s (lan=%v): %s", url, lan, r)
		return
	}
	lines := nginxAccess(c, agent)
	if len(lines) != before+1 || !strings.HasPrefix(lines[len(lines)-1], "127.0.0.1 ") {
		t.Errorf("GET %s: the confined nginx's access log has %d new lines for %s, want one from 127.0.0.1: %q", url, len(lines)-before, agent, lines)
	}
}

func expectRefused(t *testing.T, c *ct.Container, lan bool, url string) {
	t.Helper()
	get := c.HostCurl
	if lan {
		get = c.CurlFromLAN
	}
	// curl's exit 7: the connection was refused (nothing listens).
	if r := get(url); r.Code != 7 {
		t.Errorf("GET %s (lan=%v) was not refused: %s", url, lan, r)
	}
}

// procStatus returns fields of /proc/PID/status in the container.
func procStatus(c *ct.Container, pid int, keys ...string) map[string]string {
	b, _ := c.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		for _, want := range keys {
			if ok && k == want {
				out[k] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// reloadNamespace runs systemctl reload vpn-ns@NAME and waits until the
// given host:port addresses accept connections: the published sockets'
// start jobs are queued by the reload and run right after it (they are
// ordered after vpn-ns@, whose reload job is still running then).
func reloadNamespace(t *testing.T, c *ct.Container, name string, wait ...string) {
	t.Helper()
	mustRun(t, c, "systemctl", "reload", "vpn-ns@"+name+".service")
	for _, a := range wait {
		host, port, _ := strings.Cut(a, ":")
		if !c.WaitListen(host, port, 10*time.Second) {
			t.Errorf("nothing listens on %s after the reload:\n%s", a, c.HostListeners())
		}
	}
}

func installYAML(t *testing.T, c *ct.Container, w *ct.World, p ct.Peer, body string) {
	t.Helper()
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgpub", body)); err != nil {
		t.Fatal(err)
	}
}

// TestPublish: the Debian nginx confined and published with
// systemd-socket-proxyd on the host's localhost, then on the LAN; a
// reverse proxy on the host; the zero-copy path; the published UI while
// the tunnel is down; live reloads that change, remove and revive
// published ports; status and verify of the proxy.
func TestPublish(t *testing.T) {
	c, w := boot(t, "pubweb", "pubns")
	p := w.Peers["pubns"]
	if err := c.SetupLAN(); err != nil {
		t.Fatal(err)
	}
	unit(t, c, "fdserve.service", fdserve)
	installYAML(t, c, w, p, publishYAML("127.0.0.1:8080", true))
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "nginx.service")
	if !c.WaitActive("nginx.service", "active", 15*time.Second) {
		t.Fatalf("nginx not active: %s", c.Run("systemctl", "status", "nginx.service", "vpn-ns@pubns.service").Stdout)
	}
	pin := c.NetnsInode("/run/netns/pubns")
	sock, proxy := "vpn-publish-pubns-8080.socket", "vpn-publish-pubns-8080.service"
	if !c.WaitActive(sock, "active", 10*time.Second) {
		t.Fatalf("%s not active: %s", sock, c.Run("systemctl", "status", sock).Stdout)
	}
	uplink, err := c.StartCapture("publish")
	if err != nil {
		t.Fatal(err)
	}
	lanCap, err := c.StartCaptureFilter("publan", ct.LANHostIf, "not arp and not ip6")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("localhost", func(t *testing.T) {
		expectServed(t, c, false, "http://127.0.0.1:8080/", "vpnc-e2e-localhost")
		// nginx itself listens inside the namespace only.
		expectRefused(t, c, false, "http://127.0.0.1:80/")
		if got := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", c.MainPID("nginx.service"))); got != pin {
			t.Errorf("nginx runs in netns %s, want %s", got, pin)
		}
		// The host socket belongs to PID 1 (and the proxy it activated);
		// the proxy runs inside the namespace as a dynamic user without
		// capabilities.
		ls := c.HostListeners()
		if !regexp.MustCompile(`127\.0\.0\.1:8080 .*"systemd",pid=1,`).MatchString(ls) {
			t.Errorf("127.0.0.1:8080 is not PID 1's socket:\n%s", ls)
		}
		pid := c.MainPID(proxy)
		if pid == 0 {
			t.Fatalf("%s not running after a connection: %s", proxy, c.Run("systemctl", "status", proxy).Stdout)
		}
		if got := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); got != pin {
			t.Errorf("the proxy runs in netns %s, want %s", got, pin)
		}
		st := procStatus(c, pid, "Uid", "CapBnd", "CapEff", "NoNewPrivs")
		if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] == "0" || st["CapBnd"] != "0000000000000000" || st["CapEff"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
			t.Errorf("the proxy is not an unprivileged dynamic user: %v", st)
		}
	})

	t.Run("lan-loopback-only", func(t *testing.T) {
		expectRefused(t, c, true, "http://"+ct.LANHost+":8080/")
	})

	t.Run("reverse-proxy", func(t *testing.T) {
		if err := c.StartProxyNginx("127.0.0.1:8081", "http://localhost:8080"); err != nil {
			t.Fatal(err)
		}
		expectServed(t, c, false, "http://127.0.0.1:8081/", "vpnc-e2e-reverse")
		b, _ := c.ReadFile(ct.ProxyNginxDir + "/access.log")
		if !strings.Contains(string(b), `"vpnc-e2e-reverse"`) {
			t.Errorf("the host's reverse proxy did not log the request:\n%s", b)
		}
	})

	t.Run("zero-copy", func(t *testing.T) {
		r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090; cat <&3")
		if strings.TrimSpace(r.Stdout) != "netns:"+pin {
			t.Errorf("127.0.0.1:8090 answered %q (%s), want netns:%s", r.Stdout, r.Stderr, pin)
		}
		if got := c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", c.MainPID("fdserve.service"))); got != pin {
			t.Errorf("fdserve.service runs in netns %s, want %s", got, pin)
		}
		if ls := c.HostListeners(); !regexp.MustCompile(`127\.0\.0\.1:8090 .*"vpnc-probe"`).MatchString(ls) {
			t.Errorf("fdserve does not hold the host socket itself:\n%s", ls)
		}
		if got := strings.TrimSpace(c.Run("systemctl", "show", "-P", "LoadState", "vpn-publish-pubns-8090.service").Stdout); got != "not-found" {
			t.Errorf("the zero-copy entry has a proxy unit (%s)", got)
		}
	})

	t.Run("lan-wildcard-live", func(t *testing.T) {
		// The proxy is running (it holds the listener): the reload must
		// stop it before the socket can bind the new address.
		if c.Active(proxy) != "active" {
			t.Fatalf("precondition: %s not running", proxy)
		}
		fdPID, nginxPID := c.MainPID("fdserve.service"), c.MainPID("nginx.service")
		installYAML(t, c, w, p, publishYAML("0.0.0.0:8080", true))
		reload(t, c)
		reloadNamespace(t, c, "pubns", "127.0.0.1:8080")
		// The unchanged zero-copy entry and nginx are left alone.
		if c.MainPID("fdserve.service") != fdPID || c.MainPID("nginx.service") != nginxPID {
			t.Errorf("the reload restarted fdserve (PID %d → %d) or nginx (PID %d → %d)", fdPID, c.MainPID("fdserve.service"), nginxPID, c.MainPID("nginx.service"))
		}
		expectServed(t, c, true, "http://"+ct.LANHost+":8080/", "vpnc-e2e-lan")
		expectServed(t, c, false, "http://127.0.0.1:8080/", "vpnc-e2e-localhost2")
	})

	t.Run("only-tunnel-and-proxied", func(t *testing.T) {
		expectOpen(t, c, "nginx.service", true, "tcp", ct.SrvTunnel+":7")
		expectOpen(t, c, "nginx.service", false, "tcp", ct.HostUplink+":7")
		expectOpen(t, c, "nginx.service", false, "tcp", ct.LANHost+":8081")
		expectOpen(t, c, "nginx.service", false, "tcp", ct.LANPeer+":80")
		noLeaks(t, uplink)
		// On the LAN only the published port's own flow.
		var lan, other []string
		for _, l := range lanCap.Stop() {
			if strings.Contains(l, ct.LANHost+".8080") {
				lan = append(lan, l)
			} else {
				other = append(other, l)
			}
		}
		if len(lan) == 0 || len(other) > 0 {
			t.Errorf("LAN capture: %d packets of the published flow (want > 0), other packets:\n%s", len(lan), strings.Join(other, "\n"))
		}
	})

	t.Run("tunnel-down", func(t *testing.T) {
		pid0 := c.MainPID("nginx.service")
		mustRun(t, c, "systemctl", "stop", "vpn-wg@pubns.service")
		expectServed(t, c, false, "http://127.0.0.1:8080/", "vpnc-e2e-down")
		expectServed(t, c, true, "http://"+ct.LANHost+":8080/", "vpnc-e2e-down-lan")
		before := strings.Count(w.EchoLog(), "\n")
		if open, r := c.ProbeWith(ct.ProbeOpts{Unit: "nginx.service", NoStart: true}, "tcp", ct.SrvTunnel+":7"); open {
			t.Errorf("the provider is reachable with the tunnel stopped: %s", r)
		}
		if after := strings.Count(w.EchoLog(), "\n"); after != before {
			t.Errorf("the provider's echo saw %d connections while the tunnel was down", after-before)
		}
		if c.MainPID("nginx.service") != pid0 {
			t.Errorf("nginx restarted while the tunnel was down")
		}
		mustRun(t, c, "systemctl", "start", "vpn-wg@pubns.service")
		expectOpen(t, c, "nginx.service", true, "tcp", ct.SrvTunnel+":7")
	})

	t.Run("status-live-connections", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			mustRun(t, c, "systemd-run", "--quiet", "--collect", fmt.Sprintf("--unit=vpnc-hold-%d", i), "/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080; sleep 60")
		}
		mustRun(t, c, "systemd-run", "--quiet", "--collect", "--unit=vpnc-hold-lan", "ip", "netns", "exec", ct.LANNetns, "/bin/bash", "-c", "exec 3<>/dev/tcp/"+ct.LANHost+"/8080; sleep 60")
		deadline := time.Now().Add(10 * time.Second)
		for c.Established("sport = :8080") < 3 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		var rep struct {
			Namespaces []struct {
				Published []struct {
					Listen []struct {
						Address     string `json:"address"`
						Listening   bool   `json:"listening"`
						Connections int    `json:"connections"`
					} `json:"listen"`
				} `json:"published"`
			} `json:"namespaces"`
		}
		r := c.Run("vpn-confinement", "status", "--json", "pubns")
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || len(rep.Namespaces) != 1 {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		got := map[string]int{}
		for _, pb := range rep.Namespaces[0].Published {
			for _, l := range pb.Listen {
				got[l.Address] = l.Connections
				if !l.Listening {
					t.Errorf("status: %s not listening", l.Address)
				}
			}
		}
		if want := map[string]int{"0.0.0.0:8080": 3, "127.0.0.1:8090": 0}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("status connections %v, want %v\n%s", got, want, r.Stdout)
		}
		text := c.Run("vpn-confinement", "status", "pubns").Stdout
		for _, want := range []string{"published  0.0.0.0:8080 → port 80 in the namespace (proxy vpn-publish-pubns-8080.service", "3 connections", "127.0.0.1:8090 → port 8090, handed to fdserve.service"} {
			if !strings.Contains(text, want) {
				t.Errorf("status lacks %q:\n%s", want, text)
			}
		}
		t.Logf("status:\n%s", text)
		c.Run("systemctl", "stop", "vpnc-hold-0", "vpnc-hold-1", "vpnc-hold-lan")
	})

	t.Run("verify-proxy", func(t *testing.T) {
		c.HostCurl("http://127.0.0.1:8080/") // the proxy runs
		r := c.Run("vpn-confinement", "verify", proxy)
		if r.Code != 0 {
			t.Errorf("verify %s: %s", proxy, r)
		}
		for _, want := range []string{"namespace", "user", "capabilities", "ip-filter"} {
			if !regexp.MustCompile(`(?m)^PASS\s+` + want + `\s`).MatchString(r.Stdout) {
				t.Errorf("verify %s: no passing %s check:\n%s", proxy, want, r.Stdout)
			}
		}
		t.Logf("verify:\n%s", r.Stdout)
		for _, u := range []string{sock, "vpn-publish-pubns-8090.socket"} {
			r := c.Run("vpn-confinement", "verify", u)
			if r.Code != 0 || !strings.Contains(r.Stdout, "PASS  activates") || !strings.Contains(r.Stdout, "PASS  listening") {
				t.Errorf("verify %s: %s", u, r)
			}
			t.Logf("verify %s:\n%s", u, r.Stdout)
		}
	})

	t.Run("proxy-reaches-loopback-only", func(t *testing.T) {
		// A process with the proxy's settings reaches nginx on loopback
		// but not the provider through the tunnel; the same without the
		// IP filter does (so the filter is what holds).
		probe := func(omit []string, target string) bool {
			r := c.RunLikeUnit(proxy, omit, "/usr/local/bin/vpnc-probe", "-timeout", "1500ms", "tcp", target)
			return r.Code == 0 && strings.HasPrefix(r.Stdout, "OPEN")
		}
		noFilter := []string{"IPAddressDeny", "IPAddressAllow"}
		if !probe(nil, "127.0.0.1:80") {
			t.Errorf("like the proxy, nginx on 127.0.0.1:80 is not reachable")
		}
		if probe(nil, ct.SrvTunnel+":7") {
			t.Errorf("like the proxy, %s:7 through the tunnel is reachable", ct.SrvTunnel)
		}
		if !probe(noFilter, ct.SrvTunnel+":7") {
			t.Errorf("positive control: without the IP filter %s:7 is not reachable either", ct.SrvTunnel)
		}
	})

	t.Run("entry-removed", func(t *testing.T) {
		c.HostCurl("http://127.0.0.1:8080/")
		installYAML(t, c, w, p, "services:\n  - unit: nginx.service\n    allowRoot: true\n  - unit: fdserve.service\n")
		reload(t, c)
		// Measured (systemd 252): the sockets are "active" but not-found,
		// PID 1 has closed its listeners, and the running holders still
		// serve from their copies until the namespace reloads.
		if got := strings.TrimSpace(c.Run("systemctl", "show", "-P", "LoadState", sock).Stdout); got != "not-found" {
			t.Errorf("%s LoadState %s after its entry was removed", sock, got)
		}
		t.Logf("after daemon-reload: %s %s; listening:\n%s", sock, c.Active(sock), c.HostListeners())
		if r := c.HostCurl("http://127.0.0.1:8080/"); !strings.Contains(r.Stdout, nginxWelcome) {
			t.Errorf("measured behaviour changed: the running proxy no longer serves after its unit vanished: %s", r)
		}
		mustRun(t, c, "systemctl", "reload", "vpn-ns@pubns.service")
		for _, u := range []string{sock, proxy, "vpn-publish-pubns-8090.socket", "fdserve.service"} {
			if !c.WaitActive(u, "inactive", 10*time.Second) {
				t.Errorf("%s %s after the reload", u, c.Active(u))
			}
		}
		expectRefused(t, c, false, "http://127.0.0.1:8080/")
		expectRefused(t, c, true, "http://"+ct.LANHost+":8080/")
		if r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090"); r.Code == 0 {
			t.Errorf("127.0.0.1:8090 still answers after its entry was removed")
		}
		if c.Active("nginx.service") != "active" {
			t.Errorf("nginx.service %s", c.Active("nginx.service"))
		}
	})

	t.Run("invalid-then-fixed", func(t *testing.T) {
		installYAML(t, c, w, p, publishYAML("127.0.0.1:8080", true))
		reload(t, c)
		reloadNamespace(t, c, "pubns", "127.0.0.1:8080", "127.0.0.1:8090")
		expectServed(t, c, false, "http://127.0.0.1:8080/", "vpnc-e2e-back")
		mustRun(t, c, "systemctl", "stop", proxy) // no holder: PID 1's socket is the only listener
		// Invalid: the socket unit is gone, nothing listens, the
		// zero-copy target is blocked.
		installYAML(t, c, w, p, strings.Replace(publishYAML("127.0.0.1:8080", true), "    port: 80\n", "    port: 80\n    tpyo: 1\n", 1))
		reload(t, c)
		expectRefused(t, c, false, "http://127.0.0.1:8080/")
		if got := strings.TrimSpace(c.Run("systemctl", "show", "-P", "LoadState", sock).Stdout); got != "not-found" {
			t.Errorf("%s LoadState %s with its file invalid", sock, got)
		}
		mustRun(t, c, "systemctl", "stop", "fdserve.service")
		if r := c.Run("systemctl", "start", "fdserve.service"); r.Code == 0 {
			t.Errorf("fdserve.service (zero-copy target) started with its file invalid")
		}
		if r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090"); r.Code == 0 {
			t.Errorf("127.0.0.1:8090 answers with its file invalid")
		}
		// Fixed: the socket unit is back and "active" without listening
		// (measured) until the namespace reloads, which restarts it.
		installYAML(t, c, w, p, publishYAML("127.0.0.1:8080", true))
		reload(t, c)
		t.Logf("after the fix and daemon-reload: %s %s; listening:\n%s", sock, c.Active(sock), c.HostListeners())
		reloadNamespace(t, c, "pubns", "127.0.0.1:8080", "127.0.0.1:8090")
		expectServed(t, c, false, "http://127.0.0.1:8080/", "vpnc-e2e-fixed")
		r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090; cat <&3")
		if strings.TrimSpace(r.Stdout) != "netns:"+c.NetnsInode("/run/netns/pubns") {
			t.Errorf("127.0.0.1:8090 after the fix: %q %s", r.Stdout, r.Stderr)
		}
	})

	t.Run("namespace-stop-leaves-no-listener", func(t *testing.T) {
		c.HostCurl("http://127.0.0.1:8080/") // the proxy holds a listener
		// The entry vanishes without a reload, then the namespace stops:
		// no dependency reaches the not-found units any more.
		installYAML(t, c, w, p, "services:\n  - unit: nginx.service\n    allowRoot: true\n  - unit: fdserve.service\n")
		reload(t, c)
		mustRun(t, c, "systemctl", "stop", "vpn-ns@pubns.service")
		for _, u := range []string{sock, proxy, "fdserve.service", "nginx.service"} {
			if !c.WaitActive(u, "inactive", 10*time.Second) {
				t.Errorf("%s %s after the namespace stopped", u, c.Active(u))
			}
		}
		if ls := c.HostListeners(); strings.Contains(ls, ":8080 ") || strings.Contains(ls, ":8090 ") {
			t.Errorf("a published port still listens after the namespace stopped:\n%s", ls)
		}
	})
}
