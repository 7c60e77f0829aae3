package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// webServer is one root web server (nginx, lighttpd) under allowRoot: its
// default site on port 80 published on the host's 127.0.0.1:8080, a
// reverse proxy on proxyPort to the provider's web server, published on
// the same host port.
type webServer struct {
	unit, ctName, ns string
	proxyPort        int
	// conf writes the proxy configuration into the container.
	conf func(c *ct.Container) error
	// page is a path on port 80 and what its body contains.
	page, pageBody string
}

func testWebServer(t *testing.T, s webServer) {
	a := bootApp(t, s.ctName, s.ns)
	c := a.c
	if err := s.conf(c); err != nil {
		t.Fatal(err)
	}
	a.install(t, fmt.Sprintf("publish:\n  - listen: 127.0.0.1:8080\n    port: 80\n  - listen: 127.0.0.1:%d\nservices:\n  - unit: %s\n    allowRoot: true\n", s.proxyPort, s.unit))
	a.start(t, s.unit)
	a.inNamespace(t, s.unit)
	a.listening(t, "tcp", 80)
	a.listening(t, "tcp", s.proxyPort)

	get := func(t *testing.T, url, want string) {
		t.Helper()
		body, code, r := c.Curl(url)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %q (want 200 with %q) %s\n%s", url, code, body, want, r.Stderr, c.Journal(s.unit, 20))
		}
	}

	t.Run("site-through-publish", func(t *testing.T) {
		get(t, "http://127.0.0.1:8080"+s.page, s.pageBody)
	})

	t.Run("reverse-proxy-through-the-tunnel", func(t *testing.T) {
		path := "/via-" + s.ns
		get(t, fmt.Sprintf("http://127.0.0.1:%d%s", s.proxyPort, path), "provider says hello: "+path)
		h, ok := a.w.WaitHit(30*time.Second, func(h ct.Hit) bool { return h.Path == path })
		if !ok {
			t.Fatalf("the provider's web server never saw %s: %+v", path, a.w.TrackerHits())
		}
		if h.Client != a.p.Address {
			t.Errorf("the provider saw the proxied request from %s, want the tunnel address %s", h.Client, a.p.Address)
		}
	})

	t.Run("reload-and-restarts", func(t *testing.T) {
		mustRun(t, c, "systemctl", "reload", s.unit)
		get(t, "http://127.0.0.1:8080"+s.page, s.pageBody)
		// Twice: the PID file under the read-only /run is bound from the
		// namespace's private dir, which systemd does not delete at stop.
		for i := 0; i < 2; i++ {
			pid := c.MainPID(s.unit)
			if r := c.Run("systemctl", "restart", s.unit); r.Code != 0 {
				t.Fatalf("restart %d: %s\n%s", i+1, r, c.Journal(s.unit, 30))
			}
			if !c.WaitActive(s.unit, "active", 30*time.Second) || c.MainPID(s.unit) == pid {
				t.Fatalf("restart %d: %s, PID %d (was %d)\n%s", i+1, c.Active(s.unit), c.MainPID(s.unit), pid, c.Journal(s.unit, 30))
			}
			a.inNamespace(t, s.unit)
			a.listening(t, "tcp", 80)
			get(t, "http://127.0.0.1:8080"+s.page, s.pageBody)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		// The root set of allowRoot as systemd applied it to the daemon.
		if !waitComm(c, s.unit, strings.TrimSuffix(s.unit, ".service")) {
			t.Fatalf("%s's main process never ran its binary", s.unit)
		}
		pid := c.MainPID(s.unit)
		st, _ := c.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if !strings.Contains(string(st), "CapBnd:\t00000000000404fb") {
			t.Errorf("%s's bounding set is not allowRoot's (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE SYS_CHROOT = 0x404fb):\n%s", s.unit, st)
		}
		cannotChangeNetwork(t, a, ct.ProbeOpts{Unit: s.unit, Root: true})
	})

	a.noLeaks(t)
}

