package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestFirstHourMistakes: the mistakes of issue 10 that used to leave a
// service unconfined in silence, against the real systemd: a misnamed
// namespace file blocks its units, a unit-name typo is an error with a
// did-you-mean, and a namespace file removed while its service runs shows
// in status with what to do.
func TestFirstHourMistakes(t *testing.T) {
	a := bootApp(t, "app-mis", "misns")
	c := a.c
	cli := "/usr/local/bin/vpn-confinement"
	unit(t, c, "app.service", sleeper)

	t.Run("misnamed-file-blocks-its-units", func(t *testing.T) {
		for _, name := range []string{"media.YAML", "media.yaml.txt", "media.conf"} {
			path := "/etc/vpn-confinement.d/" + name
			if err := c.WriteFile(path, []byte(a.w.NamespaceYAML(a.p, "wg0", "services:\n  - unit: app.service\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			r := c.Run(cli, "validate")
			if r.Code != 1 || !strings.Contains(r.Stdout, path+": not read: ") || !strings.Contains(r.Stdout, "; blocking its units until then: app.service") {
				t.Errorf("validate with %s: %s", name, r)
			}
			reload(t, c)
			if r := c.Run("systemctl", "start", "app.service"); r.Code == 0 {
				t.Errorf("app.service started although its namespace file %s is not read: %s", name, r)
			}
			if d := c.Run("systemctl", "show", "-P", "Description", "app.service").Stdout; !strings.Contains(d, "BLOCKED by vpn-confinement") {
				t.Errorf("app.service with %s: description %q", name, d)
			}
			c.Run("rm", path)
		}
	})

	t.Run("unit-typo-did-you-mean", func(t *testing.T) {
		if err := a.w.InstallNamespace(a.p, a.w.NamespaceYAML(a.p, "wg0", "services:\n  - unit: qbitorrent.service\n")); err != nil {
			t.Fatal(err)
		}
		r := c.Run(cli, "validate")
		if want := "/etc/vpn-confinement.d/misns.yaml:13:5: services[0].unit: qbitorrent.service is not installed (not found in the unit search path) (did you mean an instance of the template qbittorrent-nox@.service, such as qbittorrent-nox@NAME.service?); if it will be installed later, add installedLater: true to this entry\n"; r.Code != 1 || !strings.Contains(r.Stdout, want) {
			t.Errorf("validate of a typo: want %q in:\n%s", want, r)
		}
	})

	t.Run("removed-file-while-running", func(t *testing.T) {
		if err := a.w.InstallNamespace(a.p, a.w.NamespaceYAML(a.p, "wg0", "services:\n  - unit: app.service\n")); err != nil {
			t.Fatal(err)
		}
		reload(t, c)
		c.Run("systemctl", "reset-failed", "app.service")
		a.start(t, "app.service")
		a.inNamespace(t, "app.service")
		mustRun(t, c, "rm", "/etc/vpn-confinement.d/"+a.ns+".yaml")
		reload(t, c)
		for _, args := range [][]string{{"status"}, {"status", a.ns}} {
			r := c.Run(append([]string{cli}, args...)...)
			for _, want := range []string{
				"without a file:\n    PROBLEM: namespace misns is running without a file (/etc/vpn-confinement.d/misns.yaml was removed): app.service run unconfined after their next restart",
				"app.service still run inside it, without their drop-in; to keep them confined restore /etc/vpn-confinement.d/misns.yaml, to end the confinement on purpose: systemctl stop app.service vpn-ns@misns.service",
			} {
				if r.Code != 1 || !strings.Contains(r.Stdout, want) {
					t.Errorf("%v: want exit 1 and %q:\n%s", args, want, r)
				}
			}
		}
		// Restarted, it is on the host's network, and status says so.
		mustRun(t, c, "systemctl", "restart", "app.service")
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := c.Run(cli, "status")
			if strings.Contains(r.Stdout, "app.service already run OUTSIDE the namespace, on the host's network") && r.Code == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status after the restart:\n%s", r)
			}
			time.Sleep(200 * time.Millisecond)
		}
		mustRun(t, c, "systemctl", "stop", "app.service", "vpn-ns@"+a.ns+".service")
		r := c.Run(cli, "status")
		if r.Code != 0 || !strings.Contains(r.Stdout, "note: namespace misns has no file any more and nothing of it runs; forget its record: rm /var/lib/vpn-confinement/misns.units") {
			t.Errorf("status once the namespace is stopped:\n%s", r)
		}
	})
}
