package verify

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// dropIn is what the generated file sets, with list settings accumulated
// as systemd does (an empty assignment resets).
type dropIn map[string][]string

func referenceDropIn(ref []unitfile.Setting) dropIn {
	d := dropIn{}
	for _, s := range ref {
		if s.Section != "Service" {
			continue
		}
		if s.Value == "" {
			d[s.Key] = []string{}
			continue
		}
		d[s.Key] = append(d[s.Key], strings.Fields(s.Value)...)
	}
	return d
}

// weakening is one effective setting weaker than the generated file's,
// with the keys whose later assignments may be to blame.
type weakening struct {
	what string
	keys []string
}

// reachWeakenings finds what widens the unit's reach beyond the generated
// file: a bind that re-exposes a hidden path or makes a protected one
// writable, a loosened IP filter, PrivateNetwork=yes (a fresh namespace
// instead of ours), more address families. systemd's effective view is
// the one that counts: it includes what the generator cannot see
// (systemctl set-property, other generators' drop-ins, files edited
// without a daemon-reload).
func reachWeakenings(f Facts) []weakening {
	var out []weakening
	bad := func(keys []string, format string, args ...any) {
		out = append(out, weakening{fmt.Sprintf(format, args...), keys})
	}
	d := referenceDropIn(f.Reference)
	eff := func(k string) []string { return strings.Fields(f.Props[k]) }

	// No bind from a hidden path other than the generated ones: a bind
	// from the host's view lands on top of the hiding.
	want := map[string]bool{}
	for _, k := range []string{"BindReadOnlyPaths", "BindPaths"} {
		for _, b := range d[k] {
			want[bindKey(b)] = true
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
					bad([]string{k}, "%s=%s re-exposes %s", k, b, h)
					break
				}
			}
		}
	}
	for _, k := range []string{"BindPaths", "ReadWritePaths"} {
		for _, b := range eff(k) {
			src := strings.SplitN(strings.TrimLeft(b, "-+"), ":", 2)[0]
			if why := hardening.WriteRefusal(src); why != "" && !strings.HasPrefix(src, "/home/") && !want[bindKey(b)] && !contains(d["ReadWritePaths"], b) {
				bad([]string{k}, "%s makes %s writable", k, src)
			}
		}
	}

	// The IP filter of an allowList namespace.
	if contains(d["IPAddressDeny"], "any") {
		deny := prefixes(eff("IPAddressDeny"))
		if !deny["0.0.0.0/0"] || !deny["::/0"] {
			bad([]string{"IPAddressDeny"}, "IPAddressDeny=%s, the drop-in denies any", f.Props["IPAddressDeny"])
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
			bad([]string{"IPAddressAllow"}, "IPAddressAllow has %s, which the drop-in does not allow", strings.Join(more, " "))
		}
	}
	if f.Props["PrivateNetwork"] == "yes" {
		bad([]string{"PrivateNetwork"}, "PrivateNetwork=yes (a namespace of its own, not %s's)", f.Plan.Name)
	}
	fam := set(d["RestrictAddressFamilies"])
	effFam := eff("RestrictAddressFamilies")
	switch {
	case len(fam) == 0:
	case len(effFam) == 0:
		if _, reported := f.Props["RestrictAddressFamilies"]; reported {
			bad([]string{"RestrictAddressFamilies"}, "RestrictAddressFamilies is not set: every address family is allowed")
		}
	case strings.HasPrefix(effFam[0], "~"):
		bad([]string{"RestrictAddressFamilies"}, "RestrictAddressFamilies=%s is a deny list", f.Props["RestrictAddressFamilies"])
	default:
		var more []string
		for _, a := range effFam {
			if !fam[a] {
				more = append(more, a)
			}
		}
		if len(more) > 0 {
			bad([]string{"RestrictAddressFamilies"}, "RestrictAddressFamilies has %s", strings.Join(more, " "))
		}
	}
	return out
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
