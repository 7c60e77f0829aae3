package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/typo"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// DropInName is the file name of every drop-in the generator writes;
// drop-ins that sort after it override it, which the checks below inspect.
const DropInName = "50-vpn-confinement.conf"

// UnitLookup finds a unit's fragment and drop-ins on disk.
type UnitLookup interface {
	Lookup(name string) (*unitfile.Unit, bool)
}

func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true
	}
	return false
}

// afterOurs reports whether s comes from a drop-in applied after ours.
func afterOurs(u *unitfile.Unit, s unitfile.Setting) bool {
	return s.File != u.Fragment && filepath.Base(s.File) > DropInName
}

func where(s unitfile.Setting) string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

func (c *compiler) checkUnitFiles(n *plan.Namespace) {
	services := map[string]bool{}
	for _, su := range n.Services {
		services[su.Name] = true
	}
	lookup := c.env.Units
	if lookup == nil {
		lookup = noUnits{}
	}
	for i, su := range n.Services {
		if c.env.Units == nil {
			break
		}
		key := fmt.Sprintf("services[%d].unit", i)
		u, ok := c.env.Units.Lookup(su.Name)
		if !ok || u.Fragment == "" && !u.Masked {
			c.missingUnit(key, su.Name, su.InstalledLater, ".service")
			continue
		}
		if u.Masked {
			c.warnf(key, "%s is masked", su.Name)
			continue
		}
		c.checkNamespaceConflicts(key, u, "Service", n.Name)
		explicit := ""
		if e := c.d.schema.Services[serviceIndex(c.d.schema.Services, su.Name)].App; e != nil {
			explicit = *e
		}
		c.applyUnitFile(key, u, &n.Services[i], explicit)
		su = n.Services[i]
		if su.Root && !su.AllowRootInHighAssurance {
			// Evidence (measured under systemd 252): a root service, even
			// with no capabilities, can write what privileged host
			// processes load later (cron spools, udev rules, unit dirs)
			// unless the whole file system is read-only for it.
			c.errorf(key, "%s runs as root (no User= or DynamicUser= in %s): a confined root service could write files that privileged host processes load; give the unit User= or DynamicUser=yes, or add allowRoot: true to this entry (it then runs with ProtectSystem=strict and only the capabilities daemons need to drop privileges: %s)", su.Name, u.Fragment, strings.Join(hardening.RootBaseline, " "))
		}
		c.checkLateOverrides(key, u, su, n)
		c.checkExecPrefixes(key, u)
		c.checkBinds(key, u, su, n)
		c.checkShadowed(key, u)
		if p, _ := presetFor(su.Name, explicit); p != nil {
			if su.Root && su.HardeningProfile == plan.HardeningStrict {
				var missing []string
				for _, cp := range p.StrictCapabilities {
					if !containsString(su.Capabilities, cp) {
						missing = append(missing, cp)
					}
				}
				if len(missing) > 0 {
					c.warnf(key, "%s: the strict profile keeps only %s for root services, and without %s %s; add extraCapabilities: [%s] to this entry, or use the baseline profile", p.Name,
						strings.Join(hardening.RootStrict, " "), strings.Join(missing, " "), p.StrictWhy, strings.Join(missing, ", "))
				}
			}
			for _, need := range p.NeedsConfined {
				if !services[need] {
					c.warnf(key, "%s: %s must be confined in this namespace too (add \"- unit: %s\"): %s", p.Name, need, need, strings.Join(p.Notes, "; "))
				}
			}
		}
	}
	for i, sk := range n.Sockets {
		key := fmt.Sprintf("sockets[%d].unit", i)
		target := strings.TrimSuffix(sk.Name, ".socket") + ".service"
		if u, ok := lookup.Lookup(sk.Name); ok && !u.Masked {
			c.checkNamespaceConflicts(key, u, "Socket", n.Name)
			if acc, ok := u.Last("Socket", "Accept"); ok && truthy(acc.Value) {
				c.errorf(key, "%s: Accept=yes spawns one service instance per connection; confine the socket's template service and keep the socket on the host instead", where(acc))
			}
			if svc, ok := u.Last("Socket", "Service"); ok && svc.Value != "" {
				target = svc.Value
				if !strings.HasSuffix(target, ".service") {
					c.errorf(key, "%s: Service= must name a .service unit (got %q)", where(svc), target)
					continue
				}
			}
		} else if (!ok || u.Fragment == "") && c.env.Units != nil {
			c.missingUnit(key, sk.Name, sk.InstalledLater, ".socket")
		}
		if !services[target] {
			c.errorf(key, "a confined socket must activate a confined service: add \"- unit: %s\" to services so socket and service share this namespace", target)
		}
	}
}

