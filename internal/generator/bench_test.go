package generator

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeFixture writes n namespace files with s services each (the P1 shape).
func writeFixture(tb testing.TB, dir string, n, s int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		var svcs string
		for j := 0; j < s; j++ {
			svcs += fmt.Sprintf("  - unit: app-%d-%d.service\n", i, j)
		}
		y := fmt.Sprintf("dns:\n  servers: [10.64.0.1]\npublishToHost:\n  tcp: [8080]\nwireguard:\n  interface: wg%d\n  privateKeyFile: /k/%d\n  addresses: [10.%d.%d.2/32]\n  peers:\n    - publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n      endpoint: 198.51.100.7:51820\n      allowedIPs: [0.0.0.0/0]\nservices:\n%s", i, i, 64+i/256%64, i%256, svcs)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ns%d.yaml", i)), []byte(y), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkGenerate measures the in-process compile of 100 namespaces × 10
// services (reading files, validating, rendering; no writing).
func BenchmarkGenerate(b *testing.B) {
	for _, c := range []struct{ n, s int }{{1, 1}, {100, 10}} {
		b.Run(fmt.Sprintf("%dx%d", c.n, c.s), func(b *testing.B) {
			dir := b.TempDir()
			writeFixture(b, dir, c.n, c.s)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Generate(Options{ConfigDir: dir, UnitPath: []string{}, StateDir: "/nonexistent"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
