package wgimport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	testPub  = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	testPriv = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
)

// writeProvider writes a provider file with the given DNS = and Address =.
func writeProvider(t *testing.T, name, addr, dns, allowed string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	conf := "[Interface]\nPrivateKey = " + testPriv + "\nAddress = " + addr + "\nDNS = " + dns +
		"\n\n[Peer]\nPublicKey = " + testPub + "\nAllowedIPs = " + allowed + "\nEndpoint = 198.51.100.7:51820\n"
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 10: an IPv6 resolver ending in "::" in the provider's own DNS =
// line, imported with --ipv6 tunnel, used to be written unquoted (not
// YAML), and the error pointed into the file that was never written.
func TestIPv6ResolverEndingInColons(t *testing.T) {
	file := writeProvider(t, "v6.conf", "10.2.0.2/32, fd00:2::2/128", "fd00:2::, 10.2.0.1", "0.0.0.0/0, ::/0")
	dir := filepath.Join(t.TempDir(), "vpn-confinement.d")
	res, err := Import(Options{File: file, Dir: dir, IPv6: "tunnel", UnitPath: []string{}})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	y, _ := os.ReadFile(res.YAMLPath)
	if !strings.Contains(string(y), "    - \"fd00:2::\"\n") {
		t.Errorf("resolver not quoted:\n%s", y)
	}
	got := compileFile(t, res.YAMLPath)
	if d := cmp.Diff(comparable(viaConfigFile(t, file, "tunnel", false)), comparable(got), netipCmp...); d != "" {
		t.Errorf("import differs from configFile (-configFile +import):\n%s", d)
	}
}

// More than 3 resolvers: the C library uses 3, so both ways of using a
// provider file keep the first 3 and say which one is left out
// (configFile: a warning, import-wg-quick: a note and a comment), and
// both compile to the same resolvers.
func TestFourResolversSameBothWays(t *testing.T) {
	file := writeProvider(t, "four.conf", "10.2.0.2/32", "10.2.0.1, 10.2.0.2, 10.2.0.3, 10.2.0.4", "0.0.0.0/0")
	dir := filepath.Join(t.TempDir(), "vpn-confinement.d")
	res, err := Import(Options{File: file, Dir: dir, UnitPath: []string{}})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if want := "resolver 10.2.0.4 left out: the C library uses only the first 3"; !strings.Contains(strings.Join(res.Notes, "\n"), want) {
		t.Errorf("notes lack %q: %q", want, res.Notes)
	}
	y, _ := os.ReadFile(res.YAMLPath)
	if !strings.Contains(string(y), "# - 10.2.0.4") {
		t.Errorf("the left-out resolver is not shown as a comment:\n%s", y)
	}
	imported := compileFile(t, res.YAMLPath)
	ref := viaConfigFile(t, file, "disable", false)
	if d := cmp.Diff(ref.DNS, imported.DNS, netipCmp...); d != "" || len(imported.DNS.Servers) != 3 {
		t.Errorf("DNS differs (-configFile +import):\n%s", d)
	}
}

// --publish writes publish[].listen entries (the README's quick start
// publishes qBittorrent's web UI on http://localhost:8080 this way); an
// entry that would not validate writes nothing.
func TestPublishFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vpn-confinement.d")
	res, err := Import(Options{File: provider("proton.conf"), Name: "media", Dir: dir, UnitPath: []string{},
		Services: []string{"qbittorrent-nox@alice.service"}, Publish: []string{"127.0.0.1:8080", "8112"}})
	if err != nil {
		t.Fatal(err)
	}
	y, _ := os.ReadFile(res.YAMLPath)
	if !strings.Contains(string(y), "\npublish:\n  - listen: 127.0.0.1:8080\n  - listen: \"8112\"\n") && !strings.Contains(string(y), "\npublish:\n  - listen: 127.0.0.1:8080\n  - listen: 8112\n") {
		t.Errorf("publish not written:\n%s", y)
	}
	n := compileFile(t, res.YAMLPath)
	if len(n.Publish) != 2 || n.Publish[0].Listen[0] != "127.0.0.1:8080" || n.Publish[0].Port != 8080 || n.Publish[1].Port != 8112 {
		t.Errorf("publish plan: %+v", n.Publish)
	}
	dir2 := filepath.Join(t.TempDir(), "vpn-confinement.d")
	if _, err := Import(Options{File: provider("proton.conf"), Name: "bad", Dir: dir2, UnitPath: []string{}, Publish: []string{"127.0.0.1:99999"}}); err == nil {
		t.Error("an invalid --publish was accepted")
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 0 {
		t.Errorf("a refused import wrote %v", entries)
	}
}
