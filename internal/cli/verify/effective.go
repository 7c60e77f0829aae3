package verify

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// EffectiveProps are the settings systemd applies to the unit that the
// drop-in sets: what the "effective" check compares. systemd's view is
// the one that counts: it includes what the generator cannot see when it
// runs (systemctl set-property, other generators' drop-ins, unit files
// edited without a daemon-reload).
var EffectiveProps = []string{"CapabilityBoundingSet", "AmbientCapabilities", "InaccessiblePaths", "TemporaryFileSystem",
	"BindReadOnlyPaths", "BindPaths", "ReadWritePaths", "IPAddressDeny", "IPAddressAllow", "ProtectSystem",
	"NoNewPrivileges", "PrivateNetwork", "RestrictAddressFamilies"}

// dropIn is what the generator's drop-in sets, with list settings
// accumulated as systemd does (an empty assignment resets).
type dropIn map[string][]string

func readDropIn(p paths.Paths, unit string) (dropIn, error) {
	path := filepath.Join(p.GeneratorDir, unit+".d", config.DropInName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := dropIn{}
	for _, s := range unitfile.Parse(path, b) {
		if s.Section != "Service" {
			continue
		}
		if s.Value == "" {
			d[s.Key] = []string{}
			continue
		}
		d[s.Key] = append(d[s.Key], strings.Fields(s.Value)...)
	}
	return d, nil
}

// checkEffective compares systemd's effective settings of the unit with
// its drop-in, and fails on every one that is weaker: a capability or an
// address family beyond the drop-in's, a hidden path not hidden, a bind
// of a hidden or protected path, the IP filter loosened, ProtectSystem=
// or NoNewPrivileges= weakened, PrivateNetwork= set.
func checkEffective(l *check.List, p paths.Paths, f Facts) {
	if strings.HasSuffix(f.Unit, ".socket") {
		l.Add("effective", check.Skip, "a socket unit's processes are its service's: verify the service")
		return
	}
	if _, ok := f.Props["CapabilityBoundingSet"]; !ok {
		l.Add("effective", check.Skip, "systemd did not report the unit's sandboxing settings")
		return
	}
	d, err := readDropIn(p, f.Unit)
	if err != nil {
		l.Add("effective", check.Fail, "cannot read the generator's drop-in to compare with: %v", err)
		return
	}
	var bad []string
	badf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	eff := func(k string) []string { return strings.Fields(f.Props[k]) }

	// Capabilities: systemd prints them lower-case.
	allowed := map[string]bool{}
	for _, c := range d["CapabilityBoundingSet"] {
		allowed[strings.ToLower(c)] = true
	}
	var extra []string
	for _, c := range eff("CapabilityBoundingSet") {
		if !allowed[c] {
			extra = append(extra, c)
		}
	}
	if len(extra) > 0 {
		badf("CapabilityBoundingSet has %s, which the drop-in does not give", strings.Join(extra, " "))
	}
	if a := eff("AmbientCapabilities"); len(a) > 0 {
		badf("AmbientCapabilities=%s (the drop-in empties it)", strings.Join(a, " "))
	}

	// Hidden paths and tmpfs mounts: every one of the drop-in's must be
	// in effect.
	have := set(trimDash(eff("InaccessiblePaths")))
	for _, x := range trimDash(d["InaccessiblePaths"]) {
		if !have[x] {
			badf("InaccessiblePaths lacks %s", x)
		}
	}
	have = set(eff("TemporaryFileSystem"))
	for _, x := range d["TemporaryFileSystem"] {
		if !have[x] {
			badf("TemporaryFileSystem lacks %s", x)
		}
	}
	// Binds: the drop-in's read-only binds in effect; no other bind from
	// a hidden path (a bind from the host's view lands on the hiding).
	want := map[string]bool{}
	for _, k := range []string{"BindReadOnlyPaths", "BindPaths"} {
		for _, b := range d[k] {
			want[bindKey(b)] = true
		}
	}
	have = map[string]bool{}
	for _, b := range eff("BindReadOnlyPaths") {
		have[bindKey(b)] = true
	}
	for _, b := range d["BindReadOnlyPaths"] {
		if !have[bindKey(b)] && !strings.HasPrefix(b, "-") {
			badf("BindReadOnlyPaths lacks %s", b)
		}
	}
	hidden := append(trimDash(d["InaccessiblePaths"]), "/run/systemd", plan.RuntimeDir)
	for _, k := range []string{"BindReadOnlyPaths", "BindPaths"} {
		for _, b := range eff(k) {
			if want[bindKey(b)] {
				continue
			}
			src := strings.SplitN(strings.TrimLeft(b, "-"), ":", 2)[0]
			for _, h := range hidden {
				if src == h || strings.HasPrefix(src, h+"/") || strings.HasPrefix(h, strings.TrimSuffix(src, "/")+"/") {
					badf("%s=%s re-exposes %s", k, b, h)
					break
				}
			}
		}
	}
	for _, k := range []string{"BindPaths", "ReadWritePaths"} {
		for _, b := range eff(k) {
			src := strings.SplitN(strings.TrimLeft(b, "-+"), ":", 2)[0]
			if why := hardening.WriteRefusal(src); why != "" && !strings.HasPrefix(src, "/home/") && !want[bindKey(b)] {
				badf("%s makes %s writable", k, src)
			}
		}
	}

	// The IP filter of an allowList namespace.
	if contains(d["IPAddressDeny"], "any") {
		deny := prefixes(eff("IPAddressDeny"))
		if !deny["0.0.0.0/0"] || !deny["::/0"] {
			badf("IPAddressDeny=%s, the drop-in denies any", f.Props["IPAddressDeny"])
		}
		ok := prefixes(d["IPAddressAllow"])
		var more []string
		for a := range prefixes(eff("IPAddressAllow")) {
			if !ok[a] {
				more = append(more, a)
			}
		}
		if len(more) > 0 {
			sort.Strings(more)
			badf("IPAddressAllow has %s, which the drop-in does not allow", strings.Join(more, " "))
		}
	}

	rank := map[string]int{"no": 0, "yes": 1, "full": 2, "strict": 3}
	if ps := d["ProtectSystem"]; len(ps) > 0 && rank[f.Props["ProtectSystem"]] < rank[ps[len(ps)-1]] {
		badf("ProtectSystem=%s, the drop-in sets %s", f.Props["ProtectSystem"], ps[len(ps)-1])
	}
	if f.Props["NoNewPrivileges"] != "yes" {
		badf("NoNewPrivileges=%s", f.Props["NoNewPrivileges"])
	}
	if f.Props["PrivateNetwork"] == "yes" {
		badf("PrivateNetwork=yes")
	}
	fam := set(d["RestrictAddressFamilies"])
	effFam := eff("RestrictAddressFamilies")
	switch {
	case len(fam) == 0:
	case len(effFam) == 0:
		badf("RestrictAddressFamilies is not set: every address family is allowed")
	case strings.HasPrefix(effFam[0], "~"):
		badf("RestrictAddressFamilies=%s is a deny list", f.Props["RestrictAddressFamilies"])
	default:
		var more []string
		for _, a := range effFam {
			if !fam[a] {
				more = append(more, a)
			}
		}
		if len(more) > 0 {
			badf("RestrictAddressFamilies has %s", strings.Join(more, " "))
		}
	}

	if len(bad) > 0 {
		l.Add("effective", check.Fail, "systemd applies weaker settings than %s.d/%s (a later drop-in, systemctl set-property, or files edited without a daemon-reload): %s", f.Unit, config.DropInName, strings.Join(bad, "; "))
		return
	}
	l.Add("effective", check.Pass, "systemd applies what %s sets: capabilities, hidden paths, binds, IP filter, ProtectSystem, NoNewPrivileges, address families", config.DropInName)
}

// bindKey normalises a bind as written (SRC[:DST[:OPTS]], maybe "-") and
// as systemctl show prints it (SRC:DST:rbind) to "SRC:DST".
func bindKey(b string) string {
	parts := strings.Split(strings.TrimLeft(b, "-"), ":")
	dst := parts[0]
	if len(parts) > 1 && parts[1] != "" {
		dst = parts[1]
	}
	return parts[0] + ":" + dst
}

func trimDash(l []string) []string {
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, strings.TrimLeft(x, "-"))
	}
	return out
}

