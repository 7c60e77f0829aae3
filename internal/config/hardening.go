package config

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// compileServiceHardening fills the hardening fields of service su from
// its YAML entry (before the unit file is known).
func (c *compiler) compileServiceHardening(key string, u unitSchema, su *plan.Unit) {
	for i, p := range u.ReadWritePaths {
		k := fmt.Sprintf("%s.readWritePaths[%d]", key, i)
		if !c.absPath(k, p) {
			continue
		}
		if why := hardening.WriteRefusal(p); why != "" {
			c.errorf(k, "cannot be made writable: %s", why)
			continue
		}
		su.ReadWritePaths = append(su.ReadWritePaths, p)
	}
	for i, cp := range u.ExtraCapabilities {
		k := fmt.Sprintf("%s.extraCapabilities[%d]", key, i)
		cp = strings.ToUpper(cp)
		if !strings.HasPrefix(cp, "CAP_") {
			cp = "CAP_" + cp
		}
		switch {
		case !hardening.Known[cp]:
			c.errorf(k, "%q is not a capability name", u.ExtraCapabilities[i])
		case hardening.Forbidden[cp] != "":
			c.errorf(k, "%s is never given to a confined service: it would let it %s", cp, hardening.Forbidden[cp])
		default:
			su.Capabilities = append(su.Capabilities, cp)
		}
	}
	if u.App != nil {
		if _, ok := presetFor(su.Name, *u.App); !ok {
			c.errorf(key+".app", "must be one of %s, or \"none\" (got %q)", strings.Join(quoteAll(PresetNames()), ", "), *u.App)
		}
	}
}

// applyUnitFile completes service su from its unit file: root or not, the
// app preset, its home, its PID file. An entry whose unit is not
// installed yet gets none of this (the generator runs again once it is).
func (c *compiler) applyUnitFile(key string, u *unitfile.Unit, su *plan.Unit, explicitApp string) {
	name, dynamic := ServiceUser(u, su.Name)
	su.Root = (name == "" || name == "root" || name == "0") && !dynamic
	strict := su.HardeningProfile == plan.HardeningStrict
	if p, _ := presetFor(su.Name, explicitApp); p != nil {
		su.App = p.Name
		add := p.Writable
		if strict || su.Root {
			add = append(add, p.StrictWritable...)
		}
		su.ReadWritePaths = append(su.ReadWritePaths, add...)
		su.WriteExecute = strict && p.StrictWriteExecute
	}
	// A service that runs as a user expects its home to be writable (the
	// rest of /home stays read-only): qBittorrent keeps everything there.
	if !su.Root && !dynamic && name != "" && c.env.LookupHome != nil {
		if home, ok := c.env.LookupHome(name); ok && home != "/" && home != "/nonexistent" && filepath.IsAbs(home) && hardening.WriteRefusal(home) == "" {
			su.Home = home
		}
	}
	if su.Root {
		if pf, ok := u.Last("Service", "PIDFile"); ok && pf.Value != "" {
			p := expandInstance(pf.Value, su.Name)
			if strings.HasPrefix(p, "/run/") && filepath.Clean(p) == p && !unsafePath(p) {
				su.RuntimeFiles = append(su.RuntimeFiles, p)
			}
		}
	}
	su.ReadWritePaths = dedupeStrings(su.ReadWritePaths)
	sort.Strings(su.ReadWritePaths)
	su.Capabilities = hardening.Capabilities(su.Root, strict, su.Capabilities)
}

// ServiceUser is the user unit u (listed as name, an instance for
// templates) runs as: its User= with %i resolved ("" for none), and
// whether it sets DynamicUser=.
func ServiceUser(u *unitfile.Unit, name string) (user string, dynamic bool) {
	us, _ := u.Last("Service", "User")
	dyn, _ := u.Last("Service", "DynamicUser")
	return expandInstance(us.Value, name), truthy(dyn.Value)
}

// expandInstance resolves the instance specifiers %i and %I of unit u in s
// (User=%i in qbittorrent-nox@.service); other specifiers are left alone.
func expandInstance(s, u string) string {
	inst := instanceOf(u)
	return strings.NewReplacer("%i", inst, "%I", inst).Replace(s)
}

// PasswdHomes parses /etc/passwd into a home-directory lookup.
func PasswdHomes(data []byte) func(string) (string, bool) {
	homes := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 6 && f[0] != "" && !strings.HasPrefix(f[0], "#") {
			homes[f[0]] = f[5]
		}
	}
	return func(user string) (string, bool) {
		h, ok := homes[user]
		return h, ok
	}
}
