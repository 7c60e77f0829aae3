package config

import (
	"os"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// TestEveryKeyDocumented fails when a YAML key is missing from
// vpn-confinement.d(5) (the Go version of podman's xref-quadlet-docs).
func TestEveryKeyDocumented(t *testing.T) {
	b, err := os.ReadFile(testutil.RepoRoot() + "/man/vpn-confinement.d.5.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	keys := SchemaKeys()
	if len(keys) < 40 {
		t.Fatalf("SchemaKeys returned only %d keys", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(page, "**"+k+"**") {
			t.Errorf("key %s is not documented in man/vpn-confinement.d.5.md (expected **%s**)", k, k)
		}
	}
}