// cannotChangeNetwork runs the network-changing commands a confined process
// might try, as the probe options say (root with the unit's set, or a
// dynamic user), and checks that each is refused by the kernel with EPERM,
// changes nothing, and that reading the namespace over netlink works.
func cannotChangeNetwork(t *testing.T, a *appWorld, o ct.ProbeOpts) {
	t.Helper()
	c := a.c
	before := c.InNetns(a.ns, "sh", "-c", "ip -d addr; ip route show table all; ip rule; ip -d link; nft list ruleset").Stdout
	// The probe has exactly the unit's bounding set and user.
	st, _ := c.ReadFile(fmt.Sprintf("/proc/%d/status", c.MainPID(o.Unit)))
	want := capLine(string(st))
	if r := c.RunConfined(o, "/bin/sh", "-c", "grep CapBnd /proc/self/status; id -u"); capLine(r.Stdout) != want || (strings.HasSuffix(strings.TrimSpace(r.Stdout), "\n0") != o.Root) {
		t.Fatalf("probe as %s has %q, the unit %q:\n%s", who(o), capLine(r.Stdout), want, r)
	}
	wg := a.tunnelIf()
	for _, tc := range []struct{ cmd, want string }{
		{"ip addr add 10.99.0.1/32 dev lo", "RTNETLINK answers: Operation not permitted"},
		{"ip route add 10.99.0.0/24 dev lo", "RTNETLINK answers: Operation not permitted"},
		{"ip route del default", "RTNETLINK answers: Operation not permitted"},
		{"ip link add vpncx0 type dummy", "RTNETLINK answers: Operation not permitted"},
		{"ip link set " + wg + " down", "RTNETLINK answers: Operation not permitted"},
		{"ip rule add from all lookup 99 pref 1", "RTNETLINK answers: Operation not permitted"},
		{"nft flush ruleset", "Error: Could not process rule: Operation not permitted"},
		{"nft add table inet vpncx", "Error: Could not process rule: Operation not permitted"},
		{"nft list ruleset", "cache initialization failed: Operation not permitted"},
		// The host's namespace cannot even be opened (no CAP_SYS_PTRACE
		// over PID 1), let alone entered (no CAP_SYS_ADMIN).
		{"nsenter --net=/proc/1/ns/net true", "nsenter: cannot open /proc/1/ns/net: Permission denied"},
	} {
		r := c.RunConfined(o, "/bin/sh", "-c", tc.cmd)
		if r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, tc.want) {
			t.Errorf("%q as %s: exit %d, want a failure with %q:\n%s", tc.cmd, who(o), r.Code, tc.want, r)
		}
	}
	// Reading works: AF_NETLINK route dumps are what libtorrent and aria2
	// need, and they change nothing.
	r := c.RunConfined(o, "/bin/sh", "-c", "ip -4 addr show dev "+wg+" && ip route show && ip link show")
	if r.Code != 0 || !strings.Contains(r.Stdout, a.p.Address) || !strings.Contains(r.Stdout, wg) {
		t.Errorf("route/address dumps as %s: %s", who(o), r)
	}
	if after := c.InNetns(a.ns, "sh", "-c", "ip -d addr; ip route show table all; ip rule; ip -d link; nft list ruleset").Stdout; after != before {
		t.Errorf("the namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// waitComm waits until unit's main process runs comm (a Type=simple unit
// is active before its exec, with systemd's own capabilities).
func waitComm(c *ct.Container, unit, comm string) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := c.ReadFile(fmt.Sprintf("/proc/%d/comm", c.MainPID(unit)))
		if strings.TrimSpace(string(b)) == comm {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func capLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "CapBnd:") {
			return l
		}
	}
	return ""
}

func who(o ct.ProbeOpts) string {
	if o.Root {
		return "root with " + o.Unit + "'s capabilities"
	}
	return "a dynamic user confined like " + o.Unit
}

// TestNginx: Debian's nginx.service (root master, www-data workers) with
// allowRoot: true; its default site and a reverse proxy to the provider.
func TestNginx(t *testing.T) {
	testWebServer(t, webServer{
		unit: "nginx.service", ctName: "app-ngx", ns: "ngxns", proxyPort: 8081,
		page: "/", pageBody: "Welcome to nginx",
		conf: func(c *ct.Container) error {
			return c.WriteFile("/etc/nginx/conf.d/vpnc-proxy.conf", []byte(fmt.Sprintf(
				"server {\n  listen 8081;\n  location / {\n    proxy_pass http://%s:%d;\n  }\n}\n", ct.SrvTunnel, ct.TrackerPort)), 0o644)
		},
	})
}

// TestLighttpd: Debian's lighttpd.service (root, then www-data) with
// allowRoot: true; a file of its docroot and mod_proxy to the provider.
func TestLighttpd(t *testing.T) {
	testWebServer(t, webServer{
		unit: "lighttpd.service", ctName: "app-lig", ns: "ligns", proxyPort: 8082,
		page: "/vpnc.txt", pageBody: "served by lighttpd",
		conf: func(c *ct.Container) error {
			if err := c.WriteFile("/var/www/html/vpnc.txt", []byte("served by lighttpd\n"), 0o644); err != nil {
				return err
			}
			return c.WriteFile("/etc/lighttpd/conf-enabled/99-vpnc-proxy.conf", []byte(fmt.Sprintf(
				"server.modules += ( \"mod_proxy\" )\n$SERVER[\"socket\"] == \":8082\" {\n  proxy.server = ( \"\" => ( ( \"host\" => \"%s\", \"port\" => %d ) ) )\n}\n",
				ct.SrvTunnel, ct.TrackerPort)), 0o644)
		},
	})
}

