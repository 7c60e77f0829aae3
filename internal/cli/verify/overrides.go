package verify

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// checkOverrides compares the unit's effective settings (what systemd
// applies, from systemctl show) with what the generated file sets: a drop-in
// that sorts after ours, or one that appeared after the generator ran
// (systemd loads a unit that was not loaded from disk without running the
// generators), can weaken confinement behind the generator's back. Each
// weakening names the drop-in lines that set it.
func checkOverrides(l *check.List, f Facts) {
	var bad []string
	add := func(what string, keys ...string) {
		bad = append(bad, what+culprits(f, keys...))
	}
	props := f.Props
	allowed := allowedCaps(f)
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		var extra []string
		for _, c := range effectiveCaps(props[key]) {
			if !allowed[c] {
				if why := hardening.Forbidden[c]; why != "" {
					extra = append(extra, c+" (forbidden: "+why+")")
				} else {
					extra = append(extra, c)
				}
			}
		}
		if len(extra) > 0 {
			add(fmt.Sprintf("%s has %s, beyond the compiled set (%s)", key, strings.Join(extra, ", "), setText(allowed)), key)
		}
	}
	if v := props["NoNewPrivileges"]; v != "" && v != "yes" {
		add("NoNewPrivileges="+v, "NoNewPrivileges")
	}
	if f.Kind == KindService || f.Kind == KindProxy {
		for _, key := range []string{"InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths"} {
			if missing := missingEntries(key, f.Reference, props[key]); len(missing) > 0 {
				add(fmt.Sprintf("%s lacks %s (reset by a later %s=?)", key, strings.Join(missing, " "), key), key)
			}
		}
		if want := lastValue(f.Reference, "ProtectSystem"); protectRank[want] > protectRank[props["ProtectSystem"]] && props["ProtectSystem"] != "" {
			add(fmt.Sprintf("ProtectSystem=%s, weaker than the generated %s", props["ProtectSystem"], want), "ProtectSystem")
		}
		for _, w := range reachWeakenings(f) {
			add(w.what, w.keys...)
		}
		if root := runsAsRoot(props); root && (f.Kind == KindProxy || f.Service != nil && !f.Service.Root) {
			add("the unit runs as root (User="+props["User"]+", DynamicUser="+props["DynamicUser"]+"), but it was compiled as a non-root service", "User", "DynamicUser")
		}
	}
	for _, cmd := range privilegedCommands(props) {
		add("runs "+cmd+" with full privileges (\"+\": every capability, none of the hidden paths hidden)", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost", "ExecCondition")
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		l.Add("overrides", check.Fail, "the effective settings are weaker than %s: %s", f.ReferenceFile, strings.Join(bad, "; "))
		return
	}
	if len(f.Later) == 0 {
		l.Add("overrides", check.Pass, "no drop-in after %s; effective capabilities, hidden paths, mounts, IP filter and address families are the generated ones", filepath.Base(f.ReferenceFile))
		return
	}
	files := map[string]bool{}
	for _, s := range f.Later {
		files[s.File] = true
	}
	l.Add("overrides", check.Pass, "the effective capabilities, hidden paths, mounts, IP filter and address families are the generated ones (later drop-ins: %s)", strings.Join(sortedKeys(files), " "))
}

// culprits names the later drop-in lines that set keys, or says that none
// does.
func culprits(f Facts, keys ...string) string {
	var out []string
	for _, s := range f.Later {
		for _, k := range keys {
			if s.Key == k || s.Key == k+"Ex" {
				out = append(out, fmt.Sprintf("%s:%d: %s=%s", s.File, s.Line, s.Key, s.Value))
			}
		}
	}
	if len(out) == 0 {
		return " (no drop-in after ours sets it; systemctl cat " + f.Unit + " shows where it comes from)"
	}
	return " (set by " + strings.Join(out, ", ") + ")"
}

// effectiveCaps parses systemctl show's capability lists ("cap_chown
// cap_setuid").
func effectiveCaps(v string) []string {
	var out []string
	for _, c := range strings.Fields(v) {
		out = append(out, strings.ToUpper(c))
	}
	return out
}

func setText(m map[string]bool) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(sortedKeys(m), " ")
}

var protectRank = map[string]int{"": 0, "no": 0, "yes": 1, "full": 2, "strict": 3}

func runsAsRoot(p map[string]string) bool {
	if p["DynamicUser"] == "yes" {
		return false
	}
	u := p["User"]
	return u == "" || u == "root" || u == "0"
}

func lastValue(settings []unitfile.Setting, key string) string {
	v := ""
	for _, s := range settings {
		if s.Key == key {
			v = s.Value
		}
	}
	return v
}

// missingEntries lists the entries the reference sets for key that the
// effective value lacks. Entries are compared without systemd's "-"
// prefix; bind mounts as source:destination, temporary file systems by
// path.
func missingEntries(key string, ref []unitfile.Setting, effective string) []string {
	norm := func(e string) string {
		e = strings.TrimPrefix(strings.TrimPrefix(e, "-"), "+")
		parts := strings.Split(e, ":")
		switch key {
		case "BindReadOnlyPaths":
			if len(parts) == 1 {
				return parts[0] + ":" + parts[0]
			}
			return parts[0] + ":" + parts[1]
		case "TemporaryFileSystem":
			return parts[0]
		}
		return e
	}
	have := map[string]bool{}
	for _, e := range strings.Fields(effective) {
		have[norm(e)] = true
	}
	var out []string
	for _, s := range ref {
		if s.Key != key {
			continue
		}
		for _, e := range strings.Fields(s.Value) {
			if n := norm(e); !have[n] && !contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// privilegedCommands lists the "+" commands of the unit (flags=privileged
// in systemctl show's Exec*Ex properties) other than the tripwire hooks
// the generator adds.
func privilegedCommands(p map[string]string) []string {
	tripwire := units.LibexecDir + "/vpn-confinement-tripwire"
	var out []string
	for _, key := range []string{"ExecConditionEx", "ExecStartPreEx", "ExecStartEx", "ExecStartPostEx", "ExecReloadEx", "ExecStopEx", "ExecStopPostEx"} {
		for _, cmd := range strings.Split(p[key], "\n") {
			path, flags := execField(cmd, "path"), execField(cmd, "flags")
			// "+" is flags=privileged; "!" (no-setuid) and "!!" (ambient)
			// keep the sandbox (measured, systemd 252).
			if path == "" || path == tripwire || !strings.Contains(flags, "privileged") {
				continue
			}
			out = append(out, strings.TrimSuffix(key, "Ex")+"=+"+execField(cmd, "argv[]"))
		}
	}
	return out
}

// execField reads one field of systemctl show's command notation:
// "{ path=/bin/x ; argv[]=/bin/x -a ; flags=privileged ; ... }".
func execField(cmd, name string) string {
	for _, part := range strings.Split(strings.Trim(strings.TrimSpace(cmd), "{}"), " ; ") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), name+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
