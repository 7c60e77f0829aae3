package wireguard

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wgquick"
)

// Secret is a WireGuard private or preshared key. wgtypes.Key prints its
// base64 text from String(), so a stray %v of a wgtypes.Config or key would
// put it into the journal; every way of printing a Secret yields "(hidden)".
type Secret struct{ k wgtypes.Key }

const hidden = "(hidden)"

func (s Secret) String() string                { return hidden }
func (s Secret) GoString() string              { return hidden }
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, hidden) }

// MarshalText keeps the key out of JSON, YAML and slog output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(hidden), nil }

// PublicKey derives the public key (not secret) from a private key.
func (s Secret) PublicKey() wgtypes.Key { return s.k.PublicKey() }

// Keys is the key material of one tunnel, loaded at run time only.
type Keys struct {
	Private Secret
	// Preshared is parallel to plan.WireGuard.Peers; nil means none.
	Preshared []*Secret
}

// Clear wipes the key material from memory.
func (k *Keys) Clear() {
	if k == nil {
		return
	}
	clear(k.Private.k[:])
	for _, p := range k.Preshared {
		if p != nil {
			clear(p.k[:])
		}
	}
}

// CredentialsDirEnv is where systemd tells a service its credential store.
const CredentialsDirEnv = "CREDENTIALS_DIRECTORY"

// maxKeyFile bounds a key file read: a key is 45 bytes, the limit only stops
// a wrong path (a device, a log) from being read whole.
const maxKeyFile = 4096

// LoadKeys reads the private key and every preshared key of n.
func LoadKeys(n *plan.Namespace, log *journal.Logger) (*Keys, error) {
	priv, err := loadKey(n, n.WireGuard.PrivateKey, keyRef{}, log)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	k := &Keys{Private: priv, Preshared: make([]*Secret, len(n.WireGuard.Peers))}
	for i, p := range n.WireGuard.Peers {
		if p.PresharedKey == nil {
			continue
		}
		s, err := loadKey(n, *p.PresharedKey, keyRef{peer: i + 1, peerPub: p.PublicKey}, log)
		if err != nil {
			return nil, fmt.Errorf("load preshared key of peer %d: %w", i, err)
		}
		k.Preshared[i] = &s
	}
	return k, nil
}

// keyRef says which key a KeySource means inside a wg-quick or YAML file:
// the interface's private key (peer 0) or peer peer-1's preshared key.
type keyRef struct {
	peer    int
	peerPub string
}

func (r keyRef) private() bool { return r.peer == 0 }

func loadKey(n *plan.Namespace, src plan.KeySource, ref keyRef, log *journal.Logger) (Secret, error) {
	// A credential wins when systemd provided it: it is a private copy made
	// before the service started and is invisible to confined services.
	if src.Credential != "" {
		if dir := os.Getenv(CredentialsDirEnv); dir != "" {
			if strings.ContainsRune(src.Credential, '/') {
				return Secret{}, fmt.Errorf("credential name %q contains a slash", src.Credential)
			}
			p := filepath.Join(dir, src.Credential)
			if _, err := os.Lstat(p); err == nil {
				if src.WgQuickFile != "" {
					return wgQuickKey(p, ref, log)
				}
				return keyFile(p, log)
			}
		}
	}
	switch {
	case src.WgQuickFile != "":
		return wgQuickKey(src.WgQuickFile, ref, log)
	case src.File != "":
		if src.Generate && ref.private() {
			if err := generateKeyFile(src.File, log); err != nil {
				return Secret{}, err
			}
		}
		return keyFile(src.File, log)
	case src.InlineYAML:
		return inlineYAMLKey(n.Source, ref)
	}
	return Secret{}, errors.New("the plan names no key source")
}

// readSecretFile reads a small regular file. Loose modes only warn: the
// doctor reports them, and refusing would take a working tunnel down on an
// upgrade. Devices, FIFOs and directories are refused: reading them could
// block or return garbage.
func readSecretFile(path string, limit int64, log *journal.Logger) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if st.Mode().Perm()&0o077 != 0 {
		log.Warnf("key file %s has mode %04o; it should be readable by root only (chmod 600)", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("key file %s is larger than %d bytes", path, limit)
	}
	return b, nil
}

