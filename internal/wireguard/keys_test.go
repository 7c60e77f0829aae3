package wireguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func genKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func TestLoadKeysSources(t *testing.T) {
	dir := t.TempDir()
	priv, psk, other := genKey(t), genKey(t), genKey(t)
	peerPub := genKey(t).PublicKey().String()

	writeFile(t, filepath.Join(dir, "priv.key"), priv.String()+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "psk.key"), "  "+psk.String()+"\r\n", 0o600)
	writeFile(t, filepath.Join(dir, "provider.conf"), fmt.Sprintf(
		"[Interface]\nPrivateKey = %s\nAddress = 10.64.0.2/32\n\n[Peer]\nPublicKey = %s\nPresharedKey = %s\nAllowedIPs = 0.0.0.0/0\nEndpoint = 192.0.2.1:51820\n",
		priv, peerPub, psk), 0o600)
	writeFile(t, filepath.Join(dir, "ns.yaml"), fmt.Sprintf(
		"dns: {servers: [10.64.0.1]}\nwireguard:\n  privateKey: %s\n  peers:\n    - publicKey: %s\n      presharedKey: %s\n", priv, peerPub, psk), 0o600)
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	writeFile(t, filepath.Join(creds, "wireguard-private-key"), priv.String(), 0o400)

	cases := []struct {
		name     string
		priv     plan.KeySource
		psk      *plan.KeySource
		credsDir string
		wantPSK  bool
	}{
		{name: "file", priv: plan.KeySource{File: filepath.Join(dir, "priv.key")},
			psk: &plan.KeySource{File: filepath.Join(dir, "psk.key")}, wantPSK: true},
		{name: "credential wins over file", priv: plan.KeySource{File: filepath.Join(dir, "other.key"), Credential: "wireguard-private-key"}, credsDir: creds},
		{name: "credential missing falls back to file", priv: plan.KeySource{File: filepath.Join(dir, "priv.key"), Credential: "nope"}, credsDir: creds},
		{name: "wg-quick", priv: plan.KeySource{WgQuickFile: filepath.Join(dir, "provider.conf"), Credential: "wireguard-wg-quick.conf"},
			psk: &plan.KeySource{WgQuickFile: filepath.Join(dir, "provider.conf")}, wantPSK: true},
		{name: "inline yaml", priv: plan.KeySource{InlineYAML: true}, psk: &plan.KeySource{InlineYAML: true}, wantPSK: true},
	}
	writeFile(t, filepath.Join(dir, "other.key"), other.String(), 0o600)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(CredentialsDirEnv, c.credsDir)
			n := &plan.Namespace{Name: "t", Source: filepath.Join(dir, "ns.yaml"), WireGuard: plan.WireGuard{
				PrivateKey: c.priv,
				Peers:      []plan.Peer{{PublicKey: peerPub, PresharedKey: c.psk}},
			}}
			var log bytes.Buffer
			k, err := LoadKeys(n, journal.NewWriter(&log, true))
			if err != nil {
				t.Fatal(err)
			}
			if k.Private.k != priv {
				t.Errorf("private key differs")
			}
			if c.wantPSK && (k.Preshared[0] == nil || k.Preshared[0].k != psk) {
				t.Errorf("preshared key differs")
			}
			if !c.wantPSK && k.Preshared[0] != nil {
				t.Errorf("unexpected preshared key")
			}
		})
	}
}

func TestLoadKeyErrorsNeverLeak(t *testing.T) {
	dir := t.TempDir()
	priv := genKey(t)
	almost := priv.String()[:43] + "A" // wrong padding: not a key, but close to one
	writeFile(t, filepath.Join(dir, "bad.key"), almost, 0o600)
	writeFile(t, filepath.Join(dir, "bad.yaml"), "wireguard:\n  privateKey: "+almost+"\n  peers: [\n", 0o600)
	writeFile(t, filepath.Join(dir, "short.yaml"), "wireguard:\n  privateKey: "+almost+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "bad.conf"), "[Interface]\nPrivateKey = "+almost+"\nBogus = 1\n", 0o600)
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	cases := []struct {
		name string
		src  plan.KeySource
		want string
	}{
		{"invalid key file", plan.KeySource{File: filepath.Join(dir, "bad.key")}, "does not hold a base64 WireGuard key"},
		{"yaml syntax", plan.KeySource{InlineYAML: true}, "invalid YAML"},
		{"wg-quick", plan.KeySource{WgQuickFile: filepath.Join(dir, "bad.conf")}, "parse wg-quick file"},
		{"missing", plan.KeySource{File: filepath.Join(dir, "missing")}, "no such file"},
		{"directory", plan.KeySource{File: filepath.Join(dir, "adir")}, "not a regular file"},
		{"device", plan.KeySource{File: "/dev/zero"}, "not a regular file"},
		{"nothing", plan.KeySource{}, "no key source"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := &plan.Namespace{Name: "t", Source: filepath.Join(dir, "bad.yaml"), WireGuard: plan.WireGuard{PrivateKey: c.src}}
			var log bytes.Buffer
			_, err := LoadKeys(n, journal.NewWriter(&log, true))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			for _, s := range []string{err.Error(), log.String()} {
				if strings.Contains(s, almost[:20]) || strings.Contains(s, priv.String()[:20]) {
					t.Errorf("key material in %q", s)
				}
			}
		})
	}
}

func TestLooseModeWarns(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	writeFile(t, p, genKey(t).String(), 0o644)
	var log bytes.Buffer
	n := &plan.Namespace{WireGuard: plan.WireGuard{PrivateKey: plan.KeySource{File: p}}}
	if _, err := LoadKeys(n, journal.NewWriter(&log, true)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "chmod 600") {
		t.Errorf("no warning about mode 0644: %q", log.String())
	}
}

func TestGenerateKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys", "sub")
	p := filepath.Join(dir, "wg.key")
	n := &plan.Namespace{WireGuard: plan.WireGuard{PrivateKey: plan.KeySource{File: p, Generate: true}}}
	var log bytes.Buffer
	k1, err := LoadKeys(n, journal.NewWriter(&log, true))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %04o, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o, want 0700", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	k2, err := LoadKeys(n, journal.NewWriter(&log, true))
	if err != nil {
		t.Fatal(err)
	}
	if k1.Private.k != k2.Private.k {
		t.Error("a second start generated a new key")
	}
	if strings.Contains(log.String(), k1.Private.k.String()) {
		t.Error("generated key logged")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	k := genKey(t)
	s := Secret{k: k}
	keys := &Keys{Private: s, Preshared: []*Secret{&s}}
	j, _ := json.Marshal(keys)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", keys, *keys, keys), string(j),
	} {
		if strings.Contains(out, k.String()) || strings.Contains(out, fmt.Sprintf("%x", k[:4])) {
			t.Errorf("key printed: %s", out)
		}
	}
	if s.PublicKey() != k.PublicKey() {
		t.Error("PublicKey differs")
	}
}