func set(l []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range l {
		m[x] = true
	}
	return m
}

// prefixes normalises an IP list ("any", "localhost", prefixes).
func prefixes(l []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range l {
		switch x {
		case "any":
			m["0.0.0.0/0"], m["::/0"] = true, true
			continue
		case "localhost":
			m["127.0.0.0/8"], m["::1/128"] = true, true
			continue
		}
		if p, err := netip.ParsePrefix(x); err == nil {
			m[p.Masked().String()] = true
		} else if a, err := netip.ParseAddr(x); err == nil {
			m[netip.PrefixFrom(a, a.BitLen()).String()] = true
		} else {
			m[x] = true
		}
	}
	return m
}

// controlPlanes are the host paths the drop-in hides that could start,
// change or reload units or containers, and this tool's own state. What
// is hidden as a file comes back when its daemon re-creates it, and what
// appears after the unit started is not hidden at all: this check finds
// both on the running unit.
func controlPlanes(n *plan.Namespace, unit string) []string {
	out := []string{"/run/systemd/private", "/run/systemd/system", "/run/systemd/transient", "/run/systemd/generator"}
	for _, l := range [][]string{hardening.ControlPlanes, hardening.ToolState} {
		out = append(out, trimDash(l)...)
	}
	if !(n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC) {
		allow := false
		for _, s := range n.Services {
			allow = allow || s.Name == unit && s.AllowSystemBus
		}
		if !allow {
			out = append(out, "/run/dbus/system_bus_socket")
		}
	}
	return out
}