// TestDynamicUserCannotChangeNetwork: the same refusals for a
// capability-less dynamic user (the default for run and for probes).
func TestDynamicUserCannotChangeNetwork(t *testing.T) {
	a := bootApp(t, "app-dyn", "dynns")
	unit(t, a.c, "app.service", sleeper)
	a.install(t, "services:\n  - unit: app.service\n")
	a.start(t, "app.service")
	// Type=simple is active from the fork on: wait for the exec.
	if !waitComm(a.c, "app.service", "sleep") {
		t.Fatalf("app.service never ran sleep")
	}
	st, _ := a.c.ReadFile(fmt.Sprintf("/proc/%d/status", a.c.MainPID("app.service")))
	if !strings.Contains(string(st), "CapBnd:\t0000000000000000") {
		t.Errorf("a DynamicUser service keeps capabilities:\n%s", st)
	}
	cannotChangeNetwork(t, a, ct.ProbeOpts{Unit: "app.service"})
	a.noLeaks(t)
}

// TestAria2: aria2c run with `vpn-confinement run` (no unit): its RPC
// published on the host's 127.0.0.1:6800, a torrent announced to the
// provider's tracker, a download by host name (the provider's DNS through
// the tunnel: aria2's resolver needs AF_NETLINK).
func TestAria2(t *testing.T) {
	a := bootApp(t, "app-ar2", "ar2ns")
	c := a.c
	a.install(t, "publish:\n  - listen: 127.0.0.1:6800\n")
	mustRun(t, c, "systemctl", "start", "vpn-ns@"+a.ns+".service", "vpn-wg@"+a.ns+".service")
	tor, path := a.writeTorrent(t, "ar2")
	done := make(chan ct.Result, 1)
	go func() {
		done <- c.RunTimeout(5*time.Minute, "/usr/local/bin/vpn-confinement", "run", "--pipe", a.ns, "--",
			"aria2c", "--enable-rpc", "--rpc-listen-port=6800", "--listen-port=6881", "--dht-listen-port=6882",
			"--enable-dht=false", "--bt-enable-lpd=false", "--seed-time=0", "--dir=/tmp", path)
	}()
	a.listening(t, "tcp", 6800)
	a.listening(t, "tcp", 6881)

	jsonrpc := func(t *testing.T, method, params string) string {
		t.Helper()
		body, code, r := c.Curl("-d", `{"jsonrpc":"2.0","id":"t","method":"`+method+`","params":`+params+`}`, "http://127.0.0.1:6800/jsonrpc")
		if code != 200 || !strings.Contains(body, `"result"`) {
			t.Fatalf("aria2 %s through publish: %d %q %s", method, code, body, r.Stderr)
		}
		return body
	}

	t.Run("rpc-through-publish", func(t *testing.T) {
		if body := jsonrpc(t, "aria2.getVersion", "[]"); !strings.Contains(body, `"version":"1.`) {
			t.Errorf("getVersion: %s", body)
		}
	})

	t.Run("tracker", func(t *testing.T) {
		h := a.announced(t, "aria2/", tor)
		if !strings.Contains(h.Path, "port=6881") {
			t.Errorf("announce does not carry port 6881: %s", h.Path)
		}
	})

	t.Run("download-by-host-name", func(t *testing.T) {
		jsonrpc(t, "aria2.addUri", `[["http://tracker.test:6969/file.bin"]]`)
		h, ok := a.w.WaitHit(60*time.Second, func(h ct.Hit) bool { return h.Path == "/file.bin" && strings.Contains(h.UA, "aria2") })
		if !ok {
			t.Fatalf("aria2 never fetched http://tracker.test:6969/file.bin (resolved through the tunnel): %+v\nDNS log:\n%s", a.w.TrackerHits(), a.w.DNSLog())
		}
		if h.Client != a.p.Address || h.Server != ct.TrackerDNSAddr {
			t.Errorf("download from %s to %s, want from the tunnel address %s to %s", h.Client, h.Server, a.p.Address, ct.TrackerDNSAddr)
		}
		if !strings.Contains(a.w.DNSLog(), "tracker.test") {
			t.Errorf("the provider's resolver never saw tracker.test:\n%s", a.w.DNSLog())
		}
	})

	jsonrpc(t, "aria2.forceShutdown", "[]")
	select {
	case r := <-done:
		if strings.Contains(r.Stderr, "Failed") && !strings.Contains(r.Stderr, "exit") {
			t.Logf("run: %s", r)
		}
	case <-time.After(2 * time.Minute):
		t.Errorf("aria2c did not exit after aria2.forceShutdown")
	}
	a.noLeaks(t)
}
