// Package doctor implements `vpn-confinement doctor`: can this host
// enforce what the configuration asks for? Each check answers OK, WARN or
// FAIL with one line saying why. Everything the checks read comes through
// Options (paths, probes, host network state), so tests run them against
// fake trees; Defaults wires the real system.
package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/hostlink"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// MinSystemd is the oldest systemd the unit templates and drop-ins work
// with (NetworkNamespacePath= needs 242, LoadCredential= 247).
const MinSystemd = 247

// Probes create throwaway kernel objects to see what the kernel supports.
// They run only as root and only with Options.Probe.
type Probes struct {
	// KernelWireGuard creates a wireguard link in a throwaway namespace:
	// (true, nil) it worked, (false, nil) the kernel has no WireGuard.
	KernelWireGuard func() (bool, error)
	// Nftables loads the kill-switch and pinning rulesets of a sample
	// plan into a throwaway namespace.
	Nftables func() error
	// Tun opens /dev/net/tun for the userspace fallback.
	Tun func() error
	// Tripwire checks the host-side tripwire's support: unsupported says
	// why the host cannot have it, err that it could not be told.
	Tripwire func() (unsupported string, err error)
}

// Host reads the host's network state.
type Host struct {
	// Links are the interfaces of the host namespace.
	Links func() ([]kstate.Link, error)
	// Routes are the main-table routes of the host namespace.
	Routes func() ([]kstate.Route, error)
	// RouteTo is "ip route get" in the socket namespace sock ("" = host).
	RouteTo func(sock string, dst netip.Addr) (kstate.Route, error)
	// TCP lists the host's TCP sockets; Holders names the processes
	// holding the given socket inodes.
	TCP     func() ([]sockdiag.Socket, error)
	Holders func(inodes []uint32) map[uint32][]sockdiag.Holder
}

// Options are the doctor's inputs.
type Options struct {
	Paths paths.Paths
	// Root: running as root (probes and key ownership checks need it).
	Root bool
	// Probe enables the throwaway-namespace probes.
	Probe   bool
	Probes  Probes
	Host    Host
	Systemd func() (systemd.Version, error)
	// Booted reports whether systemd runs as init.
	Booted func() bool
	// GeneratorDirs are where a system generator may be installed.
	GeneratorDirs []string
	// FSType returns the statfs(2) type of a path; nil: the real one.
	FSType func(path string) (int64, error)
	// TripwireMarker is the file a tripwire hook writes when the host
	// cannot have the tripwire.
	TripwireMarker string
	// UnitStates returns the ActiveState of units.
	UnitStates func(units []string) (map[string]string, error)
}

// Report is the JSON form.
type Report struct {
	OK     bool       `json:"ok"`
	Checks check.List `json:"checks"`
}

type doctor struct {
	o       Options
	l       check.List
	results []*config.Result
	plans   []*plan.Namespace
}

// Run runs every check.
func Run(o Options) check.List {
	d := &doctor{o: o}
	d.loadConfig()
	d.wireguard()
	d.nftables()
	d.systemd()
	d.cgroup()
	d.freezer()
	d.tripwire()
	d.install()
	d.resolvConf()
	d.resolvers()
	d.configDir()
	d.keys()
	d.routes()
	d.hostLinks()
	d.publishPorts()
	d.config()
	return d.l
}

func (d *doctor) add(name string, r check.Result, format string, args ...any) {
	d.l.Add(name, r, format, args...)
}

// loadConfig compiles the configuration exactly as the generator would
// now, so the checks see the plans of the next daemon-reload.
func (d *doctor) loadConfig() {
	out, err := generator.Generate(generator.Options{ConfigDir: d.o.Paths.ConfigDir, UnitPath: d.o.Paths.UnitPath, StateDir: d.o.Paths.StateDir})
	if err != nil {
		return
	}
	d.results = out.Results
	for _, r := range out.Results {
		if r.Plan != nil {
			d.plans = append(d.plans, r.Plan)
		}
	}
}

func (d *doctor) namesWhere(f func(*plan.Namespace) bool) []string {
	var out []string
	for _, p := range d.plans {
		if f(p) {
			out = append(out, p.Name)
		}
	}
	return out
}