// UnitNames is implemented by lookups that can list what is installed, for
// "did you mean" hints.
type UnitNames interface {
	Names(suffix string) []string
}

// missingUnit reports a listed unit that is not installed. It is an error
// unless the entry says installedLater: a typo in a unit name would
// otherwise leave the real unit running on the host's network, silently.
func (c *compiler) missingUnit(key, name string, later bool, suffix string) {
	if later {
		c.warnf(key, "%s is not installed yet (installedLater: true); it is confined as soon as it is", name)
		return
	}
	hint := ""
	if ln, ok := c.env.Units.(UnitNames); ok {
		hint = suggestUnit(name, ln.Names(suffix))
	}
	c.errorf(key, "%s is not installed (not found in the unit search path)%s; if it will be installed later, add installedLater: true to this entry", name, hint)
}

// suggestUnit finds the installed unit a mistyped name most likely meant.
// A template is suggested as an instance, since templates cannot be listed.
func suggestUnit(name string, installed []string) string {
	ext := filepath.Ext(name)
	stem := func(u string) string { return strings.TrimSuffix(strings.TrimSuffix(u, ext), "@") }
	want := stem(name)
	if at := strings.Index(want, "@"); at >= 0 {
		want = want[:at]
	}
	stems := make([]string, 0, len(installed))
	byStem := map[string]string{}
	for _, u := range installed {
		s := stem(u)
		stems = append(stems, s)
		byStem[s] = u
	}
	// Score a candidate by its whole name, or by its beginning when the
	// typed name is a shortened one ("qbitorrent" for "qbittorrent-nox@"),
	// at one extra edit so a full match wins.
	best, bestScore := "", max(2, len(want)/3)+1
	for _, s := range stems {
		score := typo.Distance(want, s)
		if len(want) >= 4 && len(s) > len(want) {
			score = min(score, typo.Distance(want, s[:len(want)])+1)
		}
		if score < bestScore || score == bestScore && s < best {
			best, bestScore = s, score
		}
	}
	if best == "" {
		return ""
	}
	if u := byStem[best]; strings.Contains(u, "@"+ext) {
		return fmt.Sprintf(" (did you mean an instance of the template %s, such as %s@NAME%s?)", u, best, ext)
	}
	return fmt.Sprintf(" (did you mean %s?)", byStem[best])
}

func (c *compiler) checkNamespaceConflicts(key string, u *unitfile.Unit, section, ns string) {
	for _, s := range u.Settings {
		switch {
		case s.Key == "NetworkNamespacePath" && s.Section == section && s.Value != "" && s.Value != plan.NetnsPath(ns):
			c.errorf(key, "%s: %s already sets NetworkNamespacePath=%s; vpn-confinement owns it, remove it", where(s), u.Name, s.Value)
		case s.Key == "PrivateNetwork" && s.Section == section && truthy(s.Value):
			c.errorf(key, "%s: %s sets PrivateNetwork=%s, which conflicts with joining the confinement namespace; remove it", where(s), u.Name, s.Value)
		case s.Key == "JoinsNamespaceOf" && s.Section == "Unit" && s.Value != "":
			c.errorf(key, "%s: %s sets JoinsNamespaceOf=%s, which conflicts with joining the confinement namespace; remove it", where(s), u.Name, s.Value)
		}
	}
}

func serviceIndex(list []unitSchema, name string) int {
	for i, u := range list {
		if str(u.Unit, "") == name {
			return i
		}
	}
	return 0
}

// execKeys are the settings that run commands of a service.
var execKeys = []string{"ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"}

