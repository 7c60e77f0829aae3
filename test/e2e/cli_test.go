package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// TestCLI runs the operator CLI against a real systemd with a real
// confined unit: validate, status, verify (a confined unit passes, a unit
// started outside the namespace fails), doctor, and run (an ad-hoc command
// confined through systemd-run).
func TestCLI(t *testing.T) {
	c, w := boot(t, "cli", "clins")
	p := w.Peers["clins"]
	unit(t, c, "app.service", sleeper)
	unit(t, c, "outside.service", sleeper)
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgcli", "services:\n  - unit: app.service\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "app.service", "outside.service")
	if !c.WaitActive("app.service", "active", 15*time.Second) {
		t.Fatal("app.service not active")
	}
	cli := "/usr/local/bin/vpn-confinement"

	t.Run("validate", func(t *testing.T) {
		if r := c.Run(cli, "validate"); r.Code != 0 {
			t.Errorf("validate of a valid dir: %s", r)
		}
		c.WriteFile("/etc/vpn-confinement.d/broken.yaml", []byte("dns:\n  mdoe: x\n"), 0o644)
		r := c.Run(cli, "validate", "--json")
		c.Run("rm", "/etc/vpn-confinement.d/broken.yaml")
		if r.Code != 1 || !strings.Contains(r.Stdout, `"valid": false`) && !strings.Contains(r.Stdout, `"valid":false`) {
			t.Errorf("validate with a broken file: %s", r)
		}
	})

	t.Run("status", func(t *testing.T) {
		// A handshake first, so status has something to show.
		c.Probe("app.service", "tcp", ct.SrvTunnel+":7")
		r := c.Run(cli, "status", "--json", "clins")
		var st any
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, r)
		}
		for _, want := range []string{"wgcli", "vpn_confinement", ct.SrvTunnel, "app.service", "userspace"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("status --json lacks %q:\n%s", want, r.Stdout)
			}
		}
		human := c.Run(cli, "status", "clins")
		if human.Code != 0 {
			t.Errorf("status of a healthy namespace: %s", human)
		}
	})

	t.Run("verify", func(t *testing.T) {
		if r := c.Run(cli, "verify", "app.service"); r.Code != 0 || strings.Contains(r.Stdout, "FAIL") {
			t.Errorf("verify of a confined unit:\n%s", r)
		}
		// A unit that is not confined at all, and a listed unit whose
		// process runs outside the namespace: both must fail.
		if r := c.Run(cli, "verify", "outside.service"); r.Code == 0 {
			t.Errorf("verify of an unconfined unit passed:\n%s", r)
		}
	})

	t.Run("doctor", func(t *testing.T) {
		r := c.Run(cli, "doctor")
		if !strings.Contains(r.Stdout, "userspace") || !strings.Contains(r.Stdout, "NOT enforced") {
			t.Errorf("doctor in the container:\n%s", r)
		}
		// A deliberately broken setup: a world-readable key.
		c.Run("chmod", "0644", "/etc/vpn-confinement.d/keys/clins.key")
		r = c.Run(cli, "doctor")
		c.Run("chmod", "0600", "/etc/vpn-confinement.d/keys/clins.key")
		if r.Code == 0 || !strings.Contains(r.Stdout, "clins.key") {
			t.Errorf("doctor did not flag a world-readable key:\n%s", r)
		}
	})

	t.Run("run", func(t *testing.T) {
		r := c.Run(cli, "run", "--pipe", "clins", "--", "/usr/local/bin/vpnc-probe", "tcp", ct.SrvTunnel+":7")
		if r.Code != 0 || !strings.Contains(r.Stdout, "OPEN") {
			t.Errorf("run through the tunnel: %s", r)
		}
		r = c.Run(cli, "run", "--pipe", "clins", "--", "/usr/local/bin/vpnc-probe", "-timeout", "1s", "tcp", ct.HostUplink+":7")
		if r.Code == 0 {
			t.Errorf("run reached the host's uplink: %s", r)
		}
		r = c.Run(cli, "run", "--pipe", "clins", "--", "/bin/cat", "/etc/resolv.conf")
		if !strings.Contains(r.Stdout, "nameserver "+ct.SrvTunnel) {
			t.Errorf("run sees resolv.conf: %s", r)
		}
	})
}