func (d *doctor) wireguard() {
	p := d.o.Paths
	kernel, how := false, ""
	if _, err := os.Stat(filepath.Join(p.Sys, "module", "wireguard")); err == nil {
		kernel, how = true, "module loaded"
	}
	probed := false
	if !kernel && d.o.Root && d.o.Probe && d.o.Probes.KernelWireGuard != nil {
		ok, err := d.o.Probes.KernelWireGuard()
		switch {
		case err != nil:
			how = fmt.Sprintf("probe failed: %v", err)
		case ok:
			kernel, how = true, "a test link in a throwaway namespace worked"
		default:
			how = "creating a wireguard link fails: no module"
		}
		probed = true
	}
	tunErr := errors.New("not checked")
	if d.o.Probes.Tun != nil {
		tunErr = d.o.Probes.Tun()
		// Only root may open it, and vpn-wg@ runs as root.
		if errors.Is(tunErr, fs.ErrPermission) && !d.o.Root {
			tunErr = nil
		}
	}
	forcedKernel := d.namesWhere(func(n *plan.Namespace) bool { return n.WireGuard.Backend == plan.BackendKernel })
	needTun := d.namesWhere(func(n *plan.Namespace) bool {
		return n.WireGuard.Backend == plan.BackendUserspace || (n.WireGuard.Backend == plan.BackendAuto && !kernel)
	})
	switch {
	case !kernel && len(forcedKernel) > 0 && (probed || !d.o.Probe):
		d.add("wireguard", check.Fail, "kernel WireGuard is not available (%s), but %s set wireguard.backend: kernel; use auto or userspace", d.orUnknown(how, probed), strings.Join(forcedKernel, ", "))
	case tunErr != nil && len(needTun) > 0:
		d.add("wireguard", check.Fail, "the userspace backend needs /dev/net/tun (%v), used by %s", tunErr, strings.Join(needTun, ", "))
	case kernel:
		d.add("wireguard", check.OK, "kernel WireGuard available (%s)", how)
	case tunErr == nil:
		d.add("wireguard", check.OK, "no kernel WireGuard (%s): vpn-wg@ uses the userspace fallback, the embedded wireguard-go over /dev/net/tun (usable); it works the same, at more CPU per packet", d.orUnknown(how, probed))
	default:
		d.add("wireguard", check.Fail, "no kernel WireGuard (%s) and no usable /dev/net/tun for the userspace fallback (%v)", d.orUnknown(how, probed), tunErr)
	}
}

func (d *doctor) orUnknown(how string, probed bool) string {
	switch {
	case how != "":
		return how
	case probed:
		return "unknown"
	case !d.o.Probe:
		return "/sys/module/wireguard absent; not probed: --no-probe"
	}
	return "/sys/module/wireguard absent; not probed: needs root"
}

func (d *doctor) nftables() {
	if !d.o.Root || !d.o.Probe || d.o.Probes.Nftables == nil {
		why := "needs root"
		if !d.o.Probe {
			why = "--no-probe"
		}
		if _, err := os.Stat(filepath.Join(d.o.Paths.Sys, "module", "nf_tables")); err == nil {
			d.add("nftables", check.Warn, "nf_tables is loaded, but the kill switch was not test-loaded (%s)", why)
		} else {
			d.add("nftables", check.Warn, "not probed (%s): cannot tell whether the kernel accepts the kill switch", why)
		}
		return
	}
	if err := d.o.Probes.Nftables(); err != nil {
		d.add("nftables", check.Fail, "loading the kill-switch ruleset into a throwaway namespace failed: %v; vpn-ns@ would fail closed (no namespace)", err)
		return
	}
	d.add("nftables", check.OK, "the kill-switch and pinning rulesets load (tested in a throwaway namespace: sets, intervals, conntrack, counters)")
}