// checkExecPrefixes refuses commands that run with full privileges.
// Measured under systemd 252: "+" and PermissionsStartOnly= commands stay
// in the namespace but run as root with every capability and without
// InaccessiblePaths=, so they could change its firewall, read the keys,
// or setns() out; "!" keeps the sandbox but runs as root.
func (c *compiler) checkExecPrefixes(key string, u *unitfile.Unit) {
	for _, s := range u.Settings {
		if s.Section != "Service" {
			continue
		}
		if s.Key == "PermissionsStartOnly" && truthy(s.Value) {
			c.errorf(key, "%s: PermissionsStartOnly=%s runs the unit's other commands with full privileges (every capability, hidden paths visible), from where they could leave the namespace; remove it (in a drop-in sorting after %s: PermissionsStartOnly=no)", where(s), s.Value, DropInName)
		}
		for _, k := range execKeys {
			if s.Key != k {
				continue
			}
			prefix := strings.TrimLeft(s.Value, "@-:")
			if strings.HasPrefix(prefix, "+") || strings.HasPrefix(strings.TrimLeft(prefix, "@-:!"), "+") {
				c.errorf(key, "%s: %s=%s runs with full privileges (every capability, hidden paths visible) inside the namespace, from where it could leave it; drop the + prefix (in a drop-in sorting after %s: %s= to reset, then the command without +)", where(s), s.Key, s.Value, DropInName, s.Key)
			}
		}
	}
}

// checkLateOverrides inspects the drop-ins applied after ours: a later
// drop-in that weakens a confinement setting makes the file invalid (its
// units are blocked), since systemd would apply it over ours.
func (c *compiler) checkLateOverrides(key string, u *unitfile.Unit, su plan.Unit, n *plan.Namespace) {
	allowed := map[string]bool{}
	for _, cp := range su.Capabilities {
		allowed[cp] = true
	}
	for _, s := range u.Settings {
		if !afterOurs(u, s) || s.Section != "Service" {
			continue
		}
		bad := ""
		switch s.Key {
		case "CapabilityBoundingSet", "AmbientCapabilities":
			for _, cp := range grantedCaps(s.Value) {
				if why := hardening.Forbidden[cp]; why != "" {
					bad = fmt.Sprintf("gives the service back %s, which would let it %s", cp, why)
					break
				}
			}
		case "InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths":
			if s.Value == "" {
				bad = "resets what vpn-confinement hides or mounts read-only (control planes, keys, the DNS files)"
			}
		case "BindPaths", "ReadWritePaths":
			for _, f := range strings.Fields(s.Value) {
				src := strings.TrimLeft(strings.SplitN(f, ":", 2)[0], "-+")
				if why := hardening.WriteRefusal(src); why != "" && !strings.HasPrefix(src, "/home/") {
					bad = "makes " + src + " writable: " + why
					break
				}
			}
		case "IPAddressAllow", "IPAddressDeny":
			if n.Egress.Mode == plan.EgressAllowList {
				bad = "changes the IP address filter of the allowList namespace"
			}
		case "NetworkNamespacePath":
			// A foreign path is refused wherever it is set
			// (checkNamespaceConflicts); an empty one after ours resets
			// it, and the service would run in the host's namespace.
			if s.Value == "" {
				bad = "resets the namespace the service joins: it would run in the host's network namespace"
			}
		case "ProtectSystem":
			if su.Root && !strings.EqualFold(s.Value, "strict") {
				bad = "weakens ProtectSystem=strict, which a root service needs (it could write files privileged host processes load)"
			}
		case "User", "DynamicUser", "NoNewPrivileges", "RestrictSUIDSGID":
			// Handled by their effect: User/DynamicUser decide Root above;
			// the others only matter together with setuid binaries, which
			// the empty bounding set leaves without capabilities.
		}
		if bad != "" {
			c.errorf(key, "%s: %s=%s in a drop-in applied after %s %s; remove it, or change that setting in the YAML file instead", where(s), s.Key, s.Value, DropInName, bad)
		}
	}
}

// shadowDirs are the unit directories that outrank the generator's output
// (/run/systemd/generator): a drop-in there named like ours replaces ours
// entirely, since systemd applies one file per drop-in name.
var shadowDirs = []string{"/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
	"/run/systemd/generator.early", "/etc/systemd/system", "/etc/systemd/system.attached", "/run/systemd/system",
	"/run/systemd/system.attached"}

// ShadowingDropIn returns the drop-in of u named like ours in a
// directory that outranks the generator's output, or "".
func ShadowingDropIn(u *unitfile.Unit) string {
	for _, d := range u.DropIns {
		if filepath.Base(d) != DropInName {
			continue
		}
		// By suffix, so a unit path below a test root is judged alike.
		for _, dir := range shadowDirs {
			if strings.HasSuffix(filepath.Dir(filepath.Dir(d)), dir) {
				return d
			}
		}
	}
	return ""
}

