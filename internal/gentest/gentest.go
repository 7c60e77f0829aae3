// Package gentest runs the generator's golden-tree cases under
// testdata/generator (shared by the in-process tests of internal/generator
// and the black-box tests of the generator binary).
//
// A case directory holds:
//
//	config/      the config dir; "@CONFIG_DIR@" in files is replaced by its real path
//	units/       optional fake unit search path (conflict and root checks)
//	state/       optional state records (units of each namespace's last good start)
//	expected/    the expected output tree, plus SYMLINKS ("path -> target" lines)
//	             and DIAGNOSTICS (what the generator reports), not generated files
//
// Paths of the temporary copy are rewritten to /etc/vpn-confinement.d in all
// output so expectations read like a real system.
package gentest

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// RealConfigDir is what temporary config paths are rewritten to.
const RealConfigDir = "/etc/vpn-confinement.d"

// Case is one prepared golden case.
type Case struct {
	Name      string
	Dir       string // testdata/generator/NAME
	ConfigDir string // temporary copy
	UnitDir   string // fake unit path ("" if none)
	StateDir  string
	// PasswdFile is the case's passwd, or "-" (none).
	PasswdFile string
}

// Cases lists the case directories.
func Cases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(testutil.Testdata("generator"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Prepare copies a case's inputs into a temp dir.
func Prepare(t *testing.T, name string) *Case {
	t.Helper()
	c := &Case{Name: name, Dir: testutil.Testdata("generator", name)}
	tmp := t.TempDir()
	c.ConfigDir = filepath.Join(tmp, "vpn-confinement.d")
	copyTree(t, filepath.Join(c.Dir, "config"), c.ConfigDir, c.ConfigDir)
	if _, err := os.Stat(filepath.Join(c.Dir, "units")); err == nil {
		c.UnitDir = filepath.Join(tmp, "units")
		copyTree(t, filepath.Join(c.Dir, "units"), c.UnitDir, c.ConfigDir)
	}
	// A fixed passwd (the case's own, or none) keeps the goldens
	// independent of the machine's users.
	c.PasswdFile = "-"
	if _, err := os.Stat(filepath.Join(c.Dir, "passwd")); err == nil {
		c.PasswdFile = filepath.Join(c.Dir, "passwd")
	}
	c.StateDir = filepath.Join(tmp, "state")
	if _, err := os.Stat(filepath.Join(c.Dir, "state")); err == nil {
		copyTree(t, filepath.Join(c.Dir, "state"), c.StateDir, c.ConfigDir)
	}
	return c
}

func copyTree(t *testing.T, src, dst, configDir string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return // an empty fixture dir: git does not keep empty directories
	}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), "@CONFIG_DIR@", configDir))
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Normalize rewrites the temporary config dir to RealConfigDir.
func (c *Case) Normalize(s string) string {
	if c.ConfigDir != "" {
		s = strings.ReplaceAll(s, c.ConfigDir, RealConfigDir)
	}
	if c.UnitDir != "" {
		s = strings.ReplaceAll(s, c.UnitDir, "/etc/systemd/system")
	}
	return s
}

// Tree is an output tree: regular files and symlinks by relative path.
type Tree struct {
	Files map[string]string
	Links map[string]string
}

// ReadTree reads a directory written by the generator.
func ReadTree(t *testing.T, dir string, c *Case) Tree {
	t.Helper()
	tr := Tree{Files: map[string]string{}, Links: map[string]string{}}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			tr.Links[rel] = target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tr.Files[rel] = c.Normalize(string(b))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return tr
}

// CompareTree diffs only the files and symlinks (not diagnostics).
func (c *Case) CompareTree(t *testing.T, got Tree) {
	t.Helper()
	exp := filepath.Join(c.Dir, "expected")
	want := ReadTree(t, exp, &Case{})
	wantLinks, _ := os.ReadFile(filepath.Join(exp, "SYMLINKS"))
	delete(want.Files, "SYMLINKS")
	delete(want.Files, "DIAGNOSTICS")
	if d := cmp.Diff(want.Files, got.Files); d != "" {
		t.Errorf("%s: tree mismatch (-want +got):\n%s", c.Name, d)
	}
	if d := cmp.Diff(string(wantLinks), linksText(got.Links)); d != "" {
		t.Errorf("%s: symlinks mismatch (-want +got):\n%s", c.Name, d)
	}
}

// Compare diffs got against the case's expected tree and diagnostics, or
// rewrites them with -update.
func (c *Case) Compare(t *testing.T, got Tree, diagnostics string) {
	t.Helper()
	exp := filepath.Join(c.Dir, "expected")
	diagnostics = c.Normalize(diagnostics)
	if *testutil.Update {
		os.RemoveAll(exp)
		for p, s := range got.Files {
			full := filepath.Join(exp, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(exp, 0o755); err != nil {
			t.Fatal(err)
		}
		writeMeta(t, filepath.Join(exp, "SYMLINKS"), linksText(got.Links))
		writeMeta(t, filepath.Join(exp, "DIAGNOSTICS"), diagnostics)
		return
	}
	want := ReadTree(t, exp, &Case{})
	wantLinks, _ := os.ReadFile(filepath.Join(exp, "SYMLINKS"))
	wantDiags, _ := os.ReadFile(filepath.Join(exp, "DIAGNOSTICS"))
	delete(want.Files, "SYMLINKS")
	delete(want.Files, "DIAGNOSTICS")
	if d := cmp.Diff(keys(want.Files), keys(got.Files)); d != "" {
		t.Errorf("%s: file list mismatch (-want +got):\n%s", c.Name, d)
	}
	for p, w := range want.Files {
		if g, ok := got.Files[p]; ok {
			if d := cmp.Diff(w, g); d != "" {
				t.Errorf("%s: %s mismatch (-want +got):\n%s", c.Name, p, d)
			}
		}
	}
	if d := cmp.Diff(string(wantLinks), linksText(got.Links)); d != "" {
		t.Errorf("%s: symlinks mismatch (-want +got):\n%s", c.Name, d)
	}
	if d := cmp.Diff(string(wantDiags), diagnostics); d != "" {
		t.Errorf("%s: diagnostics mismatch (-want +got):\n%s", c.Name, d)
	}
}

func writeMeta(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func linksText(m map[string]string) string {
	var lines []string
	for p, target := range m {
		lines = append(lines, p+" -> "+target+"\n")
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
