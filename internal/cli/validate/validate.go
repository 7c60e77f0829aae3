// Package validate implements `vpn-confinement validate`: the generator's
// own validation, run on demand. It calls internal/generator exactly as the
// generator binary does (same directory scan, same cross-file rules, same
// unit search path), so its verdicts and diagnostic lines are the ones the
// next daemon-reload will produce.
package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// Options selects what to validate.
type Options struct {
	// Targets are files or directories; empty means ConfigDir.
	Targets   []string
	ConfigDir string
	// UnitPath is the unit search path for conflict checks (nil: the
	// system path, as the generator uses at boot).
	UnitPath []string
	// StateDir holds the units recorded at each namespace's last good
	// start; it only affects which units an invalid file blocks.
	StateDir string
	// PasswdFile is read for services' homes (default /etc/passwd, "-"
	// for none), as by the generator.
	PasswdFile string
}

// File is the verdict on one namespace file. The JSON form is a stable
// interface for CI and editors.
type File struct {
	File      string       `json:"file"`
	Namespace string       `json:"namespace"`
	Valid     bool         `json:"valid"`
	Errors    config.Diags `json:"errors"`
	Warnings  config.Diags `json:"warnings"`
	// Units lists the units the file confines (or, when invalid, blocks).
	Units []string `json:"units"`
	// Blocked lists the units the generator blocks because of this file
	// (its own units plus those recorded at its last good start).
	Blocked []string `json:"blocked"`
	// Services says, per confined service of a valid file, what its
	// hardening profile removes and keeps.
	Services []Service `json:"services"`

	services, sockets int
}

// Report is the result of one validate run.
type Report struct {
	Files []File `json:"files"`
	// Strays are files in a validated directory that the generator does
	// not read (errors: a misnamed file confines nothing).
	Strays []generator.Stray `json:"strays"`
	// Orphans are namespaces whose file was removed while they ran.
	Orphans []generator.Orphan `json:"orphans"`
	// Dirs are the directories that were validated (for messages only).
	Dirs []string `json:"-"`
}

// Errors counts the error diagnostics of all files, and the strays.
func (r *Report) Errors() int {
	n := len(r.Strays)
	for _, f := range r.Files {
		n += len(f.Errors)
	}
	return n
}

// Warnings counts the warnings of all files.
func (r *Report) Warnings() int {
	n := len(r.Orphans)
	for _, f := range r.Files {
		n += len(f.Warnings)
	}
	return n
}

// target is one directory to compile and the files of it to show (nil:
// all of them).
type target struct {
	dir   string
	files map[string]bool
	all   bool
}

// Run validates the targets. Its error is for targets that cannot be
// validated at all (missing, not a namespace file, unreadable directory);
// problems inside files are in the report.
func Run(o Options) (*Report, error) {
	targets := o.Targets
	if len(targets) == 0 {
		targets = []string{o.ConfigDir}
	}
	var order []*target
	byDir := map[string]*target{}
	get := func(dir string) *target {
		if t, ok := byDir[dir]; ok {
			return t
		}
		t := &target{dir: dir, files: map[string]bool{}}
		byDir[dir] = t
		order = append(order, t)
		return t
	}
	for _, arg := range targets {
		abs, err := filepath.Abs(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && len(o.Targets) == 0 {
				// No config dir at all: nothing is confined, nothing to check.
				get(abs).all = true
				continue
			}
			return nil, fmt.Errorf("cannot validate %s: %w", arg, err)
		}
		if fi.IsDir() {
			get(abs).all = true
			continue
		}
		base := filepath.Base(abs)
		if _, ok := config.NameFromPath(base); !ok {
			return nil, fmt.Errorf("%s is not a namespace file: the generator reads only NAME.yaml and NAME.yml files", arg)
		}
		if strings.HasPrefix(base, ".") {
			return nil, fmt.Errorf("%s is a hidden file, which the generator ignores", arg)
		}
		// Compile the whole directory so cross-file rules (a unit listed
		// twice, colliding interfaces, host-link subnets) apply, then
		// show only this file.
		get(filepath.Dir(abs)).files[abs] = true
	}
	rep := &Report{Files: []File{}, Strays: []generator.Stray{}, Orphans: []generator.Orphan{}}
	// The units' own files, for the user each runs as (the generator's
	// default search path when none is given).
	var lookup config.UnitLookup
	switch {
	case o.UnitPath == nil:
		lookup = unitfile.Search{Path: unitfile.SystemPath}
	case len(o.UnitPath) > 0:
		lookup = unitfile.Search{Path: o.UnitPath}
	}
	for _, t := range order {
		rep.Dirs = append(rep.Dirs, t.dir)
		out, err := generator.Generate(generator.Options{ConfigDir: t.dir, UnitPath: o.UnitPath, StateDir: o.StateDir, PasswdFile: o.PasswdFile})
		if err != nil {
			return nil, fmt.Errorf("validate %s: %w", t.dir, err)
		}
		for _, r := range out.Results {
			if !t.all && !t.files[r.File] {
				continue
			}
			f := fileOf(r, out.Blocked)
			if r.Plan != nil {
				f.Errors = append(f.Errors, keyFileDiags(r)...)
				f.Services = services(r.Plan, lookup)
			}
			rep.Files = append(rep.Files, f)
		}
		if t.all {
			rep.Strays = append(rep.Strays, out.Strays...)
			rep.Orphans = append(rep.Orphans, out.Orphans...)
		}
	}
	return rep, nil
}