// TestInstallFileList installs into a DESTDIR tree and compares the file
// list with the expected one; uninstall leaves no file behind.
func TestInstallFileList(t *testing.T) {
	testutil.RequireSandbox(t)
	dest := t.TempDir()
	root := testutil.RepoRoot()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-s", "-C", root, "B=" + buildDir, "DESTDIR=" + dest, "PREFIX=/usr"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
	run("install-files")
	want := []string{
		"/etc/vpn-confinement.d/",
		"/usr/bin/vpn-confinement",
		"/usr/lib/systemd/system-generators/vpn-confinement-generator",
		"/usr/lib/systemd/system/vpn-ns@.service",
		"/usr/lib/systemd/system/vpn-pf@.service",
		"/usr/lib/systemd/system/vpn-pin@.service",
		"/usr/lib/systemd/system/vpn-wg@.service",
		"/usr/lib/vpn-confinement/vpn-confinement-netns",
		"/usr/lib/vpn-confinement/vpn-confinement-pin",
		"/usr/lib/vpn-confinement/vpn-confinement-portfwd",
		"/usr/lib/vpn-confinement/vpn-confinement-tripwire",
		"/usr/lib/vpn-confinement/vpn-confinement-wireguard",
		"/usr/share/bash-completion/completions/vpn-confinement",
		"/usr/share/man/man5/vpn-confinement.d.5",
		"/usr/share/man/man8/vpn-confinement-generator.8",
		"/usr/share/man/man8/vpn-confinement.8",
		"/usr/share/vpn-confinement/vpn-confinement.schema.json",
	}
	got := listFiles(t, dest)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The units must point at the installed helpers.
	b, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/vpn-ns@.service"))
	if !strings.Contains(string(b), "ExecStart=/usr/lib/vpn-confinement/vpn-confinement-netns up %i") {
		t.Errorf("vpn-ns@.service does not name the installed helper:\n%s", b)
	}
	run("uninstall")
	if left := listFiles(t, dest); len(left) != 1 { // the config dir stays
		t.Errorf("uninstall left: %v", left)
	}
}

func listFiles(t *testing.T, root string) []string {
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel := "/" + strings.TrimPrefix(p, root+"/")
		if fi.IsDir() {
			if entries, _ := os.ReadDir(p); len(entries) == 0 && strings.HasPrefix(rel, "/etc") {
				out = append(out, rel+"/")
			}
			return nil
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out
}

// TestDebInstall builds the Debian package (packaging/deb/build.sh), checks
// lintian reports no error, installs it into a fresh container with dpkg,
// and runs a confined service from the packaged files.
func TestDebInstall(t *testing.T) {
	testutil.RequireSandbox(t)
	for _, tool := range []string{"dpkg-deb", "lintian"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/run installs it)", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(testutil.RepoRoot(), "packaging", "deb", "build.sh"), "0.0.0~test", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build .deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("expected one .deb, got %v", debs)
	}
	if b, err := exec.Command("lintian", "--fail-on", "error", debs[0]).CombinedOutput(); err != nil {
		t.Errorf("lintian errors: %v\n%s", err, b)
	}
	c, err := ct.Start(filepath.Join(testutil.RepoRoot(), "test", "e2e"), "deb", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	deb, _ := os.ReadFile(debs[0])
	c.WriteFile("/tmp/vpn-confinement.deb", deb, 0o644)
	for _, tool := range []string{"vpnc-probe", "vpnc-testpeer"} {
		b, _ := os.ReadFile(filepath.Join(buildDir, tool))
		c.WriteFile("/usr/local/bin/"+tool, b, 0o755)
	}
	mustRun(t, c, "dpkg", "-i", "/tmp/vpn-confinement.deb")
	for _, f := range []string{"/usr/lib/systemd/system-generators/vpn-confinement-generator", "/usr/lib/systemd/system/vpn-ns@.service",
		"/usr/lib/vpn-confinement/vpn-confinement-wireguard", "/usr/bin/vpn-confinement"} {
		if r := c.Run("test", "-x", f); r.Code != 0 && !strings.HasSuffix(f, ".service") {
			t.Errorf("%s not installed executable", f)
		}
	}
	w, err := c.SetupWorld("debns")
	if err != nil {
		t.Fatal(err)
	}
	p := w.Peers["debns"]
	unit(t, c, "app.service", sleeper)
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgdeb", "services:\n  - unit: app.service\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "app.service")
	expectOpen(t, c, "app.service", true, "tcp", ct.SrvTunnel+":7")
	if r := c.Run("/usr/bin/vpn-confinement", "verify", "app.service"); r.Code != 0 {
		t.Errorf("verify from the package: %s", r)
	}
	mustRun(t, c, "dpkg", "-r", "vpn-confinement")
}
