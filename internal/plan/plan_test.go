package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadTrusted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: plans must be owned by root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "ns.json")
	n := &Namespace{Version: Version, Name: "ns"}
	b, _ := n.Marshal()
	if err := os.WriteFile(good, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrusted(good); err != nil {
		t.Fatalf("root-owned 0644 plan refused: %v", err)
	}
	for name, prep := range map[string]func(p string) error{
		"group-writable":  func(p string) error { return os.Chmod(p, 0o664) },
		"world-writable":  func(p string) error { return os.Chmod(p, 0o646) },
		"not root's":      func(p string) error { return os.Chown(p, 65534, 65534) },
		"symlink":         func(p string) error { os.Remove(p); return os.Symlink(good, p) },
		"dir not root's":  func(p string) error { return os.Chown(filepath.Dir(p), 65534, 0) },
		"dir world-write": func(p string) error { return os.Chmod(filepath.Dir(p), 0o777) },
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			os.Chmod(d, 0o755)
			p := filepath.Join(d, "ns.json")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := prep(p); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadTrusted(p); err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("accepted (err %v)", err)
			}
		})
	}
}
