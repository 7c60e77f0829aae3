package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on every unit the
// generator touches, with the shipped templates rendered against the real
// helper binaries and the man pages installed where man(1) finds them.
// verify exits 0 on "ignoring" warnings, so any output at all is a failure.
func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	if _, err := exec.LookPath("go-md2man"); err != nil {
		t.Skip("go-md2man not installed (make installs it)")
	}
	root := testutil.RepoRoot()
	work := t.TempDir()
	libexec := filepath.Join(work, "libexec")
	for bin, pkg := range map[string]string{
		"vpn-confinement-netns": "./helpers/netns", "vpn-confinement-wireguard": "./helpers/wireguard", "vpn-confinement-pin": "./helpers/pin",
		"vpn-confinement-tripwire": "./helpers/tripwire", "vpn-confinement-portfwd": "./helpers/portfwd",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(libexec, bin), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", bin, err, out)
		}
	}
	tpl := filepath.Join(work, "templates")
	os.MkdirAll(tpl, 0o755)
	ins, _ := filepath.Glob(filepath.Join(root, "units", "*.in"))
	for _, in := range ins {
		b, _ := os.ReadFile(in)
		out := strings.ReplaceAll(string(b), "@LIBEXECDIR@", libexec)
		os.WriteFile(filepath.Join(tpl, strings.TrimSuffix(filepath.Base(in), ".in")), []byte(out), 0o644)
	}
	manDir := filepath.Join(work, "man")
	for _, page := range []string{"vpn-confinement.d.5", "vpn-confinement-generator.8"} {
		sec := "man" + page[len(page)-1:]
		os.MkdirAll(filepath.Join(manDir, sec), 0o755)
		cmd := exec.Command("go-md2man", "-in", filepath.Join(root, "man", page+".md"), "-out", filepath.Join(manDir, sec, page))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go-md2man %s: %v\n%s", page, err, out)
		}
	}

	bin := buildGenerator(t, "-X github.com/vpn-confinement/vpn-confinement/internal/units.LibexecDir="+libexec)
	for _, name := range gentest.Cases(t) {
		t.Run(name, func(t *testing.T) {
			c := gentest.Prepare(t, name)
			gen := filepath.Join(t.TempDir(), "gen")
			if stderr, code := runGenerator(t, bin, c, gen); code != 0 {
				t.Fatalf("generator: exit %d\n%s", code, stderr)
			}
			unitNames := map[string]bool{}
			entries, _ := os.ReadDir(gen)
			for _, e := range entries {
				n := strings.TrimSuffix(e.Name(), ".d")
				if strings.HasSuffix(n, ".service") || strings.HasSuffix(n, ".socket") {
					// Only units that exist: generated ones, instances of
					// our templates, installed ones (installedLater
					// entries are not there yet).
					if !e.IsDir() || strings.Contains(n, "@") || exists(c.UnitDir, n) {
						unitNames[n] = true
					}
				}
			}
			if len(unitNames) == 0 {
				return
			}
			var list []string
			for u := range unitNames {
				list = append(list, u)
			}
			sort.Strings(list)
			path := gen + ":" + tpl + ":"
			if c.UnitDir != "" {
				path = gen + ":" + tpl + ":" + c.UnitDir + ":"
			}
			cmd := exec.Command("systemd-analyze", append([]string{"verify"}, list...)...)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+path, "MANPATH="+manDir+":", "SYSTEMD_LOG_LEVEL=notice")
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: err=%v\n%s", strings.Join(list, " "), err, c.Normalize(string(out)))
			}
		})
	}
}

func exists(dir, name string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}
