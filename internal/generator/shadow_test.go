package generator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// TestShadowedDropInStillBlocks: a drop-in named like ours in
// /etc/systemd/system/UNIT.d replaces ours, the block drop-in included,
// so the block is written under a second name as well (measured in the
// e2e container: without it the unit started unconfined).
func TestShadowedDropInStillBlocks(t *testing.T) {
	root := t.TempDir()
	var path []string
	for _, d := range unitfile.SystemPath {
		path = append(path, filepath.Join(root, d))
	}
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	etc := filepath.Join(root, "etc/systemd/system")
	write(filepath.Join(etc, "app.service"), "[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n")
	write(filepath.Join(etc, "other.service"), "[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n")
	cfg := filepath.Join(root, "cfg")
	write(filepath.Join(cfg, "ns.yaml"), `dns:
  servers: [10.64.0.1]
wireguard:
  privateKeyFile: /etc/keys/k
  addresses: [10.64.0.2/32]
  peers:
    - publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0]
services:
  - unit: app.service
  - unit: other.service
`)
	gen := func() *Output {
		out, err := Generate(Options{ConfigDir: cfg, UnitPath: path, StateDir: filepath.Join(root, "state"), PasswdFile: "-"})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := gen(); len(out.Blocked) != 0 || out.Files["app.service.d/"+config.BlockedDropInName] != nil {
		t.Fatalf("valid without the shadow: blocked %v", out.Blocked)
	}
	write(filepath.Join(etc, "app.service.d", config.DropInName), "[Service]\n")
	out := gen()
	first, second := out.Files["app.service.d/"+config.DropInName], out.Files["app.service.d/"+config.BlockedDropInName]
	if !strings.Contains(string(first), "AssertPathExists=") || string(second) != string(first) {
		t.Errorf("app.service: block drop-in %q, second copy %q", first, second)
	}
	if _, ok := out.Blocked["other.service"]; !ok || out.Files["other.service.d/"+config.BlockedDropInName] != nil {
		t.Errorf("other.service: blocked with the file, but needs no second copy: %v", out.Blocked)
	}
}
