package generator

import (
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/genout"
	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
)

// TestGolden runs every testdata/generator case in-process and compares
// the whole output tree (files, symlinks, diagnostics).
func TestGolden(t *testing.T) {
	for _, name := range gentest.Cases(t) {
		t.Run(name, func(t *testing.T) {
			c := gentest.Prepare(t, name)
			opts := Options{ConfigDir: c.ConfigDir, StateDir: c.StateDir, UnitPath: []string{}, UnitDir: "/usr/lib/systemd/system", PasswdFile: c.PasswdFile}
			if c.UnitDir != "" {
				opts.UnitPath = []string{c.UnitDir}
			}
			out, err := Generate(opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := genout.Write(dir, out.Files, out.Links); err != nil {
				t.Fatal(err)
			}
			diags := Diagnostics(out)
			got := gentest.ReadTree(t, dir, c)
			c.Compare(t, got, strings.Join(diags, "\n")+"\n")
		})
	}
}

// TestFallbackBlocksEverything: the fallback output blocks every unit of
// every file, valid or not, and every recorded unit.
func TestFallbackBlocksEverything(t *testing.T) {
	c := gentest.Prepare(t, "12-unparsable")
	out := Fallback(Options{ConfigDir: c.ConfigDir, StateDir: c.StateDir})
	for _, u := range []string{"transmission.service", "lidarr.service", "old-tool.service", "deleted-tool.service"} {
		if _, ok := out.Blocked[u]; !ok {
			t.Errorf("%s not blocked by the fallback (blocked: %v)", u, out.Blocked)
		}
	}
}
