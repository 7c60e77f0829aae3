// Package paths holds the file system locations the vpn-confinement CLI
// reads, and the lookups over compiled plans that several verbs share.
// Every verb takes a Paths value instead of using global constants, so
// tests run the same code against fake /proc, /run and /etc trees.
package paths

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// Paths are the locations of everything the CLI reads.
type Paths struct {
	ConfigDir    string   // /etc/vpn-confinement.d
	GeneratorDir string   // /run/systemd/generator (plans in its vpn-confinement/ subdir)
	NetnsDir     string   // /run/netns
	RuntimeDir   string   // /run/vpn-confinement
	StateDir     string   // /var/lib/vpn-confinement
	Proc         string   // /proc
	Sys          string   // /sys
	Root         string   // the host's / (for host-side views of paths a service sees)
	UnitPath     []string // unit search path for conflict checks and installation checks
}

// Default returns the system locations. VPN_CONFINEMENT_CONFIG_DIR and
// VPN_CONFINEMENT_UNIT_PATH override the config dir and unit path exactly
// as they do for the generator, so both see the same input.
func Default() Paths {
	p := Paths{
		ConfigDir:    generator.DefaultConfigDir,
		GeneratorDir: plan.DefaultGeneratorDir,
		NetnsDir:     plan.NetnsDir,
		RuntimeDir:   plan.RuntimeDir,
		StateDir:     plan.StateDir,
		Proc:         "/proc",
		Sys:          "/sys",
		Root:         "/",
		UnitPath:     unitfile.SystemPath,
	}
	if v := os.Getenv("VPN_CONFINEMENT_CONFIG_DIR"); v != "" {
		p.ConfigDir = v
	}
	if v := os.Getenv("VPN_CONFINEMENT_UNIT_PATH"); v != "" {
		p.UnitPath = strings.Split(v, ":")
	}
	return p
}

// Netns is the pinned namespace path of name.
func (p Paths) Netns(name string) string { return filepath.Join(p.NetnsDir, name) }

// Runtime is the runtime directory of namespace name.
func (p Paths) Runtime(name string) string { return filepath.Join(p.RuntimeDir, name) }

// InRuntime maps path, a location below plan.RuntimeDir as the helpers
// name it (tunnel.StatePath, namespace.AppliedPath, tripwire.MarkerPath),
// to the same location below p.RuntimeDir, so the helpers' path functions
// stay the one definition and tests can move the runtime dir.
func (p Paths) InRuntime(path string) string {
	rel, err := filepath.Rel(plan.RuntimeDir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path
	}
	return filepath.Join(p.RuntimeDir, rel)
}

// PlanDir is where the generator writes plans.
func (p Paths) PlanDir() string { return filepath.Join(p.GeneratorDir, plan.PlanSubdir) }

// Plan is the plan file of namespace name.
func (p Paths) Plan(name string) string { return plan.Path(p.GeneratorDir, name) }

// Host returns path as seen on the host (below Root).
func (p Paths) Host(path string) string { return filepath.Join(p.Root, path) }

// ProcRoot returns path as process pid sees it (through /proc/PID/root,
// i.e. inside its mount namespace).
func (p Paths) ProcRoot(pid int, path string) string {
	return filepath.Join(p.Proc, fmt.Sprint(pid), "root", path)
}

// PlanFile is a loaded plan, or the reason it could not be loaded.
type PlanFile struct {
	Name string
	Path string
	Plan *plan.Namespace // nil when Err is set
	Err  error
}

// LoadPlans reads every compiled plan, sorted by name. A missing plan dir
// is not an error (nothing compiled yet); unreadable plans are returned
// with Err so callers can show them instead of silently skipping them.
func (p Paths) LoadPlans() ([]PlanFile, error) {
	entries, err := os.ReadDir(p.PlanDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plan dir: %w", err)
	}
	var out []PlanFile
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		pf := PlanFile{Name: name, Path: filepath.Join(p.PlanDir(), e.Name())}
		pf.Plan, pf.Err = plan.Load(pf.Path)
		out = append(out, pf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// LoadPlan reads the plan of one namespace with an error message that says
// what to do when it is missing.
func (p Paths) LoadPlan(name string) (*plan.Namespace, error) {
	path := p.Plan(name)
	n, err := plan.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("namespace %q has no compiled plan (%s): is %s valid (vpn-confinement validate) and has systemctl daemon-reload run since?",
			name, path, filepath.Join(p.ConfigDir, name+".yaml"))
	}
	return n, err
}

// NormalizeUnit adds ".service" to a bare unit name, as systemctl does.
func NormalizeUnit(u string) string {
	if strings.HasSuffix(u, ".service") || strings.HasSuffix(u, ".socket") {
		return u
	}
	return u + ".service"
}

// FindUnit returns the plan that confines unit (a service or socket).
func FindUnit(plans []PlanFile, unit string) (*plan.Namespace, bool) {
	for _, pf := range plans {
		if pf.Plan == nil {
			continue
		}
		for _, u := range pf.Plan.Services {
			if u.Name == unit {
				return pf.Plan, true
			}
		}
		for _, u := range pf.Plan.Sockets {
			if u.Name == unit {
				return pf.Plan, true
			}
		}
	}
	return nil, false
}

// FindPublish returns the plan and publish entry whose generated units
// (vpn-publish-NAME-PORT.socket and .service) include unit.
func FindPublish(plans []PlanFile, unit string) (*plan.Namespace, *plan.Publish, bool) {
	for _, pf := range plans {
		if pf.Plan == nil {
			continue
		}
		for i, p := range pf.Plan.Publish {
			if unit == p.Unit+".socket" || (p.Activate == "" && unit == p.Unit+".service") {
				return pf.Plan, &pf.Plan.Publish[i], true
			}
		}
	}
	return nil, nil, false
}