func (d *doctor) systemd() {
	if d.o.Systemd == nil {
		return
	}
	v, err := d.o.Systemd()
	if err != nil {
		d.add("systemd", check.Fail, "%v", err)
		return
	}
	booted := d.o.Booted == nil || d.o.Booted()
	switch {
	case v.Number < MinSystemd:
		d.add("systemd", check.Fail, "systemd %s is older than %d (LoadCredential=, NetworkNamespacePath=)", v.Full, MinSystemd)
	case !booted:
		d.add("systemd", check.Warn, "systemd %s is installed but is not the init system here (no /run/systemd/system): the generator and units do nothing until it is", v.Full)
	default:
		d.add("systemd", check.OK, "systemd %s", v.Full)
	}
	restrict := d.restrictBindUnits()
	bpf, known := v.Features["BPF_FRAMEWORK"]
	users := ""
	if len(restrict) > 0 {
		users = "; restrictBind is set for " + strings.Join(restrict, ", ")
	}
	switch {
	case !known:
		d.add("bpf-framework", check.Warn, "systemctl --version does not say whether systemd has BPF_FRAMEWORK; assume SocketBindAllow=/SocketBindDeny= and RestrictNetworkInterfaces= are not enforced%s", users)
	case !bpf:
		d.add("bpf-framework", check.Warn, "systemd is built without BPF_FRAMEWORK (-BPF_FRAMEWORK): SocketBindAllow=/SocketBindDeny= (restrictBind) and RestrictNetworkInterfaces= are silently NOT enforced; the namespace firewall is the layer that holds%s", users)
	default:
		d.add("bpf-framework", check.OK, "systemd has +BPF_FRAMEWORK: SocketBindAllow=/SocketBindDeny= (restrictBind) are enforced")
	}
}

func (d *doctor) restrictBindUnits() []string {
	var out []string
	for _, n := range d.plans {
		for _, u := range n.Services {
			if u.RestrictBind {
				out = append(out, u.Name)
			}
		}
	}
	return out
}

// Filesystem magic numbers (statfs f_type).
const (
	cgroup2Magic = 0x63677270
)

func statfsType(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Type), nil
}

func (d *doctor) cgroup() {
	base := filepath.Join(d.o.Paths.Sys, "fs", "cgroup")
	fsType := d.o.FSType
	if fsType == nil {
		fsType = statfsType
	}
	t, err := fsType(base)
	if err != nil {
		d.add("cgroup", check.Warn, "cannot read %s: %v", base, err)
		return
	}
	if t == cgroup2Magic {
		d.add("cgroup", check.OK, "cgroup v2 (unified): the IPAddressDeny=/IPAddressAllow= layer of allowList namespaces is enforced")
		return
	}
	if u, err := fsType(filepath.Join(base, "unified")); err == nil && u == cgroup2Magic {
		d.add("cgroup", check.OK, "hybrid hierarchy: systemd tracks services in the cgroup v2 hierarchy at %s/unified, so IPAddressDeny= is enforced (a unified-only boot, systemd.unified_cgroup_hierarchy=1, is simpler)", base)
		return
	}
	d.add("cgroup", check.Warn, "no cgroup v2 hierarchy: IPAddressDeny=/IPAddressAllow= are NOT enforced (allowList namespaces keep only their namespace firewall); boot with systemd.unified_cgroup_hierarchy=1")
}

func (d *doctor) install() {
	search := unitfile.Search{Path: d.o.Paths.UnitPath}
	var missing, bad, found []string
	for _, t := range []string{units.NsTemplate, units.WgTemplate, units.PinTemplate, units.PfTemplate} {
		u, ok := search.Lookup(t)
		if !ok || u.Fragment == "" {
			missing = append(missing, t)
			continue
		}
		found = append(found, u.Fragment)
		for _, s := range u.Settings {
			if !strings.HasPrefix(s.Key, "Exec") {
				continue
			}
			bin := strings.TrimLeft(strings.Fields(s.Value + " x")[0], "-@:+!")
			if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
				bad = append(bad, fmt.Sprintf("%s:%d: %s", u.Fragment, s.Line, bin))
			}
		}
	}
	gen := ""
	for _, dir := range d.o.GeneratorDirs {
		p := filepath.Join(dir, "vpn-confinement-generator")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			gen = p
			break
		}
	}
	switch {
	case len(missing) > 0:
		d.add("install", check.Fail, "unit templates not found in the unit path: %s (make install?)", strings.Join(missing, ", "))
	case len(bad) > 0:
		d.add("install", check.Fail, "helpers named by the templates are missing or not executable: %s", strings.Join(bad, ", "))
	case gen == "":
		d.add("install", check.Fail, "vpn-confinement-generator is not installed in %s: nothing is compiled at boot", strings.Join(d.o.GeneratorDirs, ", "))
	default:
		d.add("install", check.OK, "generator %s, templates %s", gen, strings.Join(found, ", "))
	}
}

