package wgimport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vpn-confinement/vpn-confinement/internal/wgquick"
)

// write creates the key files, then the namespace file (so the YAML never
// names a key file that does not exist), never replacing anything. On
// failure it removes what it created.
func write(dir string, res *Result, f *wgquick.File, yaml []byte) (err error) {
	var created []string
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- {
				os.Remove(created[i])
			}
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err == nil {
		created = append(created, keys)
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", keys, err)
	}
	if err := writeSecret(res.KeyPath, f.Interface.PrivateKey.Value); err != nil {
		return err
	}
	created = append(created, res.KeyPath)
	for i, p := range f.Peers {
		path := filepath.Join(dir, "keys", fmt.Sprintf("%s-peer%d.psk", res.Name, i+1))
		if !contains(res.PSKPaths, path) {
			continue
		}
		if err := writeSecret(path, p.PresharedKey.Value); err != nil {
			return err
		}
		created = append(created, path)
	}
	if err := writeNew(res.YAMLPath, yaml, 0o644); err != nil {
		return err
	}
	return nil
}

// writeSecret writes a key file: created exclusively with mode 0600 (set
// explicitly, whatever the umask), synced before it is referenced.
func writeSecret(path string, key wgquick.Secret) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("chmod key file %s: %w", path, err)
	}
	_, werr := f.WriteString(key.Reveal() + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, werr)
	}
	return nil
}

// writeNew writes data to path atomically and only if path does not exist:
// a temporary file in the same directory is hard-linked into place (link
// fails on an existing name, unlike rename), so the generator never sees a
// half-written file and nothing is overwritten even in a race.
func writeNew(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".import-*.tmp")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Chmod(mode)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
