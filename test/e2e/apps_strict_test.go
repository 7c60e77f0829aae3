package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// TestStrictProfile: the strict hardening profile with the real daemons.
// qBittorrent needs nothing more (its home is bound back into an empty
// /home), Transmission and Deluge get their state dirs from their presets
// (the whole file system is read-only otherwise), and nginx and lighttpd,
// as root services, need the capabilities the compiler's warning names
// (vpn-confinement.d(5), docs/apps.md).
func TestStrictProfile(t *testing.T) {
	all := []string{"sqbt", "sngx", "slig", "strm", "sdlg"}
	c, w := boot(t, "app-strict", all...)
	if err := w.StartTracker(); err != nil {
		t.Fatal(err)
	}
	mustRun(t, c, "useradd", "-m", "-d", "/home/qbt", "qbt")
	mustRun(t, c, "useradd", "-m", "-d", "/home/other", "other")
	if err := c.WriteFile("/var/www/html/vpnc.txt", []byte("served by lighttpd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	apps := map[string]*appWorld{}
	for i, ns := range all {
		apps[ns] = &appWorld{c: c, w: w, p: w.Peers[ns], ns: ns, ifc: fmt.Sprintf("wg%d", i)}
	}
	files := map[string]string{
		"sqbt": "publish:\n  - listen: 127.0.0.1:8080\nservices:\n  - unit: qbittorrent-nox@qbt.service\n    hardeningProfile: strict\n",
		"sngx": "publish:\n  - listen: 127.0.0.1:8081\n    port: 80\nservices:\n  - unit: nginx.service\n    allowRoot: true\n    hardeningProfile: strict\n    extraCapabilities: [CAP_CHOWN, CAP_DAC_OVERRIDE]\n",
		"slig": "publish:\n  - listen: 127.0.0.1:8082\n    port: 80\nservices:\n  - unit: lighttpd.service\n    allowRoot: true\n    hardeningProfile: strict\n    extraCapabilities: [CAP_KILL]\n",
		"strm": "publish:\n  - listen: 127.0.0.1:9091\nservices:\n  - unit: transmission-daemon.service\n    hardeningProfile: strict\n",
		"sdlg": "publish:\n  - listen: 127.0.0.1:8112\nservices:\n  - unit: deluged.service\n    hardeningProfile: strict\n  - unit: deluge-web.service\n    hardeningProfile: strict\n",
	}
	for _, ns := range all {
		if err := w.InstallNamespace(w.Peers[ns], w.NamespaceYAML(w.Peers[ns], apps[ns].tunnelIf(), files[ns])); err != nil {
			t.Fatal(err)
		}
	}
	if r := c.Run("/usr/local/bin/vpn-confinement", "validate", "--strict"); r.Code != 0 {
		t.Fatalf("validate --strict (no warning: the capabilities are given): %s", r)
	}
	reload(t, c)
	cp, err := c.StartCapture("strict")
	if err != nil {
		t.Fatal(err)
	}
	status := func(t *testing.T, unit, comm string) string {
		t.Helper()
		if !waitComm(c, unit, comm) {
			t.Fatalf("%s never ran %s", unit, comm)
		}
		b, _ := c.ReadFile(fmt.Sprintf("/proc/%d/status", c.MainPID(unit)))
		return string(b)
	}

	t.Run("qbittorrent", func(t *testing.T) {
		a := apps["sqbt"]
		const u = "qbittorrent-nox@qbt.service"
		a.start(t, u)
		a.inNamespace(t, u)
		a.listening(t, "tcp", 8080)
		// ProtectHome=tmpfs: an empty /home with only its own home in it.
		if r := c.Run("nsenter", "-t", fmt.Sprint(c.MainPID(u)), "-m", "ls", "-A", "/home"); strings.TrimSpace(r.Stdout) != "qbt" {
			t.Errorf("/home as qBittorrent sees it: %q, want only qbt", r.Stdout)
		}
		if st := status(t, u, "qbittorrent-nox"); !strings.Contains(st, "CapBnd:\t0000000000000000") || !strings.Contains(st, "Seccomp:\t2") {
			t.Errorf("strict qBittorrent: want no capabilities and a seccomp filter:\n%s", st)
		}
		login := func(t *testing.T) {
			t.Helper()
			deadline := time.Now().Add(60 * time.Second)
			for {
				body, code, _ := c.Curl("-c", "/tmp/sq.jar", "--data", "username=admin&password=adminadmin", "http://127.0.0.1:8080/api/v2/auth/login")
				if code == 200 && body == "Ok." {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("login: %d %q\n%s", code, body, c.Journal(u, 30))
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		login(t)
		if _, code, r := c.Curl("-b", "/tmp/sq.jar", "--data-urlencode", `json={"listen_port":41240,"random_port":false,"upnp":false}`, "http://127.0.0.1:8080/api/v2/app/setPreferences"); code != 200 {
			t.Fatalf("setPreferences: %d %s", code, r)
		}
		a.listening(t, "tcp", 41240)
		tor, path := a.writeTorrent(t, "strict")
		if _, code, r := c.Curl("-b", "/tmp/sq.jar", "-F", "torrents=@"+path, "http://127.0.0.1:8080/api/v2/torrents/add"); code != 200 {
			t.Fatalf("torrents/add: %d %s", code, r)
		}
		a.announced(t, "qBittorrent/", tor)
		mustRun(t, c, "systemctl", "restart", u)
		a.inNamespace(t, u)
		a.listening(t, "tcp", 8080)
		login(t)
		if body, _, _ := c.Curl("-b", "/tmp/sq.jar", "http://127.0.0.1:8080/api/v2/app/preferences"); !strings.Contains(body, `"listen_port":41240`) {
			t.Errorf("preferences after the restart: %s", body)
		}
		a.listening(t, "tcp", 41240)
	})

	web := func(t *testing.T, ns, unit, comm, url, want, capBnd string) {
		a := apps[ns]
		a.start(t, unit)
		a.inNamespace(t, unit)
		a.listening(t, "tcp", 80)
		get := func(t *testing.T) {
			t.Helper()
			if body, code, r := c.Curl(url); code != 200 || !strings.Contains(body, want) {
				t.Errorf("GET %s: %d %q %s\n%s", url, code, body, r.Stderr, c.Journal(unit, 20))
			}
		}
		get(t)
		if st := status(t, unit, comm); !strings.Contains(st, "CapBnd:\t"+capBnd) || !strings.Contains(st, "Seccomp:\t2") {
			t.Errorf("strict %s: want CapBnd %s and a seccomp filter:\n%s", unit, capBnd, st)
		}
		if r := c.Run("systemctl", "reload", unit); r.Code != 0 {
			t.Errorf("reload: %s\n%s", r, c.Journal(unit, 20))
		}
		for i := 0; i < 2; i++ {
			if r := c.Run("systemctl", "restart", unit); r.Code != 0 || !c.WaitActive(unit, "active", 30*time.Second) {
				t.Fatalf("restart %d: %s\n%s", i+1, r, c.Journal(unit, 30))
			}
			a.listening(t, "tcp", 80)
			get(t)
		}
		cannotChangeNetwork(t, a, ct.ProbeOpts{Unit: unit, Root: true})
	}
	// CHOWN DAC_OVERRIDE SETGID SETUID; KILL SETGID SETUID.
	t.Run("nginx", func(t *testing.T) {
		web(t, "sngx", "nginx.service", "nginx", "http://127.0.0.1:8081/", "Welcome to nginx", "00000000000000c3")
	})
	t.Run("lighttpd", func(t *testing.T) {
		web(t, "slig", "lighttpd.service", "lighttpd", "http://127.0.0.1:8082/vpnc.txt", "served by lighttpd", "00000000000000e0")
	})

	t.Run("transmission", func(t *testing.T) {
		a := apps["strm"]
		const u = "transmission-daemon.service"
		a.start(t, u)
		a.inNamespace(t, u)
		a.listening(t, "tcp", 9091)
		rpc := "http://127.0.0.1:9091/transmission/rpc"
		if out, code := transmissionRPC(t, c, rpc, `{"method":"session-set","arguments":{"peer-port":41241,"peer-port-random-on-start":false}}`); code != 200 || !strings.Contains(out, "success") {
			t.Fatalf("session-set: %d %s", code, out)
		}
		a.listening(t, "tcp", 41241)
		tor, _ := a.writeTorrent(t, "strm")
		if out, code := transmissionRPC(t, c, rpc, `{"method":"torrent-add","arguments":{"filename":"/srv/vpnc/strm.torrent"}}`); code != 200 || !strings.Contains(out, "success") {
			t.Fatalf("torrent-add: %d %s", code, out)
		}
		a.announced(t, "Transmission/", tor)
		mustRun(t, c, "systemctl", "restart", u)
		a.listening(t, "tcp", 9091)
		if out, _ := transmissionRPC(t, c, rpc, `{"method":"session-get","arguments":{"fields":["peer-port"]}}`); !strings.Contains(out, `"peer-port":41241`) {
			t.Errorf("after the restart: %s", out)
		}
		if j := c.Journal(u, 200); strings.Contains(j, "Read-only file system") {
			t.Errorf("Transmission could not write its state under strict:\n%s", j)
		}
	})

	t.Run("deluge", func(t *testing.T) {
		a := apps["sdlg"]
		a.start(t, "deluged.service", "deluge-web.service")
		a.inNamespace(t, "deluged.service")
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
					t.Fatalf("deluge-web does not connect to deluged")
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		connect(t)
		delugeRPC(t, c, "core.set_config", map[string]any{"random_port": false, "listen_ports": []int{41242, 41242}})
		a.listening(t, "tcp", 41242)
		deadline := time.Now().Add(60 * time.Second)
		for {
			b, _ := c.ReadFile("/var/lib/deluged/config/core.conf")
			if strings.Contains(string(b), "41242") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("core.conf never got the new port under strict:\n%s\n%s", b, c.Journal("deluged.service", 30))
			}
			time.Sleep(500 * time.Millisecond)
		}
		mustRun(t, c, "systemctl", "restart", "deluged.service")
		a.listening(t, "tcp", 58846)
		connect(t)
		if got := string(delugeRPC(t, c, "core.get_config_value", "listen_ports")); !strings.Contains(got, "41242") {
			t.Errorf("listen_ports after the restart: %s", got)
		}
		a.listening(t, "tcp", 41242)
	})
	noLeaks(t, cp)
}
