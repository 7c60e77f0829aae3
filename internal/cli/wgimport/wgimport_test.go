package wgimport

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/validate"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/wgquick"
)

func provider(name string) string {
	return filepath.Join(testutil.RepoRoot(), "internal", "wgquick", "testdata", name)
}

// secrets returns every private and preshared key of a provider file, to
// check that none of them is ever printed or copied.
func secrets(t *testing.T, file string) []string {
	t.Helper()
	f, _, err := wgquick.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{f.Interface.PrivateKey.Value.Reveal()}
	for _, p := range f.Peers {
		if !p.PresharedKey.Value.IsZero() {
			out = append(out, p.PresharedKey.Value.Reveal())
		}
	}
	return out
}

func noSecrets(t *testing.T, file, what, text string) {
	t.Helper()
	for _, s := range secrets(t, file) {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a key from %s", what, file)
		}
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

var netipCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// viaConfigFile compiles a namespace that points wireguard.configFile at
// the provider file: the reference for what the import must mean.
func viaConfigFile(t *testing.T, file, ipv6 string, hostnames bool) *plan.Namespace {
	t.Helper()
	src := fmt.Sprintf("ipv6:\n  mode: %s\nwireguard:\n  configFile: %s\n", ipv6, file)
	if hostnames {
		src += fmt.Sprintf("  allowHostnameEndpoints: true\n  endpointRefreshSeconds: %d\n", HostnameRefreshSeconds)
	}
	src += "services:\n  - unit: app.service\n"
	r := config.CompileFile("/etc/vpn-confinement.d/ref.yaml", []byte(src), config.Env{})
	config.CompileAll([]*config.Result{r})
	if r.Plan == nil {
		t.Fatalf("reference compile of %s failed: %v", file, r.Diags.Errors())
	}
	return r.Plan
}

// comparable strips what legitimately differs between an import and the
// configFile reference: key sources, file names, interface name.
func comparable(n *plan.Namespace) *plan.Namespace {
	c := *n
	c.Name, c.Source, c.Services = "", "", nil
	c.WireGuard.PrivateKey = plan.KeySource{}
	c.WireGuard.Interface = ""
	c.WireGuard.Peers = append([]plan.Peer(nil), n.WireGuard.Peers...)
	for i := range c.WireGuard.Peers {
		if c.WireGuard.Peers[i].PresharedKey != nil {
			c.WireGuard.Peers[i].PresharedKey = &plan.KeySource{}
		}
	}
	return &c
}

// TestProviderFiles imports real-world-shaped files (IPv4-only with
// comments, CRLF with a BOM, dual-stack, several peers with a preshared key,
// a hostname endpoint and a search domain, wg-quick hooks) and checks that
// the result validates with the generator, means the same as pointing
// configFile at the provider file, keeps keys out of the YAML and output,
// and stores them 0600 in a 0700 directory.
func TestProviderFiles(t *testing.T) {
	for _, tc := range []struct {
		file      string
		opts      Options
		hostnames bool
		psks      int
		notes     []string
		yaml      []string // substrings of the namespace file
	}{
		{file: "proton.conf", yaml: []string{"servers:\n    - 10.2.0.1\n", "- 10.2.0.2/32", "endpoint: 146.70.86.2:51820", "mode: disable"}},
		{file: "proton-crlf.conf", yaml: []string{"servers:\n    - 10.2.0.1\n", "- 10.2.0.2/32"}},
		// A file ProtonVPN made with port forwarding on: natpmp is set up.
		{file: "proton-natpmp.conf", opts: Options{Name: "protonpf"}, notes: []string{"NAT-PMP (Port Forwarding) = on"}, yaml: []string{"portForwarding:\n  protocol: natpmp\n"}},
		{file: "mullvad.conf",
			notes: []string{"IPv6 left out (ipv6.mode: disable): fc00:bbbb:bbbb:bb01::5:2d6f/128, ::/0"},
			yaml:  []string{`# - "fc00:bbbb:bbbb:bb01::5:2d6f/128"   # IPv6: needs ipv6.mode: tunnel`, `# - "::/0"`, "The provider file also configures IPv6"}},
		// An IPv6 resolver ending in "::" must be quoted, or the file is not YAML.
		{file: "mullvad.conf", opts: Options{IPv6: "tunnel", Name: "v6dns", DNS: []string{"fd00::"}},
			yaml: []string{`- "fd00::"`}},
		{file: "mullvad.conf", opts: Options{IPv6: "tunnel", Name: "mullvad6"},
			yaml: []string{"mode: tunnel", "    - \"fc00:bbbb:bbbb:bb01::5:2d6f/128\"\n", `- "::/0"`}},
		{file: "ivpn.conf", hostnames: true, psks: 1,
			notes: []string{"ivpn.conf:13: endpoint nl3.wg.ivpn.net is a hostname"},
			yaml: []string{"search:\n    - ivpn.net", "mtu: 1412", "listenPort: 51820", "fwMark: 4660", "allowHostnameEndpoints: true",
				"presharedKeyFile: ", `endpoint: "[2a00:1678:2470:12::2]:53"`, "- 192.168.0.0/16", "persistentKeepalive: 25"}},
		{file: "hooks.conf", hostnames: true, opts: Options{DNS: []string{"10.8.0.1"}, Services: []string{"qbittorrent.service"}},
			notes: []string{"hooks.conf:4: Table is a wg-quick-only key", "hooks.conf:5: PostUp is a wg-quick-only key", "hooks.conf:6: PreDown", "hooks.conf:7: SaveConfig"},
			yaml:  []string{"Given with --dns", "- unit: qbittorrent.service"}},
	} {
		t.Run(tc.file+"/"+tc.opts.IPv6, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "vpn-confinement.d")
			o := tc.opts
			o.File, o.Dir, o.UnitPath = provider(tc.file), dir, []string{}
			res, err := Import(o)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(res.YAMLPath)
			if err != nil {
				t.Fatal(err)
			}
			y := string(b)
			for _, want := range tc.yaml {
				if !strings.Contains(y, want) {
					t.Errorf("namespace file lacks %q:\n%s", want, y)
				}
			}
			notes := strings.Join(res.Notes, "\n")
			for _, want := range tc.notes {
				if !strings.Contains(notes, want) {
					t.Errorf("notes lack %q:\n%s", want, notes)
				}
			}
			noSecrets(t, o.File, "namespace file", y)
			noSecrets(t, o.File, "notes", notes)

			// The generator agrees: valid, no errors.
			rep, err := validate.Run(validate.Options{Targets: []string{dir}, UnitPath: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Files) != 1 || !rep.Files[0].Valid || !res.Report.Files[0].Valid {
				t.Fatalf("imported file does not validate: %+v", rep.Files)
			}

			// Keys: the right bytes, 0600 files in a 0700 directory.
			f, _, _ := wgquick.ParseFile(o.File)
			key, _ := os.ReadFile(res.KeyPath)
			if string(key) != f.Interface.PrivateKey.Value.Reveal()+"\n" {
				t.Error("private key file does not hold the provider's key")
			}
			if m := mode(t, res.KeyPath); m != 0o600 {
				t.Errorf("key file mode %04o", m)
			}
			if m := mode(t, filepath.Join(dir, "keys")); m != 0o700 {
				t.Errorf("keys dir mode %04o", m)
			}
			if len(res.PSKPaths) != tc.psks {
				t.Errorf("%d preshared key files, want %d", len(res.PSKPaths), tc.psks)
			}
			for _, p := range res.PSKPaths {
				if m := mode(t, p); m != 0o600 {
					t.Errorf("%s mode %04o", p, m)
				}
			}

			// Same meaning as using the provider file directly.
			ipv6 := "disable"
			if o.IPv6 == "tunnel" {
				ipv6 = "tunnel"
			}
			if tc.opts.DNS == nil {
				got := compileFile(t, res.YAMLPath)
				want := viaConfigFile(t, o.File, ipv6, tc.hostnames)
				// The importer adds what the provider file asks for in a
				// comment (NAT-PMP); configFile: alone never enables it.
				if got.PortForwarding != nil && strings.Contains(strings.Join(res.Notes, "\n"), "NAT-PMP (Port Forwarding) = on") {
					got.PortForwarding = nil
				}
				if d := cmp.Diff(comparable(want), comparable(got), netipCmp); d != "" {
					t.Errorf("import differs from configFile: %s (-configFile +import):\n%s", tc.file, d)
				}
			}
		})
	}
}