func (d *doctor) resolvConf() {
	for _, name := range []string{"/etc/resolv.conf", "/etc/nsswitch.conf"} {
		d.resolverFile(name)
	}
}

// hiddenDirs are where a resolv.conf symlink may point: strict DNS mounts a
// tmpfs over them, and the generated file is bound onto the link's target.
var hiddenDirs = []string{"/run/systemd/resolve/", "/run/resolvconf/"}

func (d *doctor) resolverFile(name string) {
	say := func(r check.Result, format string, args ...any) {
		d.add(filepath.Base(name), r, format, args...)
	}
	host := d.o.Paths.Host(name)
	fi, err := os.Lstat(host)
	if err != nil {
		say(check.Warn, "%s is missing: strict-DNS services get it bind-mounted from the generated file, which needs a file to mount over", name)
		return
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		say(check.OK, "%s is a regular file: strict-DNS services get the generated one mounted over it", name)
		return
	}
	target, _ := os.Readlink(host)
	abs := target
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(name), target)
	}
	if _, err := os.Stat(d.o.Paths.Host(abs)); err != nil {
		say(check.Fail, "%s is a dangling symlink to %s: binding the generated file onto it fails, so strict-DNS services will not start", name, target)
		return
	}
	for _, dir := range hiddenDirs {
		if strings.HasPrefix(abs, dir) {
			say(check.OK, "%s -> %s: strict-DNS services see the generated file there, under a tmpfs that hides the rest of %s", name, target, strings.TrimSuffix(dir, "/"))
			return
		}
	}
	say(check.Warn, "%s -> %s: the generated file is bound onto %s, and the rest of %s stays visible to confined services", name, target, abs, filepath.Dir(abs))
}

// resolverSockets are the host resolver endpoints strict DNS hides.
var resolverSockets = []struct{ path, what string }{
	{"/run/nscd/socket", "nscd"},
	{"/run/systemd/resolve/io.systemd.Resolve", "systemd-resolved"},
	{"/run/dbus/system_bus_socket", "D-Bus system bus"},
	{"/run/avahi-daemon/socket", "avahi"},
}

func (d *doctor) resolvers() {
	var present []string
	nscd := false
	for _, s := range resolverSockets {
		if _, err := os.Stat(d.o.Paths.Host(s.path)); err == nil {
			present = append(present, s.what)
			nscd = nscd || s.what == "nscd"
		}
	}
	compat := d.namesWhere(func(n *plan.Namespace) bool { return n.DNS.Mode == plan.DNSCompat })
	ipc := d.namesWhere(func(n *plan.Namespace) bool { return n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC })
	switch {
	case len(compat) > 0:
		d.add("resolvers", check.Warn, "%s use dns.mode compat: their services resolve names with the host's resolvers (%s), possibly over the host's network", strings.Join(compat, ", "), listOr(present, "none running"))
	case len(ipc) > 0 && nscd:
		d.add("resolvers", check.Warn, "%s keep host resolver IPC (allowHostResolverIPC) and nscd runs: names may be resolved over the host's network", strings.Join(ipc, ", "))
	case len(present) == 0:
		d.add("resolvers", check.OK, "no host resolver daemon socket (nscd, systemd-resolved, D-Bus, avahi)")
	default:
		d.add("resolvers", check.OK, "%s present: hidden from strict-DNS services", strings.Join(present, ", "))
	}
}

func listOr(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	return strings.Join(l, ", ")
}

// owner returns the uid and gid of fi.
func owner(fi os.FileInfo) (uint32, uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}

