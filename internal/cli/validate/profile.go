package validate

import (
	"fmt"
	"io"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Service is what the drop-in of one confined service takes away and what
// it leaves, from the same plan and tables the drop-in is rendered from
// (internal/units, internal/hardening), so it cannot tell a different
// story. The JSON form is part of validate's stable interface.
type Service struct {
	Unit    string `json:"unit"`
	Profile string `json:"profile"`
	// RunsAs is the user ("root" for root services, "a dynamic user" for
	// DynamicUser=yes), or "" when the unit is not installed yet.
	RunsAs string `json:"runsAs"`
	// Capabilities is the bounding set ([] for none).
	Capabilities []string `json:"capabilities"`
	// Families are the address families it may use.
	Families      []string `json:"addressFamilies"`
	ProtectSystem string   `json:"protectSystem"`
	ProtectHome   string   `json:"protectHome"`
	// Writable are the paths it may write despite ProtectSystem=/
	// ProtectHome= (besides its private /tmp), with why.
	Writable []Writable `json:"writable"`
	// Removes says what the profile takes away, one item per mechanism.
	Removes []string `json:"removes"`
	// Preset is the app preset applied, and what to set in the app.
	Preset      string   `json:"preset,omitempty"`
	PresetNotes []string `json:"presetNotes"`
}

// Writable is one writable path and why it is writable.
type Writable struct {
	Path string `json:"path"`
	Why  string `json:"why"`
}

// services describes every confined service of a compiled namespace.
// lookup finds the units' files, for the user each runs as (nil: unknown).
func services(n *plan.Namespace, lookup config.UnitLookup) []Service {
	out := []Service{}
	for _, u := range n.Services {
		out = append(out, describe(n, u, lookup))
	}
	return out
}

func describe(n *plan.Namespace, u plan.Unit, lookup config.UnitLookup) Service {
	strict := u.HardeningProfile == plan.HardeningStrict
	s := Service{Unit: u.Name, Profile: u.HardeningProfile, Capabilities: append([]string{}, u.Capabilities...),
		Writable: []Writable{}, PresetNotes: []string{}}
	if s.Profile == "" {
		s.Profile = plan.HardeningBaseline
	}
	s.Families = units.Families(u)
	var uf *unitfile.Unit
	if lookup != nil {
		if f, ok := lookup.Lookup(u.Name); ok && f.Fragment != "" {
			uf = f
		}
	}
	switch user, dynamic := "", false; {
	case u.Root:
		s.RunsAs = "root"
	case uf == nil:
		s.RunsAs = ""
	default:
		user, dynamic = config.ServiceUser(uf, u.Name)
		s.RunsAs = user
		if dynamic {
			s.RunsAs = "a dynamic user"
		}
	}
	s.ProtectSystem, s.ProtectHome = units.Protection(u, uf)

	// Writable paths, in the drop-in's order, each with its reason.
	preset, _ := config.LookupPreset(u.App)
	fromPreset := map[string]bool{}
	if preset != nil {
		for _, p := range append(append([]string{}, preset.Writable...), preset.StrictWritable...) {
			fromPreset[p] = true
		}
		s.Preset = preset.Name
		s.PresetNotes = append(s.PresetNotes, preset.Notes...)
		if u.WriteExecute {
			s.PresetNotes = append(s.PresetNotes, "the strict profile keeps writable executable memory for it (no MemoryDenyWriteExecute=): it fails at start without")
		}
	}
	for _, p := range u.ReadWritePaths {
		why := "readWritePaths"
		if fromPreset[p] {
			why = "preset " + preset.Name
		}
		s.Writable = append(s.Writable, Writable{Path: p, Why: why})
	}
	if u.Home != "" {
		found := false
		for i := range s.Writable {
			if s.Writable[i].Path == u.Home {
				s.Writable[i].Why += ", its home"
				found = true
			}
		}
		if !found {
			s.Writable = append(s.Writable, Writable{Path: u.Home, Why: "its home"})
		}
	}
	for _, rf := range u.RuntimeFiles {
		s.Writable = append(s.Writable, Writable{Path: rf, Why: "its PIDFile=, bound from " + units.RuntimeFileSource(n.Name, u.Name, rf)})
	}

	rm := func(format string, args ...any) { s.Removes = append(s.Removes, fmt.Sprintf(format, args...)) }
	rm("the host's network (it runs in %s)", plan.NetnsPath(n.Name))
	if u.AllowSystemBus || (n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC) {
		rm("the host's control planes (systemd, udev, user managers, container engines; the D-Bus system bus stays)")
	} else {
		rm("the host's control planes (systemd, the D-Bus system bus, udev, user managers, container engines)")
	}
	rm("this tool's keys and state")
	if len(u.Capabilities) == 0 {
		rm("every capability")
	} else {
		rm("every other capability (%s)", forbiddenExamples)
	}
	rm("other address families")
	rm("writes outside its writable paths (ProtectSystem=%s%s, ProtectHome=%s)", s.ProtectSystem, map[bool]string{true: " with /run", false: ""}[s.ProtectSystem == "strict"], s.ProtectHome)
	rm("privilege gain (NoNewPrivileges, RestrictSUIDSGID)")
	rm("the shared /tmp")
	if strict {
		code := "writable code, "
		if u.WriteExecute {
			code = "" // MemoryDenyWriteExecute= is left out for its preset
		}
		rm("devices, kernel modules, tunables and logs, the clock, the hostname, new namespaces, realtime, %s@mount and non-native system calls, other users' /proc (strict)", code)
	}
	return s
}

// forbiddenExamples names the capabilities that matter most among those
// no confined service ever gets.
var forbiddenExamples = func() string {
	var ex []string
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE", "CAP_SYS_MODULE"} {
		if hardening.Forbidden[c] != "" {
			ex = append(ex, c)
		}
	}
	return "among them " + strings.Join(ex, ", ")
}()

// writeServices prints the per-service lines under a file's verdict.
func writeServices(w io.Writer, ss []Service) {
	for _, s := range ss {
		var head []string
		head = append(head, s.Profile)
		switch s.RunsAs {
		case "":
			head = append(head, "runs as: unknown until the unit is installed")
		default:
			head = append(head, "runs as "+s.RunsAs)
		}
		if len(s.Capabilities) == 0 {
			head = append(head, "capabilities: none")
		} else {
			head = append(head, "capabilities: "+strings.Join(s.Capabilities, " "))
		}
		head = append(head, "families: "+strings.Join(s.Families, " "))
		if len(s.Writable) > 0 {
			var ws []string
			for _, p := range s.Writable {
				ws = append(ws, p.Path+" ("+p.Why+")")
			}
			head = append(head, "writable: "+strings.Join(ws, ", "))
		}
		fmt.Fprintf(w, "  %s: %s\n", s.Unit, strings.Join(head, "; "))
		fmt.Fprintf(w, "    removes: %s\n", strings.Join(s.Removes, "; "))
		for _, n := range s.PresetNotes {
			fmt.Fprintf(w, "    preset %s: %s\n", s.Preset, n)
		}
	}
}