func keyFile(path string, log *journal.Logger) (Secret, error) {
	b, err := readSecretFile(path, maxKeyFile, log)
	if err != nil {
		return Secret{}, err
	}
	defer clear(b)
	s, ok := parseKey(string(bytes.TrimSpace(b)))
	if !ok {
		// Never quote the content: it is (almost) a key.
		return Secret{}, fmt.Errorf("key file %s does not hold a base64 WireGuard key (44 characters, 32 bytes)", path)
	}
	return s, nil
}

// parseKey accepts what wg(8) accepts; its error never echoes the input.
func parseKey(text string) (Secret, bool) {
	if len(text) != 44 {
		return Secret{}, false
	}
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(b) != wgtypes.KeyLen {
		return Secret{}, false
	}
	var s Secret
	copy(s.k[:], b)
	clear(b)
	return s, true
}

func wgQuickKey(path string, ref keyRef, log *journal.Logger) (Secret, error) {
	b, err := readSecretFile(path, wgquick.MaxFileSize, log)
	if err != nil {
		return Secret{}, err
	}
	defer clear(b)
	f, problems := wgquick.Parse(bytes.NewReader(b))
	// Problems never contain key values (wgquick guarantees it).
	if err := wgquick.Join(path, problems); err != nil {
		return Secret{}, fmt.Errorf("parse wg-quick file: %w", err)
	}
	var sec wgquick.Secret
	if ref.private() {
		sec = f.Interface.PrivateKey.Value
		if sec.IsZero() {
			return Secret{}, fmt.Errorf("wg-quick file %s has no [Interface] PrivateKey", path)
		}
	} else {
		for _, p := range f.Peers {
			if p.PublicKey.Value == ref.peerPub {
				sec = p.PresharedKey.Value
			}
		}
		if sec.IsZero() {
			return Secret{}, fmt.Errorf("wg-quick file %s has no PresharedKey for peer %s", path, ref.peerPub)
		}
	}
	s, ok := parseKey(sec.Reveal())
	if !ok {
		return Secret{}, fmt.Errorf("wg-quick file %s holds an invalid key", path)
	}
	return s, nil
}

// inlineYAMLKey reads only wireguard.privateKey (or a peer's presharedKey)
// from the namespace file; the plan never copies key material.
func inlineYAMLKey(source string, ref keyRef) (Secret, error) {
	if source == "" {
		return Secret{}, errors.New("the key is inline in the YAML file but the plan names no source file")
	}
	b, err := os.ReadFile(source)
	if err != nil {
		return Secret{}, fmt.Errorf("read %s: %w", source, err)
	}
	defer clear(b)
	var doc struct {
		WireGuard struct {
			PrivateKey string `yaml:"privateKey"`
			Peers      []struct {
				PresharedKey string `yaml:"presharedKey"`
			} `yaml:"peers"`
		} `yaml:"wireguard"`
	}
	// The YAML decoder's errors quote at most a line number and a type, but
	// wrap nothing of it anyway: a key may sit on the offending line.
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Secret{}, fmt.Errorf("parse %s: invalid YAML (run the generator with -dry-run for details)", source)
	}
	text := doc.WireGuard.PrivateKey
	what := "wireguard.privateKey"
	if !ref.private() {
		what = fmt.Sprintf("wireguard.peers[%d].presharedKey", ref.peer-1)
		text = ""
		if ref.peer-1 < len(doc.WireGuard.Peers) {
			text = doc.WireGuard.Peers[ref.peer-1].PresharedKey
		}
	}
	s, ok := parseKey(strings.TrimSpace(text))
	if !ok {
		return Secret{}, fmt.Errorf("%s in %s is missing or not a base64 WireGuard key", what, source)
	}
	return s, nil
}

// generateKeyFile creates a new private key at path if there is none. The
// key is written to a temporary file (0600) in the same directory and
// hard-linked into place, so a reader never sees a partial key and two
// concurrent starts cannot overwrite each other's key.
func generateKeyFile(path string, log *journal.Logger) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat key file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("generate private key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".vpnc-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	text := []byte(k.String() + "\n")
	defer clear(text)
	clear(k[:])
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // someone else won the race; use theirs
		}
		return fmt.Errorf("install key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	log.Infof("generated a new WireGuard private key in %s", path)
	return nil
}