func compileFile(t *testing.T, p string) *plan.Namespace {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r := config.CompileFile(p, b, config.Env{})
	config.CompileAll([]*config.Result{r})
	if r.Plan == nil {
		t.Fatalf("%s: %v", p, r.Diags.Errors())
	}
	return r.Plan
}

// TestCRLFSameAsLF: line endings and a byte order mark change nothing.
func TestCRLFSameAsLF(t *testing.T) {
	dir := t.TempDir()
	a, err := Import(Options{File: provider("proton.conf"), Name: "p", Dir: dir, UnitPath: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	b, err := Import(Options{File: provider("proton-crlf.conf"), Name: "p", Dir: dir2, UnitPath: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ya, _ := os.ReadFile(a.YAMLPath)
	yb, _ := os.ReadFile(b.YAMLPath)
	// Compare the YAML itself: comments name the source file and are
	// wrapped at a width, so their line breaks depend on the path length.
	norm := func(s []byte, d string) string {
		var lines []string
		for _, l := range strings.Split(string(s), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				lines = append(lines, l)
			}
		}
		return strings.NewReplacer(d, "DIR", "proton-crlf.conf", "X", "proton.conf", "X").Replace(strings.Join(lines, "\n"))
	}
	if d := cmp.Diff(norm(ya, dir), norm(yb, dir2)); d != "" {
		t.Errorf("CRLF import differs:\n%s", d)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"broken", Options{File: provider("broken.conf")}, "not a usable wg-quick file (19 problems)"},
		{"no interface", Options{File: provider("no-interface.conf")}, "no [Interface] section"},
		{"no DNS", Options{File: provider("hooks.conf")}, "has no DNS = line"},
		{"ipv6 tunnel without ipv6", Options{File: provider("proton.conf"), IPv6: "tunnel"}, "configures no IPv6"},
		{"bad name", Options{File: provider("proton.conf"), Name: "-x"}, "not a valid namespace name"},
		{"bad service", Options{File: provider("proton.conf"), Services: []string{"x.socket"}}, "not a service unit name"},
		{"bad dns", Options{File: provider("proton.conf"), DNS: []string{"example.com"}}, "not an IP address"},
		{"v6 dns without tunnel", Options{File: provider("proton.conf"), DNS: []string{"fd00::1"}}, "needs --ipv6 tunnel"},
		{"interface clash", Options{File: provider("proton.conf"), Name: "p2", Interface: "wg-taken"}, "would not validate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "interface clash" {
				if _, err := Import(Options{File: provider("mullvad.conf"), Name: "p1", Dir: dir, Interface: "wg-taken", UnitPath: []string{}}); err != nil {
					t.Fatal(err)
				}
			}
			o := tc.o
			o.Dir, o.UnitPath = dir, []string{}
			before, _ := os.ReadDir(dir)
			_, err := Import(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			noSecrets(t, o.File, "error", err.Error())
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) {
				t.Errorf("a refused import wrote files: %v -> %v", before, after)
			}
		})
	}
	var ie *Error
	_, err := Import(Options{File: provider("broken.conf"), Dir: dir})
	if !errors.As(err, &ie) || len(ie.Lines) != 19 || !strings.Contains(ie.Lines[0], "broken.conf:2: ") {
		t.Errorf("problems must be listed one per line, located: %v", err)
	}
}