// BlockedDropInName is the second name a blocked unit's drop-in is written
// under when ShadowingDropIn finds one: the block must hold even though
// systemd skips our first file. It sorts after the usual drop-in names.
const BlockedDropInName = "zz-vpn-confinement-blocked.conf"

// checkShadowed refuses a unit whose drop-in named like ours comes from a
// directory that outranks the generator's: systemd would load that file
// instead of ours, and the unit would run unconfined.
func (c *compiler) checkShadowed(key string, u *unitfile.Unit) {
	if d := ShadowingDropIn(u); d != "" {
		c.errorf(key, "%s: a drop-in named %s outranks the one vpn-confinement generates (it is in %s), so systemd would load it instead and %s would run unconfined; rename or remove it", d, DropInName, filepath.Dir(filepath.Dir(d)), u.Name)
	}
}

// checkBinds refuses bind mounts, in the unit file or any drop-in, whose
// source is a path the drop-in hides (or a directory above one): binds
// are list settings that add to ours, and a bind from the host view
// (systemd resolves sources outside the service's mounts) lands on top of
// the tmpfs or inaccessible node, re-exposing the control plane, the key
// or the tool state. A read-only bind of a socket is enough: connect()
// ignores read-only mounts.
func (c *compiler) checkBinds(key string, u *unitfile.Unit, su plan.Unit, n *plan.Namespace) {
	hidden := hiddenPaths(su, n)
	kept := []string{plan.RuntimePath(n.Name)}
	for _, k := range hardening.SystemdKeep {
		kept = append(kept, strings.TrimPrefix(k, "-"))
	}
	if n.DNS.Mode == plan.DNSCompat {
		kept = append(kept, "/run/systemd/resolve")
	}
	for _, s := range u.Settings {
		if s.Section != "Service" || s.Key != "BindPaths" && s.Key != "BindReadOnlyPaths" {
			continue
		}
		for _, f := range strings.Fields(s.Value) {
			src := filepath.Clean(strings.TrimLeft(strings.SplitN(f, ":", 2)[0], "-+"))
			if within(src, kept) {
				continue
			}
			for _, h := range hidden {
				if src == h || strings.HasPrefix(src, h+"/") || strings.HasPrefix(h, strings.TrimSuffix(src, "/")+"/") {
					c.errorf(key, "%s: %s=%s re-exposes %s, which vpn-confinement hides from confined services (a bind from the host's view lands on top of the hiding); remove it", where(s), s.Key, s.Value, h)
					break
				}
			}
		}
	}
}

func within(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// hiddenPaths is what the drop-in of service su hides: systemd's runtime
// dir (bar the parts bound back), the control planes, the system bus
// unless allowed, this tool's state and runtime dir (bar the namespace's
// own dir), the credential stores, the config dir and the key files.
func hiddenPaths(su plan.Unit, n *plan.Namespace) []string {
	out := []string{"/run/systemd", plan.RuntimeDir, "/run/credentials", filepath.Dir(n.Source)}
	for _, l := range [][]string{hardening.ControlPlanes, hardening.ToolState} {
		for _, p := range l {
			out = append(out, strings.TrimPrefix(p, "-"))
		}
	}
	if !su.AllowSystemBus && !(n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC) {
		out = append(out, "/run/dbus")
	}
	if n.DNS.Mode == plan.DNSStrict && !n.DNS.AllowHostResolverIPC {
		out = append(out, "/run/nscd", "/run/avahi-daemon")
	}
	wg := n.WireGuard
	for _, f := range []string{wg.PrivateKey.File, wg.PrivateKey.WgQuickFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	for _, p := range wg.Peers {
		if p.PresharedKey != nil && p.PresharedKey.File != "" {
			out = append(out, p.PresharedKey.File)
		}
	}
	return out
}

// grantedCaps is what an assignment of CapabilityBoundingSet= adds (a "~"
// list grants everything not listed).
func grantedCaps(v string) []string {
	inverted := strings.HasPrefix(v, "~")
	fields := strings.Fields(strings.TrimPrefix(v, "~"))
	if !inverted {
		return fields
	}
	listed := map[string]bool{}
	for _, f := range fields {
		listed[f] = true
	}
	var out []string
	for cp := range hardening.Known {
		if !listed[cp] {
			out = append(out, cp)
		}
	}
	sort.Strings(out)
	return out
}

// noUnits is the lookup used when unit files are not consulted.
type noUnits struct{}

func (noUnits) Lookup(string) (*unitfile.Unit, bool) { return nil, false }
