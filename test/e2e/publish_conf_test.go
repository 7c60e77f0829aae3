package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// TestPublishConflicts: two files publishing one host port, bad listen
// values, a published port on an invalid file (its units blocked, no
// socket that could start anything), and doctor finding a port that an
// unconfined process on the host already listens on.
func TestPublishConflicts(t *testing.T) {
	c, w := boot(t, "pubconf", "pa", "pb", "pc", "pd")
	for _, u := range []string{"app-a.service", "app-b.service", "app-d.service"} {
		unit(t, c, u, sleeper)
	}
	unit(t, c, "zc.service", fdserve)
	install := func(peer, body string) {
		t.Helper()
		p := w.Peers[peer]
		if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wg"+peer, body)); err != nil {
			t.Fatal(err)
		}
	}
	validate := func(file string) ct.Result {
		return c.Run("vpn-confinement", "validate", "/etc/vpn-confinement.d/"+file)
	}

	t.Run("two-files-one-port", func(t *testing.T) {
		install("pa", "publish:\n  - listen: 127.0.0.1:8080\nservices:\n  - unit: app-a.service\n")
		install("pb", "publish:\n  - listen: 0.0.0.0:8080\nservices:\n  - unit: app-b.service\n")
		r := c.Run("vpn-confinement", "validate")
		out := r.Stdout + r.Stderr
		if r.Code == 0 || !strings.Contains(out, "/etc/vpn-confinement.d/pa.yaml") || !strings.Contains(out, "/etc/vpn-confinement.d/pb.yaml") ||
			!strings.Contains(out, "127.0.0.1:8080 is also published by /etc/vpn-confinement.d/pb.yaml (0.0.0.0:8080)") ||
			!strings.Contains(out, "0.0.0.0:8080 is also published by /etc/vpn-confinement.d/pa.yaml (127.0.0.1:8080)") {
			t.Errorf("validate does not name both files:\n%s", r)
		}
		t.Logf("validate:\n%s", out)
		reload(t, c)
		for _, u := range []string{"app-a.service", "app-b.service"} {
			if r := c.Run("systemctl", "start", u); r.Code == 0 {
				t.Errorf("%s started although its file publishes a taken port", u)
			}
			if st := c.Run("systemctl", "status", u).Stdout; !strings.Contains(st, "BLOCKED by vpn-confinement") {
				t.Errorf("%s status does not say why:\n%s", u, st)
			}
		}
		for _, u := range []string{"vpn-publish-pa-8080.socket", "vpn-publish-pb-8080.socket", "vpn-publish-pa-8080.service", "vpn-publish-pb-8080.service"} {
			if got := strings.TrimSpace(c.Run("systemctl", "show", "-P", "LoadState", u).Stdout); got != "not-found" {
				t.Errorf("%s is %s: the generator emitted a unit of a blocked file", u, got)
			}
		}
		expectRefused(t, c, false, "http://127.0.0.1:8080/")
		// The second file gone, the first is whole again.
		c.Run("rm", "/etc/vpn-confinement.d/pb.yaml")
		reload(t, c)
		mustRun(t, c, "systemctl", "start", "app-a.service")
		if !c.WaitListen("127.0.0.1", "8080", 10*time.Second) {
			t.Errorf("pa's published socket does not listen:\n%s", c.HostListeners())
		}
		mustRun(t, c, "systemctl", "stop", "vpn-ns@pa.service")
	})

	t.Run("bad-listen-values", func(t *testing.T) {
		for _, tc := range []struct{ entry, want string }{
			{"listen: \"127.0.0.1:80x\"", `"80x" is not a port number`},
			{"listen: \"127.0.0.1\"", "must be PORT, localhost:PORT, ADDRESS:PORT or [IPv6]:PORT"},
			{"listen: \"300.1.1.1:8080\"", "is not an IP address"},
			{"listen: 0", "port must be between 1 and 65535 (got 0)"},
			{"listen: 127.0.0.1:0", "port must be between 1 and 65535 (got 0)"},
			{"listen: 8081\n    port: 0", "publish[0].port: must be between 1 and 65535 (got 0)"},
		} {
			install("pc", "publish:\n  - "+tc.entry+"\nservices:\n  - unit: zc.service\n")
			r := validate("pc.yaml")
			if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, tc.want) {
				t.Errorf("validate %q: want %q:\n%s", tc.entry, tc.want, r)
			}
		}
	})

	t.Run("invalid-file-blocks-its-published-units", func(t *testing.T) {
		// Zero-copy entry on a file with a typo elsewhere: the target
		// is blocked and there is no socket that could hand it anything.
		install("pc", "publish:\n  - listen: 127.0.0.1:8095\n    unit: zc.service\nservices:\n  - unit: zc.service\n    hardeningProfil: strict\n")
		reload(t, c)
		if r := c.Run("systemctl", "start", "zc.service"); r.Code == 0 {
			t.Errorf("zc.service started although its file is invalid")
		}
		sock := "vpn-publish-pc-8095.socket"
		if got := strings.TrimSpace(c.Run("systemctl", "show", "-P", "LoadState", sock).Stdout); got != "not-found" {
			t.Errorf("%s is %s for an invalid file", sock, got)
		}
		if r := c.Run("systemctl", "start", sock); r.Code == 0 {
			t.Errorf("%s could be started", sock)
		}
		st := c.Run("systemctl", "status", sock)
		if !strings.Contains(st.Stdout+st.Stderr, "could not be found") {
			t.Errorf("systemctl status %s: %s", sock, st)
		}
		if r := c.Run("/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8095"); r.Code == 0 {
			t.Errorf("127.0.0.1:8095 accepts connections for an invalid file")
		}
		c.Run("rm", "/etc/vpn-confinement.d/pc.yaml")
		reload(t, c)
	})

	t.Run("doctor-port-in-use", func(t *testing.T) {
		// The app as it ran before it was confined: unconfined, on the
		// host, on the port the namespace now publishes.
		mustRun(t, c, "systemd-run", "--quiet", "--unit=foreign-web", "/usr/local/bin/vpnc-testpeer", "-tcp-echo", "127.0.0.1:8085")
		if !c.WaitListen("127.0.0.1", "8085", 10*time.Second) {
			t.Fatalf("the foreign listener does not listen")
		}
		install("pd", "publish:\n  - listen: 127.0.0.1:8085\nservices:\n  - unit: app-d.service\n")
		reload(t, c)
		r := c.Run("vpn-confinement", "doctor", "--no-probe")
		pid := c.MainPID("foreign-web.service")
		if r.Code == 0 || !strings.Contains(r.Stdout, "127.0.0.1:8085 (namespace pd) is already in use by vpnc-testpeer (PID "+strconv.Itoa(pid)+") listening on 127.0.0.1:8085") {
			t.Errorf("doctor does not find the port in use:\n%s", r)
		}
		t.Logf("doctor:\n%s", r.Stdout)
		// Starting the namespace: the socket cannot bind; status says so.
		c.Run("systemctl", "start", "app-d.service")
		if !c.WaitActive("vpn-publish-pd-8085.socket", "failed", 10*time.Second) {
			t.Errorf("vpn-publish-pd-8085.socket %s with the port taken", c.Active("vpn-publish-pd-8085.socket"))
		}
		if st := c.Run("vpn-confinement", "status", "pd").Stdout; !strings.Contains(st, "vpn-publish-pd-8085.socket failed: the published port is closed (is the address in use?") {
			t.Errorf("status does not report the failed socket:\n%s", st)
		}
		// Freed: the socket starts, doctor knows it as ours.
		mustRun(t, c, "systemctl", "stop", "foreign-web.service")
		mustRun(t, c, "systemctl", "restart", "vpn-publish-pd-8085.socket")
		r = c.Run("vpn-confinement", "doctor", "--no-probe")
		if !strings.Contains(r.Stdout, "127.0.0.1:8085 (vpn-publish-pd-8085.socket)") {
			t.Errorf("doctor after the port was freed:\n%s", r.Stdout)
		}
	})
}
