package e2e

// Real applications from Debian's packages, with their unmodified unit
// files, confined by a one-service namespace file of the test world's
// WireGuard provider. Each test checks that the daemon starts, opens its
// listen sockets inside the namespace (ss there), reaches the tracker or
// web server on the provider's side through the tunnel (the server logs the
// client's tunnel address), answers on its web UI / RPC as docs/apps.md
// says (through publish:, from the host's 127.0.0.1), keeps settings
// changed through its API across a restart, and that nothing leaves
// outside the tunnel (uplink capture with a positive control). What each
// app needs is in docs/apps.md; these tests are its evidence.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// appWorld is a booted container with the provider's tracker running, a
// namespace file for peer ns, and a capture of the uplink.
type appWorld struct {
	c   *ct.Container
	w   *ct.World
	p   ct.Peer
	ns  string
	cap *ct.Capture
	// ifc is the tunnel interface ("" for wg0).
	ifc string
}

func (a *appWorld) tunnelIf() string {
	if a.ifc == "" {
		return "wg0"
	}
	return a.ifc
}

// bootApp boots a container for one app test: the provider world with
// its tracker, client peer ns.
func bootApp(t *testing.T, name, ns string) *appWorld {
	t.Helper()
	c, w := boot(t, name, ns)
	if err := w.StartTracker(); err != nil {
		t.Fatal(err)
	}
	return &appWorld{c: c, w: w, p: w.Peers[ns], ns: ns}
}

// install writes the namespace file (extra: services, publish, ...),
// reloads systemd and starts the uplink capture.
func (a *appWorld) install(t *testing.T, extra string) {
	t.Helper()
	if err := a.w.InstallNamespace(a.p, a.w.NamespaceYAML(a.p, "wg0", extra)); err != nil {
		t.Fatal(err)
	}
	if r := a.c.Run("/usr/local/bin/vpn-confinement", "validate"); r.Code != 0 {
		t.Fatalf("validate: %s", r)
	}
	reload(t, a.c)
	cp, err := a.c.StartCapture("apps")
	if err != nil {
		t.Fatal(err)
	}
	a.cap = cp
}

// start starts units and waits until each is active.
func (a *appWorld) start(t *testing.T, units ...string) {
	t.Helper()
	mustRun(t, a.c, append([]string{"systemctl", "start"}, units...)...)
	for _, u := range units {
		if !a.c.WaitActive(u, "active", 60*time.Second) {
			t.Fatalf("%s is %s:\n%s", u, a.c.Active(u), a.c.Journal(u, 40))
		}
	}
}

// inNamespace checks that unit's main process is in the namespace.
func (a *appWorld) inNamespace(t *testing.T, unit string) {
	t.Helper()
	// A Type=simple unit is active from the fork on, before its process
	// joined the namespace: wait for it.
	want := a.c.NetnsInode("/run/netns/" + a.ns)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pid := a.c.MainPID(unit)
		got := a.c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid))
		if pid != 0 && got != "" && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s (PID %d) is in netns %q, the namespace is %q", unit, pid, got, want)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listening waits for proto/port inside the namespace.
func (a *appWorld) listening(t *testing.T, proto string, port int) {
	t.Helper()
	if !a.c.WaitListening(a.ns, proto, port, 60*time.Second) {
		t.Errorf("nothing listens on %s/%d in namespace %s:\n%s", proto, port, a.ns, a.c.Sockets(a.ns))
	}
}

// announced waits for a tracker request from ua with the torrent's info
// hash, and checks it came from the peer's tunnel address.
func (a *appWorld) announced(t *testing.T, ua string, tor ct.Torrent) ct.Hit {
	t.Helper()
	h, ok := a.w.WaitHit(90*time.Second, func(h ct.Hit) bool {
		return strings.HasPrefix(h.Path, "/announce") && strings.Contains(h.UA, ua)
	})
	if !ok {
		t.Fatalf("no announce from %s reached the tracker; it saw %+v", ua, a.w.TrackerHits())
	}
	if h.Client != a.p.Address {
		t.Errorf("the tracker saw %s's announce from %s, want the tunnel address %s", ua, h.Client, a.p.Address)
	}
	if !strings.Contains(strings.ToLower(h.Path), "info_hash=") {
		t.Errorf("announce without an info hash: %s", h.Path)
	}
	return h
}

// noLeaks ends the capture.
func (a *appWorld) noLeaks(t *testing.T) {
	t.Helper()
	noLeaks(t, a.cap)
}

