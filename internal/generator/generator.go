// Package generator is the library core of vpn-confinement-generator: it
// reads the config dir, compiles every file, and returns the complete output
// tree (files and symlinks) without touching the file system beyond reads.
// Writing the tree is genout's job; the binary is a thin wrapper.
package generator

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Options are the generator's inputs. Zero values take the system defaults.
type Options struct {
	ConfigDir string   // default /etc/vpn-confinement.d
	UnitPath  []string // default (nil) unitfile.SystemPath; empty: no unit-file checks
	StateDir  string   // default plan.StateDir
	UnitDir   string   // where the templates are installed (symlink targets)
	// PasswdFile is read for services' home directories (default
	// /etc/passwd; "-" for none).
	PasswdFile string
}

// DefaultConfigDir is where namespace files live.
const DefaultConfigDir = "/etc/vpn-confinement.d"

// DefaultUnitDir is the template install dir; overridden at build time
// with -ldflags -X for other prefixes.
var DefaultUnitDir = "/usr/local/lib/systemd/system"

// Output is the generator's complete output tree, relative to the normal
// output dir.
type Output struct {
	Files   map[string][]byte
	Links   map[string]string
	Results []*config.Result
	// Blocked maps each blocked unit to the file that caused it.
	Blocked map[string]string
	// Strays are files in the config dir that are not read.
	Strays []Stray
	// Orphans are namespaces recorded at a good start whose file is gone.
	Orphans []Orphan
}

// Orphan is a namespace whose file was removed: its units are no longer
// confined once they restart, which deserves a loud word, not silence.
type Orphan struct {
	Name  string   `json:"namespace"`
	Units []string `json:"units"`
}

