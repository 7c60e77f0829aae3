// Package unitfile reads systemd unit files from the unit search path as
// plain files. Generators must not ask PID 1 anything (no D-Bus), so the
// conflict checks of the generator read fragments and drop-ins themselves,
// in the order systemd would apply them.
package unitfile

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SystemPath is the system unit search path in priority order, without the
// generator output dirs (they are being rewritten while generators run).
var SystemPath = []string{
	"/etc/systemd/system.control",
	"/run/systemd/system.control", // systemctl set-property --runtime
	"/run/systemd/transient",
	"/etc/systemd/system",
	"/etc/systemd/system.attached",
	"/run/systemd/system",
	"/run/systemd/system.attached",
	"/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system",
	"/lib/systemd/system",
}

// Setting is one assignment.
type Setting struct {
	File    string
	Line    int
	Section string
	Key     string
	Value   string
}

// Parse reads unit-file syntax: [Section] headers, Key=Value lines,
// comments (# and ;), and backslash line continuation.
func Parse(file string, data []byte) []Setting {
	var out []Setting
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	var cont *Setting
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if cont != nil {
			t := strings.TrimSpace(line)
			if strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
				continue
			}
			if strings.HasSuffix(line, "\\") {
				cont.Value += " " + strings.TrimSpace(strings.TrimSuffix(line, "\\"))
				continue
			}
			cont.Value += " " + t
			out = append(out, *cont)
			cont = nil
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			continue
		}
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = t[1 : len(t)-1]
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		s := Setting{File: file, Line: lineNo, Section: section, Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)}
		if strings.HasSuffix(s.Value, "\\") {
			s.Value = strings.TrimSpace(strings.TrimSuffix(s.Value, "\\"))
			cont = &s
			continue
		}
		out = append(out, s)
	}
	if cont != nil {
		out = append(out, *cont)
	}
	return out
}

// Unit is a unit as found on disk: its fragment and drop-ins, in the order
// systemd applies them.
type Unit struct {
	Name     string
	Fragment string // "" when only drop-ins exist
	Masked   bool
	DropIns  []string
	Settings []Setting
}

// Last returns the effective value of section/key, honouring "Key=" resets
// by returning the last assignment.
func (u *Unit) Last(section, key string) (Setting, bool) {
	var last Setting
	found := false
	for _, s := range u.Settings {
		if s.Section == section && s.Key == key {
			last, found = s, true
		}
	}
	return last, found
}

// All returns every assignment of section/key after the last empty reset.
func (u *Unit) All(section, key string) []Setting {
	var out []Setting
	for _, s := range u.Settings {
		if s.Section == section && s.Key == key {
			if s.Value == "" {
				out = nil
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// Search finds units in a list of directories (highest priority first).
type Search struct {
	Path []string
}

// Lookup finds unit name. ok is false when neither fragment nor drop-ins
// exist. Instances fall back to their template fragment (foo@bar.service →
// foo@.service) and template drop-ins, as systemd does.
func (s Search) Lookup(name string) (*Unit, bool) {
	u := &Unit{Name: name}
	names := []string{name}
	if at := strings.Index(name, "@"); at >= 0 {
		ext := filepath.Ext(name)
		names = append(names, name[:at+1]+ext)
	}
	for _, n := range names {
		for _, dir := range s.Path {
			p := filepath.Join(dir, n)
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				if t, err := os.Readlink(p); err == nil && t == "/dev/null" {
					u.Masked = true
					return u, true
				}
			}
			u.Fragment = p
			break
		}
		if u.Fragment != "" {
			break
		}
	}
	// Drop-ins: type-wide ("service.d"), template, then the unit itself; a
	// file name in a higher-priority dir masks the same name below it; all
	// are applied in file-name order.
	ext := strings.TrimPrefix(filepath.Ext(name), ".")
	dirs := []string{ext + ".d"}
	for i := len(names) - 1; i >= 0; i-- {
		dirs = append(dirs, names[i]+".d")
	}
	chosen := map[string]string{}
	for _, dd := range dirs {
		for _, dir := range s.Path {
			entries, err := os.ReadDir(filepath.Join(dir, dd))
			if err != nil {
				continue
			}
			for _, e := range entries {
				if !strings.HasSuffix(e.Name(), ".conf") {
					continue
				}
				if _, ok := chosen[e.Name()]; !ok {
					chosen[e.Name()] = filepath.Join(dir, dd, e.Name())
				}
			}
		}
	}
	keys := make([]string, 0, len(chosen))
	for k := range chosen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		u.DropIns = append(u.DropIns, chosen[k])
	}
	if u.Fragment == "" && len(u.DropIns) == 0 {
		return nil, false
	}
	for _, f := range append([]string{u.Fragment}, u.DropIns...) {
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			u.Settings = append(u.Settings, Parse(f, data)...)
		}
	}
	return u, true
}

// Names lists the unit names with suffix (".service") that have a fragment
// somewhere on the path, templates included ("foo@.service"), sorted.
func (s Search) Names(suffix string) []string {
	seen := map[string]bool{}
	for _, dir := range s.Path {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, suffix) && !e.IsDir() {
				seen[n] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
