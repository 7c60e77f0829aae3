package status

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Orphan is a namespace without a compiled plan that runs, or whose
// units ran confined at its last good start (the record the namespace
// helper keeps, /var/lib/vpn-confinement/NAME.units). Its confined
// units keep their drop-in's namespace until systemd reloads; after
// the next daemon-reload and restart they run on the host's network.
type Orphan struct {
	Namespace string `json:"namespace"`
	// File is the namespace file when it still exists (invalid, so not
	// compiled); "" when it was removed. Config is where it was.
	File   string `json:"file,omitempty"`
	Config string `json:"config"`
	// Running: vpn-ns@NAME is active or /run/netns/NAME exists.
	Running      bool   `json:"running"`
	NetnsPresent bool   `json:"netnsPresent"`
	Namespaced   Unit   `json:"namespaceUnit"`
	Units        []Unit `json:"units"` // recorded at its last good start
	Record       string `json:"record,omitempty"`
	// Problem makes status exit 1; Note is the harmless case (a record
	// of a namespace that no longer runs).
	Problem string `json:"problem,omitempty"`
	Note    string `json:"note,omitempty"`
}

// orphanCandidates are the names that may be orphans: the generator's
// orphans (a record, no file), pinned namespaces and state records, all
// without a plan.
func (c Collector) orphanCandidates(plans []paths.PlanFile, gen *generator.Output) []string {
	have := map[string]bool{}
	for _, pf := range plans {
		have[pf.Name] = true
	}
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if !have[name] && !seen[name] && config.ValidNamespaceName(name) {
			seen[name] = true
			out = append(out, name)
		}
	}
	if gen != nil {
		for _, o := range gen.Orphans {
			add(o.Name)
		}
	}
	if es, err := os.ReadDir(c.Paths.NetnsDir); err == nil {
		for _, e := range es {
			add(e.Name())
		}
	}
	recs, _ := filepath.Glob(filepath.Join(c.Paths.StateDir, "*.units"))
	for _, r := range recs {
		add(strings.TrimSuffix(filepath.Base(r), ".units"))
	}
	sort.Strings(out)
	return out
}

// orphanUnits are the units to ask systemd about for the candidates.
func orphanUnits(candidates []string, stateDir string) []string {
	var out []string
	for _, name := range candidates {
		out = append(out, units.Instance(units.NsTemplate, name))
		out = append(out, readRecord(stateDir, name)...)
	}
	return out
}

// readRecord reads the units of a state record (one per line).
func readRecord(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(dir, name+".units"))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); config.ValidUnitName(l) {
			out = append(out, l)
		}
	}
	return out
}

// collectOrphans builds the orphans from the candidates' unit states.
func (c Collector) collectOrphans(gen *generator.Output, candidates []string, props map[string]systemd.Props, known Known) []Orphan {
	files := map[string]string{}
	if gen != nil {
		for _, r := range gen.Results {
			files[r.Name] = r.File
		}
	}
	recorded := map[string]bool{}
	recs, _ := filepath.Glob(filepath.Join(c.Paths.StateDir, "*.units"))
	for _, r := range recs {
		recorded[strings.TrimSuffix(filepath.Base(r), ".units")] = true
	}
	out := []Orphan{}
	for _, name := range candidates {
		ns := units.Instance(units.NsTemplate, name)
		o := Orphan{Namespace: name, File: files[name], Namespaced: unitOf(ns, props[ns]), Units: []Unit{}}
		_, err := os.Lstat(c.Paths.Netns(name))
		o.NetnsPresent = err == nil
		active := o.Namespaced.ActiveState == "active" || o.Namespaced.ActiveState == "reloading"
		// A pinned namespace that is neither ours (no record) nor run by
		// vpn-ns@ is someone else's (ip netns add).
		if !active && !recorded[name] && files[name] == "" {
			continue
		}
		o.Running = active || (o.NetnsPresent && recorded[name])
		if !o.Running && o.File != "" {
			continue // an invalid file of a stopped namespace: see notCompiled
		}
		if recorded[name] {
			o.Record = filepath.Join(c.Paths.StateDir, name+".units")
		}
		var pinID procfs.ID
		if o.NetnsPresent {
			pinID, _ = procfs.Stat(c.Paths.Netns(name))
		}
		for _, u := range readRecord(c.Paths.StateDir, name) {
			unit := unitOf(u, props[u])
			// Where it runs now: still inside (confined until its next
			// restart) or already on the host's network.
			if unit.MainPID > 0 && known.Kernel {
				if id, err := procfs.NetnsOf(c.Paths.Proc, unit.MainPID); err == nil {
					in := o.NetnsPresent && id == pinID
					unit.InNamespace = &in
				}
			}
			o.Units = append(o.Units, unit)
		}
		o.Config = filepath.Join(c.Paths.ConfigDir, name+".yaml")
		assessOrphan(&o, known)
		out = append(out, o)
	}
	return out
}

// assessOrphan sets the orphan's problem or note.
func assessOrphan(o *Orphan, k Known) {
	ns := units.Instance(units.NsTemplate, o.Namespace)
	var active, inside, outside []string
	for _, u := range o.Units {
		if u.ActiveState != "active" {
			continue
		}
		active = append(active, u.Name)
		switch {
		case u.InNamespace == nil:
		case *u.InNamespace:
			inside = append(inside, u.Name)
		default:
			outside = append(outside, u.Name)
		}
	}
	us := "its units"
	if len(active) > 0 {
		us = strings.Join(active, ", ")
	}
	// After the daemon-reload that dropped the plan, the units' drop-ins
	// are gone too: stopping the namespace no longer stops them, so the
	// command names them first.
	stop := strings.Join(append(append([]string{}, active...), ns), " ")
	where := ""
	if len(outside) > 0 {
		where += "; " + strings.Join(outside, ", ") + " already run OUTSIDE the namespace, on the host's network"
	}
	if len(inside) > 0 {
		where += "; " + strings.Join(inside, ", ") + " still run inside it, without their drop-in"
	}
	switch {
	case o.Running && o.File == "":
		o.Problem = fmt.Sprintf("namespace %s is running without a file (%s was removed): %s run unconfined after their next restart%s; to keep them confined restore %s, to end the confinement on purpose: systemctl stop %s",
			o.Namespace, o.Config, us, where, o.Config, stop)
	case o.Running:
		o.Problem = fmt.Sprintf("namespace %s is running without a compiled plan: %s is not valid, so %s are blocked at their next start%s; see: vpn-confinement validate %s", o.Namespace, o.File, us, where, o.File)
	case o.File == "" && len(active) > 0:
		o.Note = fmt.Sprintf("namespace %s has no file any more and does not run; %s, confined at its last good start, still run in what is left of it (no tunnel) and on the host's network after their next restart (removing the file is how confinement ends); forget the record: rm %s", o.Namespace, us, o.Record)
	case o.File == "":
		o.Note = fmt.Sprintf("namespace %s has no file any more and nothing of it runs; forget its record: rm %s", o.Namespace, o.Record)
	}
	if !k.Systemd && o.Problem == "" && o.NetnsPresent {
		o.Note = fmt.Sprintf("namespace %s has no plan but its pin in /run/netns exists (unit states unknown)", o.Namespace)
	}
}

func (o Orphan) writeText(p printer) {
	if o.Problem != "" {
		p.line("PROBLEM: %s", o.Problem)
	}
	if o.Note != "" {
		p.line("note: %s", o.Note)
	}
}
