package generator

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
)

// Stray is a file in the config dir that the generator does not read. A
// first-hour mistake ("media.YAML", "media.yaml.txt") must never leave the
// units it lists running on the host's network in silence: every stray is
// logged, `vpn-confinement validate` reports it as an error, and the units
// of one that looks like a misnamed namespace file are blocked.
type Stray struct {
	Path   string   `json:"file"`
	Reason string   `json:"reason"`
	Blocks bool     `json:"blocks"` // its units are blocked until it is renamed
	Units  []string `json:"units,omitempty"`
}

// backupSuffixes mark copies that editors and package managers leave next
// to a namespace file; they are reported but their units are not blocked
// (the real file next to them usually confines the same units).
var backupSuffixes = []string{"~", ".bak", ".orig", ".old", ".save", ".swp", ".tmp", ".dpkg-old", ".dpkg-new",
	".dpkg-dist", ".dpkg-bak", ".rpmnew", ".rpmsave", ".ucf-old", ".ucf-new", ".ucf-dist"}

// keyExts are files that commonly sit in the config dir on purpose.
var keyExts = []string{".key", ".pub", ".psk"}

// DisabledSuffix is how a namespace file is switched off without deleting
// it: NAME.yaml.disabled is neither read nor reported.
const DisabledSuffix = ".disabled"

// classify decides what a non-namespace file in the config dir is. ok is
// false for files that are there on purpose.
func classify(name string, data []byte, referenced bool) (reason string, blocks, ok bool) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(name, DisabledSuffix) || referenced:
		return "", false, false
	case hasAnySuffix(lower, keyExts...):
		return "", false, false
	case hasAnySuffix(lower, ".yaml", ".yml"):
		ext := filepath.Ext(name)
		return fmt.Sprintf("not read: the extension must be lower-case; rename it to %s%s", strings.TrimSuffix(name, ext), strings.ToLower(ext)), true, true
	}
	if i := max(strings.LastIndex(lower, ".yaml"), strings.LastIndex(lower, ".yml")); i > 0 {
		ext := ".yml"
		if strings.HasPrefix(lower[i:], ".yaml") {
			ext = ".yaml"
		}
		real := name[:i] + ext
		if hasAnySuffix(lower, backupSuffixes...) {
			return fmt.Sprintf("not read: a backup copy (only NAME.yaml and NAME.yml are read; rename it to %s to use it, or delete it)", real), false, true
		}
		return fmt.Sprintf("not read: only names ending in .yaml or .yml are read; rename it to %s", real), true, true
	}
	if strings.HasSuffix(lower, ".conf") {
		if looksLikeWgQuick(data) {
			return "", false, false // a provider file for wireguard.configFile
		}
		if looksLikeNamespace(data) {
			return fmt.Sprintf("not read: namespace files must be named NAME.yaml; rename it to %s.yaml", strings.TrimSuffix(name, filepath.Ext(name))), true, true
		}
	}
	if looksLikeNamespace(data) {
		return fmt.Sprintf("not read: it looks like a namespace file, but only names ending in .yaml or .yml are read; rename it to %s.yaml", strings.TrimSuffix(name, filepath.Ext(name))), true, true
	}
	return "not read: only NAME.yaml and NAME.yml files are namespace files (keys belong in keys/; NAME.yaml.disabled switches a namespace off)", false, true
}

func hasAnySuffix(s string, suffixes ...string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

func looksLikeWgQuick(data []byte) bool {
	return strings.Contains(string(data), "[Interface]")
}

// looksLikeNamespace: any top-level key of the schema at the start of a line.
func looksLikeNamespace(data []byte) bool {
	for _, l := range strings.Split(string(data), "\n") {
		for _, k := range []string{"services:", "sockets:", "wireguard:", "dns:", "egress:", "publish:"} {
			if strings.HasPrefix(l, k) {
				return true
			}
		}
	}
	return false
}

// findStrays lists the config dir's files that are not namespace files.
func findStrays(dir string, entries []os.DirEntry, results []*config.Result) []Stray {
	referenced := map[string]bool{}
	for _, r := range results {
		if r.Plan != nil && r.Plan.WireGuard.PrivateKey.WgQuickFile != "" {
			referenced[r.Plan.WireGuard.PrivateKey.WgQuickFile] = true
		}
	}
	var out []Stray
	for _, e := range entries {
		name := e.Name()
		if _, ok := config.NameFromPath(name); ok || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, name)
		data, _ := readHead(p)
		reason, blocks, ok := classify(name, data, referenced[p])
		if !ok {
			continue
		}
		s := Stray{Path: p, Reason: reason, Blocks: blocks}
		if blocks {
			s.Units = config.ScanUnits(data)
		}
		out = append(out, s)
	}
	return out
}

// readHead reads at most the size limit of a namespace file.
func readHead(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	n, _ := f.Read(b)
	return b[:n], nil
}

// Diagnostics renders every finding of out as the generator logs it:
// per-file diagnostics, then strays, then orphans.
func Diagnostics(out *Output) []string {
	var lines []string
	for _, r := range out.Results {
		for _, d := range r.Diags {
			lines = append(lines, d.String())
		}
	}
	for _, s := range out.Strays {
		lines = append(lines, s.String())
	}
	for _, o := range out.Orphans {
		lines = append(lines, o.String())
	}
	return lines
}

// String is the stray's log and validate line.
func (s Stray) String() string {
	l := s.Path + ": " + s.Reason
	if len(s.Units) > 0 {
		l += "; blocking its units until then: " + strings.Join(s.Units, ", ")
	}
	return l
}

// String is the orphan's log and validate line.
func (o Orphan) String() string {
	us := "its units"
	if len(o.Units) > 0 {
		us = strings.Join(o.Units, ", ")
	}
	return fmt.Sprintf("warning: namespace %s has a record of a good start but no file any more: %s are no longer confined once they restart (systemctl stop vpn-ns@%s.service removes the namespace)", o.Name, us, o.Name)
}
