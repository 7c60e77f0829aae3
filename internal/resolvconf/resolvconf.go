// Package resolvconf renders the resolver files of a confinement namespace
// (research anchor §5) and writes them to its runtime directory, from where
// strict-DNS services get them bind-mounted read-only onto /etc/resolv.conf
// and /etc/nsswitch.conf.
//
// The files are written for every namespace, also in compat mode: compat
// services simply do not bind them, and writing them unconditionally keeps
// the namespace helper free of DNS-mode branches.
package resolvconf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// maxNameservers is glibc's MAXNS: later nameserver lines are ignored by the
// resolver, so rendering them would only suggest a fallback that never happens.
const maxNameservers = 3

// ResolvConf renders resolv.conf for d: one nameserver line per server (the
// first three), a search line if there are search domains, "options edns0".
// Unlike the reference module there is no blank line in place of a missing
// search line.
func ResolvConf(d plan.DNS) []byte {
	var b bytes.Buffer
	for i, s := range d.Servers {
		if i == maxNameservers {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Search, " "))
	}
	b.WriteString("options edns0\n")
	return b.Bytes()
}

// nsswitch is the same for every namespace. passwd and group include
// nss-systemd so DynamicUser= and userdb users resolve inside confined
// services (the reference drops them: anchor §8.18). hosts has no "resolve",
// "mdns" or "mymachines": name lookups must go through the namespace's own
// resolv.conf over the tunnel, never through a host daemon's IPC.
const nsswitch = `passwd: files systemd
group: files systemd
shadow: files
hosts: files myhostname dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
`

// NSSwitch renders nsswitch.conf.
func NSSwitch() []byte { return []byte(nsswitch) }

// Write writes resolv.conf and nsswitch.conf for d into dir (created 0755).
// Each file is replaced atomically (temporary file and rename), so a reader
// sees either the old or the new file, never a truncated one. Modes are set
// explicitly (0644) rather than left to the umask: the files are read by
// confined services running as unprivileged or dynamic users.
func Write(dir string, d plan.DNS) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if err := writeAtomic(filepath.Join(dir, "resolv.conf"), ResolvConf(d)); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "nsswitch.conf"), NSSwitch())
}

// writeAtomic writes data to path via a temporary file in the same directory.
// No fsync: the runtime directory is on tmpfs and rebuilt on every start.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	merr := f.Chmod(0o644)
	cerr := f.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// Rewrite replaces resolv.conf in dir for d in place, for a live reload:
// confined services have the file bind-mounted, so a rename would leave
// them on the old inode. The new text is written over the old and the file
// cut to its length; a reader at that moment may see a mix of both for an
// instant (the lines are complete resolver lines either way), never the
// host's file.
func Rewrite(dir string, d plan.DNS) error {
	path := filepath.Join(dir, "resolv.conf")
	data := ResolvConf(d)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Write(dir, d)
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, werr := f.WriteAt(data, 0)
	terr := f.Truncate(int64(len(data)))
	cerr := f.Close()
	if err := errors.Join(werr, terr, cerr); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return nil
}