func (d *doctor) configDir() {
	dir := d.o.Paths.ConfigDir
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		d.add("config-dir", check.OK, "%s does not exist: nothing is confined", dir)
		return
	}
	if err != nil {
		d.add("config-dir", check.Fail, "%v", err)
		return
	}
	var fails, warns []string
	look := func(p string, fi os.FileInfo) {
		uid, gid := owner(fi)
		mode := fi.Mode().Perm()
		switch {
		case uid != 0:
			fails = append(fails, fmt.Sprintf("%s is owned by uid %d, not root", p, uid))
		case mode&0o002 != 0:
			fails = append(fails, fmt.Sprintf("%s is world-writable (%04o)", p, mode))
		case mode&0o020 != 0 && gid != 0:
			fails = append(fails, fmt.Sprintf("%s is writable by group %d (%04o)", p, gid, mode))
		}
	}
	look(dir, fi)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := config.NameFromPath(e.Name()); !ok && e.Name() != "keys" {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if efi, err := os.Stat(p); err == nil {
			look(p, efi)
			if e.Name() == "keys" && efi.IsDir() && efi.Mode().Perm()&0o077 != 0 {
				warns = append(warns, fmt.Sprintf("%s is mode %04o: others can list the key files (chmod 0700)", p, efi.Mode().Perm()))
			}
		}
	}
	switch {
	case len(fails) > 0:
		d.add("config-dir", check.Fail, "whoever can write here decides what is confined: %s", strings.Join(fails, "; "))
	case len(warns) > 0:
		d.add("config-dir", check.Warn, "%s", strings.Join(warns, "; "))
	default:
		d.add("config-dir", check.OK, "%s and its files are writable by root only", dir)
	}
}

func (d *doctor) keys() {
	type key struct{ ns, path, what string }
	var list []key
	for _, n := range d.plans {
		k := n.WireGuard.PrivateKey
		switch {
		case k.File != "" && k.Generate:
			if _, err := os.Stat(k.File); errors.Is(err, fs.ErrNotExist) {
				continue // created 0600 at first start
			}
			list = append(list, key{n.Name, k.File, "private key"})
		case k.File != "":
			list = append(list, key{n.Name, k.File, "private key"})
		case k.WgQuickFile != "":
			list = append(list, key{n.Name, k.WgQuickFile, "wg-quick file (holds the private key)"})
		case k.InlineYAML:
			list = append(list, key{n.Name, n.Source, "namespace file with an inline key"})
		}
		for _, pr := range n.WireGuard.Peers {
			if pr.PresharedKey != nil && pr.PresharedKey.File != "" {
				list = append(list, key{n.Name, pr.PresharedKey.File, "preshared key"})
			}
		}
	}
	if len(list) == 0 {
		d.add("keys", check.OK, "no key files configured")
		return
	}
	var fails, unread []string
	for _, k := range list {
		fi, err := os.Stat(k.path)
		if errors.Is(err, fs.ErrPermission) && !d.o.Root {
			unread = append(unread, k.path)
			continue
		}
		if err != nil {
			fails = append(fails, fmt.Sprintf("%s (%s of %s): %v", k.path, k.what, k.ns, unwrapPath(err)))
			continue
		}
		uid, _ := owner(fi)
		mode := fi.Mode().Perm()
		switch {
		case mode&0o077 != 0:
			fails = append(fails, fmt.Sprintf("%s (%s of %s) is mode %04o: readable by group/others, chmod 0600", k.path, k.what, k.ns, mode))
		case uid != 0:
			fails = append(fails, fmt.Sprintf("%s (%s of %s) is owned by uid %d, not root", k.path, k.what, k.ns, uid))
		}
	}
	if len(fails) > 0 {
		d.add("keys", check.Fail, "%s", strings.Join(fails, "; "))
		return
	}
	if len(unread) > 0 {
		d.add("keys", check.Warn, "cannot look at %s: run as root", strings.Join(unread, ", "))
		return
	}
	files := "1 key file, owned by root and mode 0600 or stricter"
	if len(list) > 1 {
		files = fmt.Sprintf("%d key files, all owned by root and mode 0600 or stricter", len(list))
	}
	d.add("keys", check.OK, "%s", files)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (d *doctor) config() {
	var invalid []string
	for _, r := range d.results {
		if r.Plan == nil {
			invalid = append(invalid, fmt.Sprintf("%s (%d errors)", r.File, len(r.Diags.Errors())))
		}
	}
	switch {
	case len(invalid) > 0:
		d.add("config", check.Fail, "invalid, their units are blocked: %s; see: vpn-confinement validate", strings.Join(invalid, ", "))
	case len(d.results) == 0:
		d.add("config", check.OK, "no namespace files in %s", d.o.Paths.ConfigDir)
	default:
		var names []string
		for _, p := range d.plans {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		d.add("config", check.OK, "valid: %s", strings.Join(names, ", "))
	}
}

// ownAlias reports whether link l is the host side of a vpn-confinement
// host link (its own addresses are expected to sit in its subnet).
func ownAlias(l kstate.Link) bool { return strings.HasPrefix(l.Alias, hostlink.AliasPrefix) }
