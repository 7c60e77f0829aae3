// Package testutil holds test gates and golden-file helpers shared by the
// project's tests.
package testutil

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Update is set by `go test ... -update` and tells golden tests to rewrite
// their expected files instead of comparing.
var Update = flag.Bool("update", false, "rewrite golden files")

// RequireSandbox skips t unless it runs as root inside test/sandbox.sh, the
// only place where tests may create namespaces, links and nft tables.
func RequireSandbox(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (run via make test-root)")
	}
	if os.Getenv("VPNC_SANDBOX") != "1" {
		t.Skip("skipping: needs the throwaway sandbox (run via test/sandbox.sh or make test-root)")
	}
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Testdata returns a path below the top-level testdata directory.
func Testdata(elem ...string) string {
	return filepath.Join(append([]string{RepoRoot(), "testdata"}, elem...)...)
}
