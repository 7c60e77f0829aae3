package status

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Leftover is a namespace without a plan: its file was removed (and
// systemctl daemon-reload has run since), but the namespace still exists
// or its last good start is still on record. The units it confined lost
// their drop-ins: a unit still running inside is no longer confined once
// it restarts, and nothing else says so.
type Leftover struct {
	Name string `json:"name"`
	// Config is the file the namespace came from (now gone).
	Config string `json:"config"`
	// Record is the state record of its last good start ("" if none).
	Record string `json:"record,omitempty"`
	Netns  Netns  `json:"netns"`
	// Unit is vpn-ns@NAME.service.
	Unit Unit `json:"unit"`
	// Confined are the units recorded at its last good start.
	Confined []Unit   `json:"confined"`
	Problems []string `json:"problems"`
	Notes    []string `json:"notes"`
	// Errors say what could not be read.
	Errors []string `json:"errors"`
}

// Running reports whether the namespace itself is still there.
func (l *Leftover) Running() bool {
	return l.Netns.Present || active(l.Unit.ActiveState)
}

func active(s string) bool {
	return s == "active" || s == "activating" || s == "reloading" || s == "deactivating"
}

// AssessLeftover fills l.Problems and l.Notes: a namespace that still runs
// is a problem (what runs in it is about to lose its confinement, and the
// admin must decide), a mere record is a note.
func AssessLeftover(l *Leftover) {
	l.Problems, l.Notes = []string{}, []string{}
	ns := units.Instance(units.NsTemplate, l.Name)
	var inside, outside, others []string
	for _, u := range l.Confined {
		switch {
		case !active(u.ActiveState):
		case u.InNamespace != nil && *u.InNamespace:
			inside = append(inside, u.Name)
		case u.InNamespace != nil:
			outside = append(outside, u.Name)
		default:
			others = append(others, u.Name)
		}
	}
	if l.Running() {
		var where []string
		if active(l.Unit.ActiveState) {
			where = append(where, ns+" is "+l.Unit.ActiveState)
		}
		if l.Netns.Present {
			where = append(where, l.Netns.Path+" exists")
		}
		l.Problems = append(l.Problems, fmt.Sprintf("%s was removed, but namespace %s still runs (%s): nothing confines its units any more", l.Config, l.Name, strings.Join(where, ", ")))
		for _, u := range inside {
			l.Problems = append(l.Problems, fmt.Sprintf("%s still runs inside the namespace, but without its drop-in: after its next restart it runs on the host's network", u))
		}
		for _, u := range outside {
			l.Problems = append(l.Problems, fmt.Sprintf("%s runs OUTSIDE the namespace: on the host's network", u))
		}
		for _, u := range others {
			l.Notes = append(l.Notes, fmt.Sprintf("%s is active (its namespace could not be read)", u))
		}
		stop := "systemctl stop " + strings.Join(append(append(append([]string{}, inside...), outside...), others...), " ")
		if len(inside)+len(outside)+len(others) == 0 {
			stop = ""
		} else {
			stop += ", then "
		}
		l.Notes = append(l.Notes,
			fmt.Sprintf("to keep them confined: restore %s, run vpn-confinement validate, then systemctl daemon-reload", l.Config),
			fmt.Sprintf("to end the confinement on purpose: %ssystemctl stop %s; started again, they run on the host's network", stop, ns))
		return
	}
	for _, u := range append(append(outside, inside...), others...) {
		l.Notes = append(l.Notes, fmt.Sprintf("%s runs on the host's network: %s, which confined it, was removed", u, l.Config))
	}
	if l.Record != "" {
		l.Notes = append(l.Notes, fmt.Sprintf("namespace %s is gone, but its record %s remains (the generator warns about it at every daemon-reload); delete it if the removal was intended", l.Name, l.Record))
	}
}

// writeLeftover renders one leftover namespace like a namespace block.
func (l *Leftover) writeText(w io.Writer) {
	state := "LEFTOVER"
	mark := "!"
	if !l.Running() {
		state, mark = "REMOVED", "-"
	}
	fmt.Fprintf(w, "%s %s: %s (no namespace file, no plan)\n", mark, l.Name, state)
	row := func(label, s string) { fmt.Fprintf(w, "    %-10s %s\n", label, s) }
	row("config", l.Config+" (removed)")
	ns := "absent"
	if l.Netns.Present {
		ns = "present " + l.Netns.ID
	}
	row("namespace", l.Netns.Path+" "+ns)
	row("unit", unitText(l.Unit))
	for _, u := range l.Confined {
		s := unitText(u)
		if u.InNamespace != nil {
			if *u.InNamespace {
				s += ", in the namespace (no longer confined)"
			} else {
				s += ", OUTSIDE the namespace (" + u.ProcessNetns + ")"
			}
		}
		row("confined", s)
	}
	for _, e := range l.Errors {
		fmt.Fprintf(w, "    unread: %s\n", e)
	}
	for _, p := range l.Problems {
		fmt.Fprintf(w, "    PROBLEM: %s\n", p)
	}
	for _, p := range l.Notes {
		fmt.Fprintf(w, "    note: %s\n", p)
	}
}

// leftoverConfig is the file a namespace of name came from.
func leftoverConfig(dir, name string) string { return filepath.Join(dir, name+".yaml") }