// writeTorrent stores a torrent announcing to the provider's tracker in
// the container (world-readable, for clients running as any user).
func (a *appWorld) writeTorrent(t *testing.T, name string) (ct.Torrent, string) {
	t.Helper()
	tor := ct.MakeTorrent(name+".bin", []byte(strings.Repeat(name, 5000)), ct.TrackerURL())
	path := "/srv/vpnc/" + name + ".torrent"
	if err := a.c.WriteFile(path, tor.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	return tor, path
}

// TestQBittorrent: Debian's qbittorrent-nox@.service as user qbt (home
// /home/qbt), its WebUI published on the host's 127.0.0.1:8080.
func TestQBittorrent(t *testing.T) {
	a := bootApp(t, "app-qbt", "qbtns")
	c := a.c
	mustRun(t, c, "useradd", "-m", "-d", "/home/qbt", "qbt")
	const u = "qbittorrent-nox@qbt.service"
	// 18080 → 8080 shows qBittorrent's Host: check (the preset's note).
	a.install(t, "publish:\n  - listen: 127.0.0.1:8080\n  - listen: 127.0.0.1:18080\n    port: 8080\nservices:\n  - unit: "+u+"\n")
	a.start(t, u)
	a.inNamespace(t, u)
	a.listening(t, "tcp", 8080)

	web := "http://127.0.0.1:8080"
	jar := "/tmp/qbt.jar"
	login := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			body, code, r := c.Curl("-c", jar, "--data", "username=admin&password=adminadmin", web+"/api/v2/auth/login")
			if code == 200 && body == "Ok." {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("WebUI login through publish: %d %q %s\n%s", code, body, r, c.Journal(u, 30))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	login(t)

	t.Run("webui-through-publish", func(t *testing.T) {
		body, code, _ := c.Curl("-b", jar, web+"/api/v2/app/version")
		if code != 200 || !strings.HasPrefix(body, "v4.") {
			t.Errorf("app/version through publish: %d %q", code, body)
		}
		// Another host port in front of 8080: qBittorrent refuses the
		// Host: header's port (docs/apps.md, the preset's note).
		body, code, _ = c.Curl("--data", "username=admin&password=adminadmin", "http://127.0.0.1:18080/api/v2/auth/login")
		if code != 401 {
			t.Errorf("login through host port 18080: %d %q, want 401 (Host: port mismatch)", code, body)
		}
	})

	t.Run("torrent-port-and-tracker", func(t *testing.T) {
		prefs := `json={"listen_port":41234,"random_port":false,"upnp":false}`
		if body, code, r := c.Curl("-b", jar, "--data-urlencode", prefs, web+"/api/v2/app/setPreferences"); code != 200 {
			t.Fatalf("setPreferences: %d %q %s", code, body, r)
		}
		// libtorrent opens its port only with AF_NETLINK (it enumerates
		// the interfaces over it).
		a.listening(t, "tcp", 41234)
		a.listening(t, "udp", 41234)
		tor, path := a.writeTorrent(t, "qbt")
		if body, code, r := c.Curl("-b", jar, "-F", "torrents=@"+path, web+"/api/v2/torrents/add"); code != 200 {
			t.Fatalf("torrents/add: %d %q %s", code, body, r)
		}
		h := a.announced(t, "qBittorrent/", tor)
		if !strings.Contains(h.Path, "port=41234") {
			t.Errorf("announce does not carry the set port 41234: %s", h.Path)
		}
	})

	t.Run("settings-survive-restart", func(t *testing.T) {
		pid := c.MainPID(u)
		mustRun(t, c, "systemctl", "restart", u)
		if c.MainPID(u) == pid {
			t.Fatalf("%s kept PID %d across the restart", u, pid)
		}
		a.inNamespace(t, u)
		a.listening(t, "tcp", 8080)
		login(t)
		body, code, _ := c.Curl("-b", jar, web+"/api/v2/app/preferences")
		if code != 200 || !strings.Contains(body, `"listen_port":41234`) || !strings.Contains(body, `"upnp":false`) {
			t.Errorf("preferences after the restart: %d %s", code, body)
		}
		a.listening(t, "tcp", 41234)
	})

	a.noLeaks(t)
}

// transmissionRPC does one RPC call with the session-id dance (409 first)
// against url, as user transmission (Debian's default); it returns the
// body and the HTTP status of the call itself.
func transmissionRPC(t *testing.T, c *ct.Container, url, body string) (string, int) {
	t.Helper()
	if err := c.WriteFile("/tmp/rpc.json", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.Sh(`sid=$(curl -sS --max-time 20 -o /dev/null -D - -u transmission:transmission ` + url + ` | tr -d '\r' | sed -n 's/^X-Transmission-Session-Id: //ip')
curl -sS --max-time 20 -w '\n%{http_code}' -u transmission:transmission -H "X-Transmission-Session-Id: $sid" -d @/tmp/rpc.json ` + url)
	out := strings.TrimRight(r.Stdout, "\n")
	i := strings.LastIndex(out, "\n")
	var code int
	fmt.Sscan(out[i+1:], &code)
	if i < 0 {
		return "", code
	}
	return out[:i], code
}

// TestTransmission: Debian's transmission-daemon.service; RPC published on
// the host's 127.0.0.1:9091 and also open over the host link, where
// Transmission's rpc-whitelist refuses the host-link address until it is
// added (docs/apps.md).
func TestTransmission(t *testing.T) {
	a := bootApp(t, "app-trm", "trmns")
	c := a.c
	const u = "transmission-daemon.service"
	a.install(t, "publish:\n  - listen: 127.0.0.1:9091\npublishToHost:\n  tcp: [9091]\nservices:\n  - unit: "+u+"\n")
	a.start(t, u)
	a.inNamespace(t, u)
	a.listening(t, "tcp", 9091)
	a.listening(t, "tcp", 51413)
	rpc := "http://127.0.0.1:9091/transmission/rpc"
	call := func(t *testing.T, body string) string {
		t.Helper()
		out, code := transmissionRPC(t, c, rpc, body)
		if code != 200 || !strings.Contains(out, `"result":"success"`) {
			t.Fatalf("RPC %s through publish: %d %s\n%s", body, code, out, c.Journal(u, 20))
		}
		return out
	}

	t.Run("rpc-through-publish", func(t *testing.T) {
		out := call(t, `{"method":"session-get","arguments":{"fields":["rpc-version","version"]}}`)
		if !strings.Contains(out, `"version":"3.`) {
			t.Errorf("session-get: %s", out)
		}
	})

	t.Run("rpc-whitelist-over-host-link", func(t *testing.T) {
		nsAddr := hostLinkAddr(t, c, a.ns, "nsAddr")
		hostAddr := hostLinkAddr(t, c, a.ns, "hostAddr")
		link := "http://" + nsAddr + ":9091/transmission/rpc"
		// Debian's rpc-whitelist is 127.0.0.1: the host connects from its
		// host-link address and is refused.
		body, code, _ := c.Curl("-u", "transmission:transmission", link)
		if code != 403 || !strings.Contains(body, "Unauthorized IP Address") {
			t.Errorf("over the host link with Debian's whitelist: %d %q, want 403 Unauthorized IP Address", code, body)
		}
		// Stop, edit, start (the daemon rewrites settings.json when it exits).
		mustRun(t, c, "systemctl", "stop", u)
		const settings = "/etc/transmission-daemon/settings.json"
		b, err := c.ReadFile(settings)
		var m map[string]any
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			t.Fatalf("%s: %v", settings, err)
		}
		m["rpc-whitelist"] = "127.0.0.1," + hostAddr
		b, _ = json.MarshalIndent(m, "", "    ")
		if err := c.WriteFile(settings, b, 0o600); err != nil {
			t.Fatal(err)
		}
		a.start(t, u)
		a.listening(t, "tcp", 9091)
		if out, code := transmissionRPC(t, c, link, `{"method":"session-get","arguments":{"fields":["rpc-version"]}}`); code != 200 || !strings.Contains(out, `"rpc-version":`) {
			t.Errorf("over the host link with %s whitelisted: %d %s", hostAddr, code, out)
		}
	})

	t.Run("peer-port-and-tracker", func(t *testing.T) {
		call(t, `{"method":"session-set","arguments":{"peer-port":41235,"peer-port-random-on-start":false,"port-forwarding-enabled":false}}`)
		a.listening(t, "tcp", 41235)
		tor, _ := a.writeTorrent(t, "trm")
		call(t, `{"method":"torrent-add","arguments":{"metainfo":"`+base64.StdEncoding.EncodeToString(tor.Data)+`"}}`)
		h := a.announced(t, "Transmission/", tor)
		if !strings.Contains(h.Path, "port=41235") {
			t.Errorf("announce does not carry the set port 41235: %s", h.Path)
		}
	})

	t.Run("settings-survive-restart", func(t *testing.T) {
		pid := c.MainPID(u)
		mustRun(t, c, "systemctl", "restart", u)
		if c.MainPID(u) == pid {
			t.Fatalf("%s kept PID %d across the restart", u, pid)
		}
		a.inNamespace(t, u)
		a.listening(t, "tcp", 9091)
		out := call(t, `{"method":"session-get","arguments":{"fields":["peer-port","port-forwarding-enabled"]}}`)
		if !strings.Contains(out, `"peer-port":41235`) {
			t.Errorf("after the restart: %s (the preset makes /etc/transmission-daemon writable)", out)
		}
		a.listening(t, "tcp", 41235)
		a.listening(t, "udp", 41235)
		if j := c.Run("journalctl", "--no-pager", "-o", "cat", "-u", u).Stdout; strings.Contains(j, "Read-only file system") {
			t.Errorf("transmission could not save its settings:\n%s", j)
		}
	})

	a.noLeaks(t)
}

// hostLinkAddr reads the host link's nsAddr or hostAddr from the plan.
func hostLinkAddr(t *testing.T, c *ct.Container, ns, key string) string {
	t.Helper()
	b, err := c.ReadFile("/run/systemd/generator/vpn-confinement/" + ns + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		HostLink map[string]string `json:"hostLink"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.HostLink[key] == "" {
		t.Fatalf("plan has no hostLink.%s (%v):\n%s", key, err, b)
	}
	return p.HostLink[key]
}

// delugeRPC is deluge-web's JSON-RPC (POST /json with a cookie jar); it
// returns the result member, failing on an error member.
func delugeRPC(t *testing.T, c *ct.Container, method string, params ...any) json.RawMessage {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"method": method, "params": append([]any{}, params...), "id": 1})
	if err := c.WriteFile("/tmp/deluge.json", req, 0o644); err != nil {
		t.Fatal(err)
	}
	body, code, r := c.Curl("-c", "/tmp/deluge.jar", "-b", "/tmp/deluge.jar", "-H", "Content-Type: application/json", "-d", "@/tmp/deluge.json", "http://127.0.0.1:8112/json")
	var resp struct {
		Result json.RawMessage
		Error  *struct {
			Message string
			Code    int
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &resp) != nil || resp.Error != nil {
		t.Fatalf("deluge %s through publish: %d %q %s", method, code, body, r.Stderr)
	}
	return resp.Result
}

// TestDeluge: Debian's deluged.service and deluge-web.service confined in
// the same namespace (deluge-web reaches deluged on the namespace's
// 127.0.0.1:58846), the web UI published on the host's 127.0.0.1:8112.
func TestDeluge(t *testing.T) {
	a := bootApp(t, "app-dlg", "dlgns")
	c := a.c
	a.install(t, "publish:\n  - listen: 127.0.0.1:8112\nservices:\n  - unit: deluged.service\n  - unit: deluge-web.service\n")
	a.start(t, "deluged.service", "deluge-web.service")
	a.inNamespace(t, "deluged.service")
	a.inNamespace(t, "deluge-web.service")
	a.listening(t, "tcp", 58846)
	a.listening(t, "tcp", 8112)

	connect := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for string(delugeRPC(t, c, "auth.login", "deluge")) != "true" {
			if time.Now().After(deadline) {
				t.Fatal("deluge-web refuses the default password")
			}
			time.Sleep(500 * time.Millisecond)
		}
		var hosts [][]any
		if err := json.Unmarshal(delugeRPC(t, c, "web.get_hosts"), &hosts); err != nil || len(hosts) == 0 {
			t.Fatalf("web.get_hosts: %v %v", hosts, err)
		}
		for string(delugeRPC(t, c, "web.connected")) != "true" {
			delugeRPC(t, c, "web.connect", hosts[0][0])
			if time.Now().After(deadline) {
				t.Fatalf("deluge-web does not connect to deluged at %v", hosts[0])
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	connect(t)

	t.Run("listen-port-and-tracker", func(t *testing.T) {
		delugeRPC(t, c, "core.set_config", map[string]any{"random_port": false, "listen_ports": []int{41237, 41237}, "upnp": false, "natpmp": false})
		a.listening(t, "tcp", 41237)
		if got := string(delugeRPC(t, c, "core.get_listen_port")); got != "41237" {
			t.Errorf("core.get_listen_port = %s, want 41237", got)
		}
		tor, _ := a.writeTorrent(t, "dlg")
		delugeRPC(t, c, "core.add_torrent_file", "dlg.torrent", base64.StdEncoding.EncodeToString(tor.Data), map[string]any{})
		h := a.announced(t, "Deluge/", tor)
		if !strings.Contains(h.Path, "port=41237") {
			t.Errorf("announce does not carry the set port 41237: %s", h.Path)
		}
	})

	t.Run("settings-survive-restart", func(t *testing.T) {
		// Deluge writes core.conf a moment after set_config.
		deadline := time.Now().Add(60 * time.Second)
		for {
			b, _ := c.ReadFile("/var/lib/deluged/config/core.conf")
			if strings.Contains(string(b), "41237") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("core.conf never got the new port:\n%s", b)
			}
			time.Sleep(500 * time.Millisecond)
		}
		pid := c.MainPID("deluged.service")
		mustRun(t, c, "systemctl", "restart", "deluged.service")
		if c.MainPID("deluged.service") == pid {
			t.Fatalf("deluged kept PID %d across the restart", pid)
		}
		a.inNamespace(t, "deluged.service")
		a.listening(t, "tcp", 58846)
		connect(t)
		if got := string(delugeRPC(t, c, "core.get_config_value", "listen_ports")); got != "[41237, 41237]" && got != "[41237,41237]" {
			t.Errorf("listen_ports after the restart: %s", got)
		}
		a.listening(t, "tcp", 41237)
	})

	a.noLeaks(t)
}
