package config

import (
	"fmt"
	"path/filepath"
	"strings"

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
		for _, s := range u.Settings {
			if !afterOurs(u, s) || s.Section != "Service" {
				continue
			}
			if (s.Key == "CapabilityBoundingSet" || s.Key == "AmbientCapabilities") && regainsNetCaps(s.Value) {
				c.errorf(key, "%s: %s=%s gives the service back CAP_NET_ADMIN/CAP_SYS_ADMIN, which would let it flush its firewall or leave the namespace", where(s), s.Key, s.Value)
			}
		}
		user, _ := u.Last("Service", "User")
		dyn, _ := u.Last("Service", "DynamicUser")
		rootLike := user.Value == "" || user.Value == "root" || user.Value == "0"
		if rootLike && !truthy(dyn.Value) {
			if c.ha && !su.AllowRootInHighAssurance {
				c.errorf(key, "%s runs as root but the namespace is highAssurance: set DynamicUser=yes or a non-root User= on the unit, or allowRootInHighAssurance: true", su.Name)
			} else {
				c.warnf(key, "%s runs as root; prefer DynamicUser=yes or a dedicated non-root User= (its capability bounding set is emptied either way)", su.Name)
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

// regainsNetCaps reports whether a capability assignment grants
// CAP_NET_ADMIN or CAP_SYS_ADMIN (a "~" list grants everything not listed).
func regainsNetCaps(v string) bool {
	inverted := strings.HasPrefix(v, "~")
	fields := strings.Fields(strings.TrimPrefix(v, "~"))
	has := func(c string) bool {
		for _, f := range fields {
			if f == c {
				return true
			}
		}
		return false
	}
	if inverted {
		return !has("CAP_NET_ADMIN") || !has("CAP_SYS_ADMIN")
	}
	return has("CAP_NET_ADMIN") || has("CAP_SYS_ADMIN")
}

// noUnits is the lookup used when unit files are not consulted.
type noUnits struct{}

func (noUnits) Lookup(string) (*unitfile.Unit, bool) { return nil, false }
