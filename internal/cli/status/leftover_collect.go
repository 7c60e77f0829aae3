//go:build linux

package status

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// leftovers finds namespaces without a plan that still run or are on
// record: the generator's orphans (a record of a good start, no file) and
// pins in the netns dir whose vpn-ns@ unit is still active. only limits
// the search to one name.
func (c Collector) leftovers(plans []paths.PlanFile, gen *generator.Output, only string) []Leftover {
	out := []Leftover{}
	planned := map[string]bool{}
	for _, pf := range plans {
		planned[pf.Name] = true
	}
	recorded := map[string][]string{}
	if gen != nil {
		for _, o := range gen.Orphans {
			recorded[o.Name] = o.Units
		}
		for _, r := range gen.Results {
			planned[r.Name] = true // a file exists: not a leftover (maybe not compiled yet)
		}
	}
	names := map[string]bool{}
	for n := range recorded {
		names[n] = true
	}
	if entries, err := os.ReadDir(c.Paths.NetnsDir); err == nil {
		for _, e := range entries {
			names[e.Name()] = true
		}
	}
	var cands []string
	for n := range names {
		if !planned[n] && (only == "" || n == only) {
			cands = append(cands, n)
		}
	}
	sort.Strings(cands)
	if len(cands) == 0 {
		return out
	}
	// One systemctl call: every candidate's vpn-ns@ and recorded units.
	var all []string
	for _, n := range cands {
		all = append(all, units.Instance(units.NsTemplate, n))
		all = append(all, recorded[n]...)
	}
	props := map[string]Unit{}
	systemdKnown := true
	if res, err := c.Systemd.Show(all, unitProps...); err == nil {
		for i, u := range all {
			props[u] = unitOf(u, res[i])
		}
	} else {
		systemdKnown = false
	}
	for _, n := range cands {
		l := Leftover{Name: n, Config: leftoverConfig(c.Paths.ConfigDir, n), Confined: []Unit{}, Errors: []string{}}
		ns := units.Instance(units.NsTemplate, n)
		l.Unit = props[ns]
		l.Unit.Name = ns
		pin := c.Paths.Netns(n)
		l.Netns = Netns{Path: pin, Present: netns.IsPinned(pin)}
		_, isRecorded := recorded[n]
		// A pin that is not ours (no record, no active vpn-ns@) is none
		// of our business.
		if !isRecorded && !active(l.Unit.ActiveState) {
			continue
		}
		if isRecorded {
			l.Record = filepath.Join(c.Paths.StateDir, n+".units")
		}
		if !systemdKnown {
			l.Errors = append(l.Errors, "unit states: systemd could not be asked")
		}
		var pinID procfs.ID
		if l.Netns.Present {
			if id, err := procfs.Stat(pin); err == nil {
				pinID, l.Netns.ID = id, id.String()
			}
		}
		for _, name := range recorded[n] {
			u := props[name]
			u.Name = name
			if u.MainPID > 0 {
				id, err := procfs.NetnsOf(c.Paths.Proc, u.MainPID)
				switch {
				case err == nil:
					in := l.Netns.Present && id == pinID
					u.InNamespace, u.ProcessNetns = &in, id.String()
				case !errors.Is(err, fs.ErrNotExist):
					l.Errors = append(l.Errors, fmt.Sprintf("namespace of %s (PID %d): %v", name, u.MainPID, err))
				}
			}
			l.Confined = append(l.Confined, u)
		}
		AssessLeftover(&l)
		out = append(out, l)
	}
	return out
}