// Generate compiles everything. It returns an error only when the config
// dir exists but cannot be listed; per-file problems are in Results.
func Generate(o Options) (*Output, error) {
	if o.ConfigDir == "" {
		o.ConfigDir = DefaultConfigDir
	}
	// Paths end up in SourcePath= and the plans, which must be absolute.
	if abs, err := filepath.Abs(o.ConfigDir); err == nil {
		o.ConfigDir = abs
	}
	if o.UnitPath == nil {
		o.UnitPath = unitfile.SystemPath
	}
	if o.StateDir == "" {
		o.StateDir = plan.StateDir
	}
	if o.UnitDir == "" {
		o.UnitDir = DefaultUnitDir
	}
	out := &Output{Files: map[string][]byte{}, Links: map[string]string{}, Blocked: map[string]string{}}
	entries, err := os.ReadDir(o.ConfigDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read config dir: %w", err)
	}
	// An explicitly empty unit path (not nil) compiles without looking at
	// unit files at all: offline compiles and tests that are not about them.
	env := config.Env{}
	if len(o.UnitPath) > 0 {
		env.Units = unitfile.Search{Path: o.UnitPath}
	}
	if o.PasswdFile == "" {
		o.PasswdFile = "/etc/passwd"
	}
	if o.PasswdFile != "-" {
		if b, err := os.ReadFile(o.PasswdFile); err == nil {
			env.LookupHome = config.PasswdHomes(b)
		}
	}
	stems := map[string][]string{}
	for _, e := range entries {
		name, ok := config.NameFromPath(e.Name())
		if !ok || strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		stems[name] = append(stems[name], filepath.Join(o.ConfigDir, e.Name()))
	}
	type job struct {
		path  string
		dupOf []string
	}
	var jobs []job
	for _, stem := range sortedKeys(stems) {
		for _, p := range stems[stem] {
			j := job{path: p}
			if len(stems[stem]) > 1 {
				j.dupOf = stems[stem]
			}
			jobs = append(jobs, j)
		}
	}
	// Files compile independently; use every CPU (boot waits for us).
	results := make([]*config.Result, len(jobs))
	parallel(len(jobs), func(i int) {
		j := jobs[i]
		r := compileFile(j.path, env)
		if j.dupOf != nil {
			r.Plan = nil
			r.Diags = append(r.Diags, config.Diag{File: j.path, Message: fmt.Sprintf("namespace %q is defined by more than one file: %s", r.Name, strings.Join(j.dupOf, ", "))})
		}
		results[i] = r
	})
	config.CompileAll(results)
	out.Results = results
	out.Strays = findStrays(o.ConfigDir, entries, results)
	out.Orphans = findOrphans(o.StateDir, results)

	managed := map[string]bool{}
	for _, r := range results {
		if r.Plan != nil {
			managed[r.Name] = true
		}
	}
	for _, r := range results {
		if r.Plan != nil {
			emitNamespace(out, r.Plan, managed, env, o.UnitDir)
			continue
		}
		block := append([]string{}, r.Units...)
		block = append(block, readStateRecord(o.StateDir, r.Name)...)
		for _, u := range dedupe(block) {
			if !config.ValidUnitName(u) {
				continue
			}
			if _, done := out.Blocked[u]; done {
				continue
			}
			out.Blocked[u] = r.File
			out.Files[u+".d/"+config.DropInName] = units.BlockDropIn(r.File, u)
		}
		if config.ValidNamespaceName(r.Name) {
			out.Files[units.Instance(units.NsTemplate, r.Name)+".d/"+config.DropInName] = units.BlockNamespaceDropIn(r.Name, r.File)
		}
	}
	// A misnamed namespace file blocks the units it lists unless a valid
	// file confines them: they must not run unconfined in silence.
	confined := map[string]bool{}
	for _, r := range results {
		if r.Plan != nil {
			for _, u := range r.Units {
				confined[u] = true
			}
		}
	}
	for _, s := range out.Strays {
		if !s.Blocks {
			continue
		}
		for _, u := range s.Units {
			if _, done := out.Blocked[u]; done || confined[u] || !config.ValidUnitName(u) {
				continue
			}
			out.Blocked[u] = s.Path
			out.Files[u+".d/"+config.DropInName] = units.BlockDropInWhy(s.Path, u, "is "+s.Reason, "is not read (wrong file name)", "vpn-confinement validate")
		}
	}
	// A drop-in named like ours in a directory that outranks the
	// generator's replaces ours, the block included (the compiler refuses
	// the unit for it): the block is then written under a second name.
	if env.Units != nil {
		for u := range out.Blocked {
			if uf, ok := env.Units.Lookup(u); ok && config.ShadowingDropIn(uf) != "" {
				out.Files[u+".d/"+config.BlockedDropInName] = out.Files[u+".d/"+config.DropInName]
			}
		}
	}
	return out, nil
}

// findOrphans lists namespaces with a state record (a good start) but no
// namespace file any more.
func findOrphans(stateDir string, results []*config.Result) []Orphan {
	have := map[string]bool{}
	for _, r := range results {
		have[r.Name] = true
	}
	records, _ := filepath.Glob(filepath.Join(stateDir, "*.units"))
	sort.Strings(records)
	var out []Orphan
	for _, rec := range records {
		name := strings.TrimSuffix(filepath.Base(rec), ".units")
		if !have[name] {
			out = append(out, Orphan{Name: name, Units: readStateRecord(stateDir, name)})
		}
	}
	return out
}