// TestNoOverwrite: a second import of the same name changes nothing.
func TestNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	res, err := Import(Options{File: provider("proton.conf"), Dir: dir, UnitPath: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	y1, _ := os.ReadFile(res.YAMLPath)
	k1, _ := os.ReadFile(res.KeyPath)
	_, err = Import(Options{File: provider("mullvad.conf"), Name: "proton", Dir: dir, UnitPath: []string{}})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("err = %v", err)
	}
	// A stray key file alone also blocks (it might be someone's key).
	os.WriteFile(filepath.Join(dir, "keys", "other.key"), []byte("x"), 0o600)
	_, err = Import(Options{File: provider("mullvad.conf"), Name: "other", Dir: dir, UnitPath: []string{}})
	if err == nil || !strings.Contains(err.Error(), "other.key already exists") {
		t.Fatalf("err = %v", err)
	}
	// NAME.yml would make both files invalid (one namespace, two files).
	os.WriteFile(filepath.Join(dir, "third.yml"), []byte("{}"), 0o644)
	_, err = Import(Options{File: provider("mullvad.conf"), Name: "third", Dir: dir, UnitPath: []string{}})
	if err == nil || !strings.Contains(err.Error(), "third.yml already exists") {
		t.Fatalf("err = %v", err)
	}
	y2, _ := os.ReadFile(res.YAMLPath)
	k2, _ := os.ReadFile(res.KeyPath)
	if string(y1) != string(y2) || string(k1) != string(k2) {
		t.Error("existing files were changed")
	}
}

// TestSecondNamespaceGetsFreeInterface: interface names must be unique
// across files, so a second import picks wg1 and both stay valid.
func TestSecondNamespaceGetsFreeInterface(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"proton.conf", "mullvad.conf", "ivpn.conf"} {
		if _, err := Import(Options{File: provider(f), Dir: dir, UnitPath: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := validate.Run(validate.Options{Targets: []string{dir}, UnitPath: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ifaces := map[string]bool{}
	for _, f := range rep.Files {
		if !f.Valid {
			t.Errorf("%s invalid: %v", f.File, f.Errors)
		}
		ifaces[compileFile(t, f.File).WireGuard.Interface] = true
	}
	if len(ifaces) != 3 {
		t.Errorf("interfaces not distinct: %v", ifaces)
	}
}
