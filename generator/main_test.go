package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// buildGenerator builds the real binary once per test run, the way
// `make` builds it, with the template dir the golden files expect.
func buildGenerator(t *testing.T, ldflags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vpn-confinement-generator")
	flags := append([]string{"-X github.com/vpn-confinement/vpn-confinement/internal/generator.DefaultUnitDir=/usr/lib/systemd/system"}, ldflags...)
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", strings.Join(flags, " "), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build generator: %v\n%s", err, out)
	}
	return bin
}

func runGenerator(t *testing.T, bin string, c *gentest.Case, args ...string) (stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-no-kmsg"}, args...)...)
	cmd.Env = append(os.Environ(),
		"VPN_CONFINEMENT_CONFIG_DIR="+c.ConfigDir,
		"VPN_CONFINEMENT_STATE_DIR="+c.StateDir,
		"VPN_CONFINEMENT_UNIT_PATH="+unitPath(c),
		"VPN_CONFINEMENT_PASSWD="+c.PasswdFile)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return errb.String(), code
}

func unitPath(c *gentest.Case) string {
	if c.UnitDir != "" {
		return c.UnitDir
	}
	return "/nonexistent"
}

// TestBinaryGolden runs the built binary in the 1-dir and 3-dir forms on
// every case: the tree must equal the in-process golden tree, and only the
// normal dir may be written.
func TestBinaryGolden(t *testing.T) {
	bin := buildGenerator(t)
	for _, name := range gentest.Cases(t) {
		t.Run(name, func(t *testing.T) {
			for _, form := range []string{"1dir", "3dir"} {
				c := gentest.Prepare(t, name)
				out := t.TempDir()
				args := []string{filepath.Join(out, "normal")}
				if form == "3dir" {
					args = append(args, filepath.Join(out, "early"), filepath.Join(out, "late"))
				}
				stderr, code := runGenerator(t, bin, c, args...)
				if code != 0 {
					t.Fatalf("%s: exit %d (a generator must not fail the boot)\n%s", form, code, stderr)
				}
				for _, d := range []string{"early", "late"} {
					if _, err := os.Stat(filepath.Join(out, d)); err == nil {
						t.Errorf("%s: wrote into the %s dir", form, d)
					}
				}
				got := gentest.ReadTree(t, filepath.Join(out, "normal"), c)
				saved := *testutil.Update
				*testutil.Update = false // the in-process test owns the goldens
				c.CompareTree(t, got)
				*testutil.Update = saved
			}
		})
	}
}

func TestEmptyAndMissingConfigDirExitZero(t *testing.T) {
	bin := buildGenerator(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "-no-kmsg", filepath.Join(out, "n"))
	cmd.Env = append(os.Environ(), "VPN_CONFINEMENT_CONFIG_DIR="+filepath.Join(out, "does-not-exist"))
	if b, err := cmd.CombinedOutput(); err != nil || len(b) != 0 {
		t.Fatalf("missing config dir: err=%v output=%q", err, b)
	}
}

func TestUsage(t *testing.T) {
	bin := buildGenerator(t)
	for _, args := range [][]string{{}, {"a", "b"}, {"a", "b", "c", "d"}} {
		if err := exec.Command(bin, args...).Run(); err == nil {
			t.Errorf("args %q: want usage error", args)
		}
	}
}

// TestDryRun prints instead of writing and exits 1 for invalid files.
func TestDryRun(t *testing.T) {
	bin := buildGenerator(t)
	c := gentest.Prepare(t, "11-invalid")
	cmd := exec.Command(bin, "-dry-run")
	cmd.Env = append(os.Environ(), "VPN_CONFINEMENT_CONFIG_DIR="+c.ConfigDir, "VPN_CONFINEMENT_UNIT_PATH="+unitPath(c))
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("dry-run with invalid file: err=%v", err)
	}
	if !strings.Contains(string(out), "==> radarr.service.d/50-vpn-confinement.conf <==") {
		t.Errorf("dry-run output lacks the block drop-in:\n%s", out)
	}
}

// TestUnreadableConfigDirFailsClosed: when the config dir cannot be read
// the generator still blocks the units recorded at the last good start.
func TestUnreadableConfigDirFailsClosed(t *testing.T) {
	bin := buildGenerator(t)
	tmp := t.TempDir()
	notADir := filepath.Join(tmp, "config")
	os.WriteFile(notADir, []byte("x"), 0o644)
	state := filepath.Join(tmp, "state")
	os.MkdirAll(state, 0o755)
	os.WriteFile(filepath.Join(state, "media.units"), []byte("qbittorrent.service\n"), 0o644)
	out := filepath.Join(tmp, "out")
	cmd := exec.Command(bin, "-no-kmsg", out)
	cmd.Env = append(os.Environ(), "VPN_CONFINEMENT_CONFIG_DIR="+notADir, "VPN_CONFINEMENT_STATE_DIR="+state)
	b, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("want a non-zero exit when the config dir is unreadable")
	}
	drop, rerr := os.ReadFile(filepath.Join(out, "qbittorrent.service.d", "50-vpn-confinement.conf"))
	if rerr != nil || !strings.Contains(string(drop), "AssertPathExists=/dev/null/vpn-confinement-config-invalid") {
		t.Errorf("recorded unit not blocked: %v\n%s\ngenerator said: %s", rerr, drop, b)
	}
}

// TestStraysAreLogged: a namespace file saved under a name the generator
// does not read (media.YAML, media.yaml.txt, media.conf) is logged at
// error priority, with the units it blocks (issue 10: they used to be
// ignored in silence); a backup copy is a warning.
func TestStraysAreLogged(t *testing.T) {
	bin := buildGenerator(t)
	c := gentest.Prepare(t, "15-strays")
	stderr, code := runGenerator(t, bin, c, t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	got := c.Normalize(stderr)
	for _, want := range []string{
		"error: /etc/vpn-confinement.d/torrent.YAML: not read: the extension must be lower-case; rename it to torrent.yaml; blocking its units until then: torrent.service\n",
		"error: /etc/vpn-confinement.d/web.yaml.txt: not read: only names ending in .yaml or .yml are read; rename it to web.yaml; blocking its units until then: web.service\n",
		"error: /etc/vpn-confinement.d/arr.conf: not read: namespace files must be named NAME.yaml; rename it to arr.yaml; blocking its units until then: conf.service\n",
		"/etc/vpn-confinement.d/media.yaml~: not read: a backup copy",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("generator log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "error: /etc/vpn-confinement.d/media.yaml~") {
		t.Errorf("a backup copy is logged as an error:\n%s", got)
	}
}