// Fallback is the output when compiling failed unexpectedly (a bug that
// panicked, a config dir that cannot be listed): without it the listed
// units would start on the host network. It blocks every unit named in any
// config file (lenient text scan) or recorded at any namespace's last good
// start; it needs nothing but file reads, so it still works when Generate
// does not.
func Fallback(o Options) *Output {
	if o.ConfigDir == "" {
		o.ConfigDir = DefaultConfigDir
	}
	if o.StateDir == "" {
		o.StateDir = plan.StateDir
	}
	out := &Output{Files: map[string][]byte{}, Links: map[string]string{}, Blocked: map[string]string{}}
	block := func(source string, us []string) {
		for _, u := range us {
			if _, done := out.Blocked[u]; done || !config.ValidUnitName(u) {
				continue
			}
			out.Blocked[u] = source
			out.Files[u+".d/"+config.DropInName] = units.BlockDropIn(source, u)
		}
	}
	if entries, err := os.ReadDir(o.ConfigDir); err == nil {
		for _, e := range entries {
			if _, ok := config.NameFromPath(e.Name()); !ok || e.IsDir() {
				continue
			}
			p := filepath.Join(o.ConfigDir, e.Name())
			if b, err := os.ReadFile(p); err == nil {
				block(p, config.ScanUnits(b))
			}
		}
	}
	if records, err := filepath.Glob(filepath.Join(o.StateDir, "*.units")); err == nil {
		for _, r := range records {
			name := strings.TrimSuffix(filepath.Base(r), ".units")
			block(filepath.Join(o.ConfigDir, name+".yaml"), readStateRecord(o.StateDir, name))
		}
	}
	return out
}

func compileFile(p string, env config.Env) *config.Result {
	f, err := os.Open(p)
	if err != nil {
		return unreadable(p, err)
	}
	defer f.Close()
	// Read one byte past the limit so oversized files are detected without
	// reading them whole.
	buf, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return unreadable(p, err)
	}
	return config.CompileFile(p, buf, env)
}

func unreadable(p string, err error) *config.Result {
	name, _ := config.NameFromPath(p)
	return &config.Result{Name: name, File: p, Diags: config.Diags{{File: p, Message: fmt.Sprintf("cannot read: %v", err)}}}
}

// readStateRecord returns the units recorded at the namespace's last good
// start (written by the namespace helper). It is how the generator still
// knows which units to block when the file no longer parses.
func readStateRecord(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(dir, name+".units"))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func emitNamespace(out *Output, n *plan.Namespace, managed map[string]bool, env config.Env, unitDir string) {
	name := n.Name
	b, err := n.Marshal()
	if err != nil {
		panic(err) // plans hold only marshalable types
	}
	out.Files[plan.PlanSubdir+"/"+name+".json"] = b
	out.Files[units.Instance(units.NsTemplate, name)+".d/"+config.DropInName] = units.NamespaceDropIn(n)
	out.Files[units.Instance(units.WgTemplate, name)+".d/"+config.DropInName] = units.WireGuardDropIn(n, managed)
	if n.WireGuard.Pinning != nil {
		out.Files[units.Instance(units.PinTemplate, name)+".d/"+config.DropInName] = units.PinDropIn(n, managed)
	}
	if n.PortForwarding != nil {
		out.Files[units.Instance(units.PfTemplate, name)+".d/"+config.DropInName] = units.PortForwardDropIn(n)
	}
	for _, p := range n.Publish {
		out.Files[p.Unit+".socket"] = units.PublishSocket(n, p)
		if p.Activate == "" {
			out.Files[p.Unit+".service"] = units.PublishProxy(n, p)
		}
	}
	if n.Autostart {
		out.Links["multi-user.target.wants/"+units.Instance(units.NsTemplate, name)] = filepath.Join(unitDir, units.NsTemplate)
	}
	// Services with the same options share one rendered body: on boot the
	// generator may render thousands of drop-ins.
	bodies := map[string][]byte{}
	for _, u := range n.Services {
		var existing *unitfile.Unit
		if env.Units != nil {
			if eu, ok := env.Units.Lookup(u.Name); ok {
				existing = eu
			}
		}
		key := units.BodyKey(u, existing)
		body, ok := bodies[key]
		if !ok {
			body = units.ServiceBody(n, u, existing)
			bodies[key] = body
		}
		out.Files[u.Name+".d/"+config.DropInName] = append(units.ServiceHeader(n, u), body...)
	}
	for _, u := range n.Sockets {
		out.Files[u.Name+".d/"+config.DropInName] = units.SocketDropIn(n, u)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}