// keyFileDiags checks that the key files of a compiled namespace exist and
// can be read. The generator never touches key material, so this is the
// one check validate adds: without it a missing key passes and the tunnel
// fails at start with an obscure error.
func keyFileDiags(r *config.Result) config.Diags {
	var out config.Diags
	check := func(key, path string, generate bool) {
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err == nil {
			f.Close()
			return
		}
		msg := ""
		switch {
		case errors.Is(err, fs.ErrNotExist) && generate:
			return // created at first start
		case errors.Is(err, fs.ErrNotExist):
			msg = fmt.Sprintf("%s does not exist: the tunnel cannot start (create it: umask 077; wg genkey > %s, or set wireguard.generatePrivateKeyFile: true)", path, path)
		case errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0:
			msg = fmt.Sprintf("%s cannot be read by uid %d; run vpn-confinement validate as root to check it", path, os.Geteuid())
		default:
			msg = fmt.Sprintf("%s cannot be read: %v (the tunnel cannot start)", path, err)
		}
		line, col := r.Position(key)
		out = append(out, config.Diag{File: r.File, Line: line, Column: col, Key: key, Message: msg})
	}
	wg := r.Plan.WireGuard
	check("wireguard.privateKeyFile", wg.PrivateKey.File, wg.PrivateKey.Generate)
	check("wireguard.configFile", wg.PrivateKey.WgQuickFile, false)
	for i, p := range wg.Peers {
		if p.PresharedKey != nil {
			check(fmt.Sprintf("wireguard.peers[%d].presharedKeyFile", i), p.PresharedKey.File, false)
		}
	}
	return out
}

func fileOf(r *config.Result, blocked map[string]string) File {
	f := File{
		File:      r.File,
		Namespace: r.Name,
		Valid:     r.Plan != nil,
		Errors:    nonNil(r.Diags.Errors()),
		Warnings:  nonNil(r.Diags.Warnings()),
		Units:     append([]string{}, r.Units...),
		Blocked:   []string{},
		Services:  []Service{},
	}
	for u, src := range blocked {
		if src == r.File {
			f.Blocked = append(f.Blocked, u)
		}
	}
	sort.Strings(f.Blocked)
	if r.Plan != nil {
		f.services, f.sockets = len(r.Plan.Services), len(r.Plan.Sockets)
	}
	return f
}

func nonNil(d config.Diags) config.Diags {
	if d == nil {
		return config.Diags{}
	}
	return d
}

// WriteJSON writes the stable JSON form.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the diagnostics in the generator's format
// (file:line:col: key: message), errors first, then warnings, then one
// verdict line per file unless quiet.
func (r *Report) WriteText(w io.Writer, quiet bool) {
	for _, f := range r.Files {
		for _, d := range f.Errors {
			fmt.Fprintln(w, d.String())
		}
	}
	for _, f := range r.Files {
		for _, d := range f.Warnings {
			fmt.Fprintln(w, d.String())
		}
	}
	for _, st := range r.Strays {
		fmt.Fprintln(w, st.String())
	}
	for _, o := range r.Orphans {
		fmt.Fprintln(w, o.String())
	}
	if quiet {
		return
	}
	if r.Errors()+r.Warnings() > 0 {
		fmt.Fprintln(w)
	}
	if len(r.Files) == 0 {
		fmt.Fprintf(w, "no namespace files (NAME.yaml) in %s: nothing is confined\n", strings.Join(r.Dirs, ", "))
		return
	}
	valid := 0
	for _, f := range r.Files {
		fmt.Fprintln(w, f.verdict())
		writeServices(w, f.Services)
		if f.Valid {
			valid++
		}
	}
	if len(r.Files) > 1 {
		fmt.Fprintf(w, "%d files: %d valid, %d invalid\n", len(r.Files), valid, len(r.Files)-valid)
	}
}

func (f File) verdict() string {
	counts := plural(len(f.Errors), "error") + ", " + plural(len(f.Warnings), "warning")
	if f.Valid {
		return fmt.Sprintf("valid:   %s: namespace %s, %s, %s (%s)", f.File, f.Namespace,
			plural(f.services, "service"), plural(f.sockets, "socket"), counts)
	}
	s := fmt.Sprintf("INVALID: %s (%s): namespace %s is not built", f.File, counts, f.Namespace)
	if len(f.Blocked) > 0 {
		s += "; blocked until fixed: " + strings.Join(f.Blocked, ", ")
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
