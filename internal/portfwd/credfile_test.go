//go:build linux

package portfwd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func TestCredentialFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app-0"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  string
		k    plan.KeySource
		want string
	}{
		{"", plan.KeySource{File: "/etc/x", Credential: "app-0"}, "/etc/x"},
		{dir, plan.KeySource{File: "/etc/x", Credential: "app-0"}, filepath.Join(dir, "app-0")},
		// Set but empty (systemd 252 in the test container): the file.
		{dir, plan.KeySource{File: "/etc/x", Credential: "app-1"}, "/etc/x"},
		// A credential without a file: its path, so the error names it.
		{dir, plan.KeySource{Credential: "pia"}, filepath.Join(dir, "pia")},
		{dir, plan.KeySource{File: "/etc/x", Credential: "../app-0"}, "/etc/x"},
	} {
		t.Setenv("CREDENTIALS_DIRECTORY", c.env)
		if got := credentialFile(c.k); got != c.want {
			t.Errorf("CREDENTIALS_DIRECTORY=%q %+v: %s, want %s", c.env, c.k, got, c.want)
		}
	}
}
