// Package verify implements `vpn-confinement verify UNIT`: an attestation,
// from outside, that a running confined unit is confined as compiled. It
// looks at what the kernel says about the unit's processes (namespace
// inode, capability sets), at the files they actually see (through
// /proc/PID/root, resolving symlinks inside their root) and at the
// namespace they live in, and compares each with the plan.
//
// Checks is pure over Facts and file trees, so tests run it against fake
// /proc and /run trees; Gather collects the facts on a real system.
package verify

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// FirewallTable is the kill-switch table inside every namespace.
const FirewallTable = firewall.TableName

// Facts is everything the checks look at besides files.
type Facts struct {
	Unit string
	// Plan is the compiled namespace that runs Unit (nil: none does);
	// Kind says how (KindService...), Service is its plan entry (listed
	// services and sockets).
	Plan    *plan.Namespace
	Kind    string
	Service *plan.Unit
	// ReferenceFile is the generated file that confines the unit (its
	// drop-in, or the proxy's unit file) and Reference its settings;
	// Later are the settings of the drop-ins systemd applies after it.
	ReferenceFile string
	Reference     []unitfile.Setting
	Later         []unitfile.Setting
	// Sockets are the host's reachable AF_UNIX path sockets (every
	// network namespace); Own the socket inodes the unit's processes hold.
	Sockets    []procfs.UnixSocket
	SocketsErr error
	Own        map[uint64]bool
	// BlockedBy is the invalid namespace file that blocks Unit (no plan).
	BlockedBy string
	// Props are the unit's properties from systemd (see ShowProps).
	Props systemd.Props
	// PIDs are the unit's processes, main PID first; PIDsNote says how
	// they were found when not from the whole control group.
	PIDs     []int
	PIDsNote string
	// Unexecd are PIDs still running systemd's own program (forked for
	// the unit, not yet exec'd) after Gather waited for them.
	Unexecd []int
	// Kernel state of the unit's namespace.
	Firewall    *kstate.Firewall
	FirewallErr error
	Links       []kstate.Link
	LinksErr    error
	// Publish is set when Unit is a published port's socket or proxy
	// (generated units, see publishChecks); HolderProps are the unit
	// properties of what the socket activates, Listeners which listen
	// addresses PID 1 holds a listening socket on (host namespace).
	Publish      *plan.Publish
	HolderProps  systemd.Props
	Listeners    map[string]bool
	ListenersErr error
}

// ShowProps are the unit properties Gather asks systemd for.
var ShowProps = []string{"Id", "LoadState", "ActiveState", "SubState", "MainPID", "ControlGroup", "NetworkNamespacePath", "DropInPaths",
	"FragmentPath", "Triggers", "ExecStart", "CapabilityBoundingSet", "AmbientCapabilities", "InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths",
	"ProtectSystem", "NoNewPrivileges", "User", "DynamicUser",
	"BindPaths", "ReadWritePaths", "IPAddressDeny", "IPAddressAllow", "PrivateNetwork", "RestrictAddressFamilies",
	"ExecConditionEx", "ExecStartPreEx", "ExecStartEx", "ExecStartPostEx", "ExecReloadEx", "ExecStopEx", "ExecStopPostEx"}

// Report is the JSON form of a verification.
type Report struct {
	Unit      string     `json:"unit"`
	Kind      string     `json:"kind,omitempty"`
	Namespace string     `json:"namespace"`
	OK        bool       `json:"ok"`
	Checks    check.List `json:"checks"`
}

// NewReport wraps checks for output.
func NewReport(f Facts, l check.List) Report {
	r := Report{Unit: f.Unit, Kind: f.Kind, OK: !l.Failed(), Checks: l}
	if f.Plan != nil {
		r.Namespace = f.Plan.Name
	}
	return r
}

// Checks runs every check. Files are read below p (Proc, RuntimeDir,
// NetnsDir, Root).
func Checks(p paths.Paths, f Facts) check.List {
	var l check.List
	n := f.Plan
	if n == nil {
		if f.BlockedBy != "" {
			l.Add("plan", check.Fail, "%s is blocked: %s is invalid, so it is not built and the unit may not start (vpn-confinement validate %s)", f.Unit, f.BlockedBy, f.BlockedBy)
			return l
		}
		l.Add("plan", check.Fail, "%s is not listed by any compiled namespace plan in %s (see vpn-confinement status)", f.Unit, p.PlanDir())
		return l
	}
	switch f.Kind {
	case KindPublishSocket:
		return publishSocketChecks(p, f)
	case KindProxy:
		l.Add("plan", check.Pass, "the proxy of a published port of %s (namespace %s)", n.Source, n.Name)
	case KindPortFwd:
		l.Add("plan", check.Pass, "the port-forwarding helper of %s (namespace %s)", n.Source, n.Name)
	default:
		l.Add("plan", check.Pass, "listed by %s (namespace %s)", n.Source, n.Name)
	}
	pin := p.Netns(n.Name)
	checkDropIn(&l, p, f, pin)
	if f.Kind != KindSocket {
		checkOverrides(&l, f)
	}
	if f.Kind == KindProxy {
		checkIPFilter(&l, f)
	}
	checkFirewall(&l, f, pin)
	checkLinks(&l, f, n)
	if f.Kind == KindSocket || strings.HasSuffix(f.Unit, ".socket") {
		l.Add("running", check.Skip, "a socket unit has no processes: systemd creates its sockets in %s; verify the service it activates", pin)
		return l
	}
	state := f.Props["ActiveState"] + "/" + f.Props["SubState"]
	if f.Props["ActiveState"] != "active" || len(f.PIDs) == 0 {
		if f.Kind == KindProxy {
			// Idle is its normal state: what it will run as is attested
			// above (unit file, overrides, IP filter).
			l.Add("running", check.Skip, "%s is not running (%s): it starts with the first connection to %s; connect once, then verify again", f.Unit, state, strings.Join(f.Publish.Listen, " "))
			return l
		}
		l.Add("running", check.Fail, "%s is not running (%s): nothing to attest; start it first", f.Unit, state)
		return l
	}
	note := ""
	if f.PIDsNote != "" {
		note = " (" + f.PIDsNote + ")"
	}
	if len(f.Unexecd) > 0 {
		l.Add("running", check.Fail, "%s, but PID %v is still being set up by systemd (not exec'd yet): try again", state, f.Unexecd)
		return l
	}
	l.Add("running", check.Pass, "%s, %s, main PID %d%s", state, plural(len(f.PIDs), "process", "processes"), f.PIDs[0], note)
	checkNamespace(&l, p, f, pin)
	root := p.ProcRoot(f.PIDs[0], "")
	switch f.Kind {
	case KindService:
		checkDNS(&l, p, n, root)
		checkHidden(&l, p, "resolver-ipc", resolverIPC(n), root, "reachable")
		checkHidden(&l, p, "keys", secretPaths(n), root, "visible")
		checkSystemdTmpfs(&l, p, root)
		checkSystemBus(&l, p, n, f.Service, root)
		checkControlPlanes(&l, p, f, f.Service, root)
	case KindProxy:
		l.Add("dns", check.Skip, "the proxy connects to 127.0.0.1 only and resolves nothing")
		checkProxyUser(&l, p, f)
		checkHidden(&l, p, "keys", secretPaths(n), root, "visible")
		checkSystemdTmpfs(&l, p, root)
		checkSystemBus(&l, p, n, nil, root)
		checkControlPlanes(&l, p, f, nil, root)
	case KindPortFwd:
		l.Add("control-planes", check.Skip, "vpn-pf@ is a helper of this tool, trusted like vpn-wg@: it reads its credentials and starts the hook unit over D-Bus; what confines it is the namespace and a bounding set of CAP_NET_ADMIN")
	}
	checkCaps(&l, p, f)
	return l
}

// checkSystemdTmpfs: /run/systemd is a private tmpfs for the unit, with
// only the journal, sd_notify and userdb bound back; the service
// manager's private socket and unit directories are not in it.
func checkSystemdTmpfs(l *check.List, p paths.Paths, root string) {
	host, herr := procfs.Stat(p.Host("/run/systemd"))
	in, _, err := procfs.StatInRoot(root, "/run/systemd")
	switch {
	case herr != nil:
		l.Add("systemd-tmpfs", check.Skip, "the host has no /run/systemd: %v", herr)
		return
	case err == nil && in == host:
		l.Add("systemd-tmpfs", check.Fail, "the service sees the host's /run/systemd (TemporaryFileSystem=/run/systemd is not applied): the service manager's private socket is reachable")
		return
	}
	var sub check.List
	checkHidden(&sub, p, "systemd-tmpfs", []string{"/run/systemd/private", "/run/systemd/system", "/run/systemd/transient",
		"/run/systemd/generator", "/run/systemd/units", "/run/systemd/io.system.ManagedOOM"}, root, "visible")
	c := sub[0]
	if c.Result == check.Pass {
		var names []string
		if dir, err := procfs.ResolveInRoot(root, "/run/systemd"); err == nil {
			if es, err := os.ReadDir(filepath.Join(root, dir)); err == nil {
				for _, e := range es {
					names = append(names, e.Name())
				}
			}
		}
		c.Detail = fmt.Sprintf("/run/systemd is a private tmpfs (holding only %s); %s", strings.Join(names, ", "), c.Detail)
	}
	*l = append(*l, c)
}

// checkSystemBus: the D-Bus system bus fronts systemd (StartUnit works for
// root without any capability); it is hidden unless the service opts in.
func checkSystemBus(l *check.List, p paths.Paths, n *plan.Namespace, svc *plan.Unit, root string) {
	bus := []string{"/run/dbus/system_bus_socket"}
	switch {
	case svc != nil && svc.AllowSystemBus:
		l.Add("system-bus", check.Skip, "allowSystemBus: the system bus is deliberately reachable")
	case n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC:
		l.Add("system-bus", check.Skip, "dns.allowHostResolverIPC: the system bus is deliberately reachable")
	default:
		checkHidden(l, p, "system-bus", bus, root, "reachable")
	}
}

func checkDropIn(l *check.List, p paths.Paths, f Facts, pin string) {
	if f.Props["LoadState"] == "not-found" {
		l.Add("drop-in", check.Fail, "systemd knows no unit %s", f.Unit)
		return
	}
	nnp := f.Props["NetworkNamespacePath"]
	switch f.Kind {
	case KindProxy:
		// A unit the generator writes (no drop-in of ours).
		want := filepath.Join(p.GeneratorDir, f.Unit)
		switch frag := f.Props["FragmentPath"]; {
		case frag != want:
			l.Add("unit-file", check.Fail, "systemd loaded %s from %q, not the generated %s (a unit of that name elsewhere overrides it)", f.Unit, frag, want)
		case nnp != pin:
			l.Add("unit-file", check.Fail, "effective NetworkNamespacePath=%q, not %s: the proxy would run in the host's namespace%s", nnp, pin, culprits(f, "NetworkNamespacePath"))
		case f.Publish == nil:
			l.Add("unit-file", check.Fail, "no publish entry of %s generates %s", f.Plan.Source, f.Unit)
		case !strings.Contains(f.Props["ExecStart"], fmt.Sprintf(" 127.0.0.1:%d ", f.Publish.Port)):
			l.Add("unit-file", check.Fail, "ExecStart does not forward to 127.0.0.1:%d: %s", f.Publish.Port, f.Props["ExecStart"])
		default:
			l.Add("unit-file", check.Pass, "%s (generated), NetworkNamespacePath=%s, forwards to 127.0.0.1:%d%s", want, pin, f.Publish.Port, dropInNote(f))
		}
		return
	case KindPortFwd:
		if nnp != pin {
			l.Add("unit-file", check.Fail, "effective NetworkNamespacePath=%q, not %s%s", nnp, pin, culprits(f, "NetworkNamespacePath"))
		} else {
			l.Add("unit-file", check.Pass, "%s, NetworkNamespacePath=%s", f.Props["FragmentPath"], pin)
		}
		return
	}
	ours := ourDropIn(p, f)
	loaded, masked := false, ""
	for _, d := range strings.Fields(f.Props["DropInPaths"]) {
		if d == ours {
			loaded = true
		} else if filepath.Base(d) == config.DropInName {
			masked = d
		}
	}
	switch {
	case masked != "" && !loaded:
		l.Add("drop-in", check.Fail, "%s has the same name as the generated drop-in and replaces it: systemd never reads %s; remove it", masked, ours)
	case !loaded:
		l.Add("drop-in", check.Fail, "systemd has not loaded %s: run systemctl daemon-reload (and restart %s)", ours, f.Unit)
	case nnp != pin:
		l.Add("drop-in", check.Fail, "effective NetworkNamespacePath=%q, not %s: a later drop-in overrides it%s", nnp, pin, culprits(f, "NetworkNamespacePath", "PrivateNetwork"))
	default:
		l.Add("drop-in", check.Pass, "%s loaded, NetworkNamespacePath=%s", ours, pin)
	}
}

// ourDropIn is the generated drop-in of f's unit.
func ourDropIn(p paths.Paths, f Facts) string {
	return filepath.Join(p.GeneratorDir, f.Unit+".d", config.DropInName)
}

func checkFirewall(l *check.List, f Facts, pin string) {
	switch {
	case f.FirewallErr != nil:
		l.Add("firewall", check.Fail, "cannot read the firewall of %s: %v", pin, f.FirewallErr)
		return
	case f.Firewall == nil:
		l.Add("firewall", check.Fail, "no table inet %s in %s: the namespace has no kill switch", FirewallTable, pin)
		return
	}
	fw := f.Firewall
	policy := map[string]string{}
	for _, c := range fw.Chains {
		if c.Hook != "" && policy[c.Hook] != "drop" {
			policy[c.Hook] = c.Policy
		}
	}
	var open []string
	for _, h := range []string{"input", "forward", "output"} {
		if policy[h] != "drop" {
			open = append(open, h)
		}
	}
	if len(open) > 0 {
		l.Add("firewall", check.Fail, "table inet %s has no policy-drop chain for %s: traffic there is not fail-closed", FirewallTable, strings.Join(open, ", "))
		return
	}
	l.Add("firewall", check.Pass, "table inet %s: %d rules, input/forward/output policy drop, %d packets dropped", FirewallTable, fw.Rules, fw.DropPackets)
}

func checkLinks(l *check.List, f Facts, n *plan.Namespace) {
	if f.LinksErr != nil {
		l.Add("interfaces", check.Fail, "cannot list the interfaces of the namespace: %v", f.LinksErr)
		return
	}
	allowed := map[string]bool{"lo": true, n.WireGuard.Interface: true}
	if n.HostLink != nil {
		allowed[n.HostLink.NsIf] = true
	}
	var extra, names []string
	tunnel := false
	for _, lk := range f.Links {
		names = append(names, lk.Name)
		if !allowed[lk.Name] {
			extra = append(extra, fmt.Sprintf("%s (%s)", lk.Name, lk.Kind))
		}
		tunnel = tunnel || lk.Name == n.WireGuard.Interface
	}
	switch {
	case len(extra) > 0:
		l.Add("interfaces", check.Fail, "unexpected interface in the namespace: %s (only lo, %s and the host link belong there)", strings.Join(extra, ", "), n.WireGuard.Interface)
	case !tunnel:
		l.Add("interfaces", check.Fail, "the tunnel interface %s is missing (is vpn-wg@%s running?)", n.WireGuard.Interface, n.Name)
	default:
		l.Add("interfaces", check.Pass, "%s", strings.Join(names, ", "))
	}
}

func checkNamespace(l *check.List, p paths.Paths, f Facts, pin string) {
	want, err := procfs.Stat(pin)
	if err != nil {
		l.Add("namespace", check.Fail, "%s: %v", pin, err)
		return
	}
	var wrong []string
	seen := 0
	for _, pid := range f.PIDs {
		got, err := procfs.NetnsOf(p.Proc, pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue // exited meanwhile
		}
		if err != nil {
			wrong = append(wrong, fmt.Sprintf("PID %d: %v", pid, err))
			continue
		}
		seen++
		if got != want {
			wrong = append(wrong, fmt.Sprintf("PID %d%s is in %s", pid, procName(p, pid), got))
		}
	}
	switch {
	case len(wrong) > 0:
		l.Add("namespace", check.Fail, "not in %s (%s): %s", pin, want, strings.Join(wrong, "; "))
	case seen == 0:
		l.Add("namespace", check.Fail, "the processes exited during the check")
	default:
		l.Add("namespace", check.Pass, "%s in %s (%s)", plural(seen, "process", "all processes"), pin, want)
	}
}

func procName(p paths.Paths, pid int) string {
	if s, err := procfs.ReadStatus(p.Proc, pid); err == nil && s.Name != "" {
		return " (" + s.Name + ")"
	}
	return ""
}

func checkDNS(l *check.List, p paths.Paths, n *plan.Namespace, root string) {
	if n.DNS.Mode != plan.DNSStrict {
		for _, f := range []string{"resolv.conf", "nsswitch.conf"} {
			l.Add(f, check.Skip, "dns.mode %s: the service uses the host's resolver configuration", n.DNS.Mode)
		}
		return
	}
	// What the namespace helper generates from this plan (internal/resolvconf)
	// is the reference; the runtime copy only explains a mismatch.
	for _, f := range []struct {
		name string
		want []byte
	}{{"resolv.conf", resolvconf.ResolvConf(n.DNS)}, {"nsswitch.conf", resolvconf.NSSwitch()}} {
		runtime := filepath.Join(p.Runtime(n.Name), f.name)
		got, err := procfs.ReadInRoot(root, "/etc/"+f.name, 1<<20)
		if err != nil {
			l.Add(f.name, check.Fail, "cannot read the service's /etc/%s: %v", f.name, err)
			continue
		}
		if !bytes.Equal(got, f.want) {
			rt, rerr := os.ReadFile(runtime)
			switch {
			case rerr != nil:
				l.Add(f.name, check.Fail, "the service's /etc/%s is not the generated file, and %s is missing", f.name, runtime)
			case bytes.Equal(got, rt):
				l.Add(f.name, check.Fail, "the service reads %s, which differs from what the current plan generates: restart vpn-ns@%s and the service", runtime, n.Name)
			default:
				l.Add(f.name, check.Fail, "the service's /etc/%s differs from the generated %s", f.name, runtime)
			}
			continue
		}
		if f.name == "nsswitch.conf" {
			l.Add(f.name, check.Pass, "the service reads the generated file (hosts: files myhostname dns)")
			continue
		}
		l.Add(f.name, check.Pass, "the service reads the generated file: nameserver %s", strings.Join(nameservers(got), ", "))
	}
}

func nameservers(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

// resolverIPC lists the host resolver endpoints strict DNS hides. The
// resolved directory is hidden by a tmpfs whatever allowHostResolverIPC
// says; nscd and the system bus only without it.
func resolverIPC(n *plan.Namespace) []string {
	if n.DNS.Mode != plan.DNSStrict {
		return nil
	}
	out := []string{"/run/systemd/resolve/io.systemd.Resolve"}
	if !n.DNS.AllowHostResolverIPC {
		out = append(out, "/run/nscd/socket", "/run/dbus/system_bus_socket", "/run/avahi-daemon/socket")
	}
	return out
}

// secretPaths lists what the service must not see: the config directory,
// key files, wg-quick files and the tunnel's credential store (the same
// list the drop-in hides).
func secretPaths(n *plan.Namespace) []string {
	var out []string
	add := func(s string) {
		if s != "" && !contains(out, s) {
			out = append(out, s)
		}
	}
	add(filepath.Dir(n.Source))
	wg := n.WireGuard
	add(wg.PrivateKey.File)
	add(wg.PrivateKey.WgQuickFile)
	for _, pr := range wg.Peers {
		if pr.PresharedKey != nil {
			add(pr.PresharedKey.File)
		}
	}
	add("/run/credentials/" + units.Instance(units.WgTemplate, n.Name))
	return out
}

// checkHidden passes when none of the host's objects at list is
// reachable from inside root: absent there, or replaced by another object
// (systemd's InaccessiblePaths= mounts an empty mode-000 node over it).
func checkHidden(l *check.List, p paths.Paths, name string, list []string, root, verb string) {
	if list == nil {
		l.Add(name, check.Skip, "dns.mode compat: the host resolver is deliberately reachable")
		return
	}
	// A missing or unreadable root would make every path look absent.
	rf, err := os.Open(root)
	if err != nil {
		l.Add(name, check.Fail, "cannot look into the service's root: %v", err)
		return
	}
	rf.Close()
	var exposed, hidden, unknown []string
	for _, path := range list {
		host, err := procfs.Stat(p.Host(path))
		if err != nil {
			continue // nothing on the host to hide
		}
		in, _, err := procfs.StatInRoot(root, path)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			hidden = append(hidden, path)
		case err != nil:
			// Never count "could not look" as hidden.
			unknown = append(unknown, fmt.Sprintf("%s (%v)", path, err))
		case in == host:
			exposed = append(exposed, path)
		default:
			hidden = append(hidden, path)
		}
	}
	sort.Strings(exposed)
	switch {
	case len(exposed) > 0:
		l.Add(name, check.Fail, "%s to the service: %s", verb, strings.Join(exposed, ", "))
	case len(unknown) > 0:
		l.Add(name, check.Fail, "cannot check %s", strings.Join(unknown, ", "))
	case len(hidden) == 0:
		l.Add(name, check.Pass, "none of %s exists on the host", strings.Join(list, ", "))
	default:
		l.Add(name, check.Pass, "hidden from the service: %s", strings.Join(hidden, ", "))
	}
}

// checkCaps compares every capability set of every process with the
// bounding set the plan compiled for the unit (none for a non-root
// service or the proxy, the root set of its profile, CAP_NET_ADMIN for
// vpn-pf@): any capability beyond it fails, a forbidden one with what it
// would allow. A process running as root that was compiled as a non-root
// service fails too.
func checkCaps(l *check.List, p paths.Paths, f Facts) {
	allowed := allowedCaps(f)
	var capBad, nnpBad, rootBad []string
	var bnd uint64
	seen := 0
	for _, pid := range f.PIDs {
		s, err := procfs.ReadStatus(p.Proc, pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			capBad = append(capBad, fmt.Sprintf("PID %d: %v", pid, err))
			continue
		}
		if seen == 0 {
			bnd = s.CapBnd
		}
		seen++
		// Grouped by the sets they are in: "CAP_A, CAP_B (bounding, effective)".
		var caps []string
		bySets := map[string][]string{}
		for _, c := range procfs.Caps(s.CapBnd | s.CapEff | s.CapPrm | s.CapAmb) {
			name := procfs.CapName(c)
			if allowed[name] {
				continue
			}
			var in []string
			for _, set := range []struct {
				name string
				v    uint64
			}{{"bounding", s.CapBnd}, {"effective", s.CapEff}, {"permitted", s.CapPrm}, {"ambient", s.CapAmb}} {
				if procfs.Has(set.v, c) {
					in = append(in, set.name)
				}
			}
			key := strings.Join(in, ", ")
			if _, ok := bySets[key]; !ok {
				caps = append(caps, key)
			}
			bySets[key] = append(bySets[key], name)
		}
		for i, key := range caps {
			caps[i] = strings.Join(bySets[key], ", ") + " (" + key + ")"
		}
		if len(caps) > 0 {
			capBad = append(capBad, fmt.Sprintf("PID %d (%s): %s", pid, s.Name, strings.Join(caps, ", ")))
		}
		if !s.NoNewPrivs {
			nnpBad = append(nnpBad, fmt.Sprintf("PID %d (%s)", pid, s.Name))
		}
		if s.UID == 0 && (f.Kind == KindProxy || f.Kind == KindService && f.Service != nil && !f.Service.Root) {
			rootBad = append(rootBad, fmt.Sprintf("PID %d (%s)", pid, s.Name))
		}
	}
	if seen == 0 && len(capBad) == 0 {
		l.Add("capabilities", check.Fail, "the processes exited during the check")
		return
	}
	var forbidden []string
	for _, c := range capBad {
		for name := range hardening.Forbidden {
			if (strings.Contains(c, " "+name+",") || strings.Contains(c, " "+name+" (")) && !contains(forbidden, name) {
				forbidden = append(forbidden, name)
			}
		}
	}
	sort.Slice(forbidden, func(i, j int) bool {
		if a, b := capRank(forbidden[i]), capRank(forbidden[j]); a != b {
			return a < b
		}
		return forbidden[i] < forbidden[j]
	})
	switch {
	case len(capBad) > 0:
		why := ""
		if len(forbidden) > 0 {
			why = "; forbidden: " + forbiddenText(forbidden)
		}
		l.Add("capabilities", check.Fail, "beyond the compiled set (%s): %s%s", setText(allowed), strings.Join(capBad, "; "), why)
	case len(rootBad) > 0:
		l.Add("capabilities", check.Fail, "runs as root although compiled as a non-root service (User= or DynamicUser= changed after the generator ran?): %s", strings.Join(rootBad, ", "))
	default:
		l.Add("capabilities", check.Pass, "within the compiled set (%s) in every set of %s; no forbidden capability (CapBnd=%016x)", setText(allowed), plural(seen, "process", "all processes"), bnd)
	}
	if len(nnpBad) > 0 {
		l.Add("no-new-privs", check.Fail, "not set for %s (a later drop-in sets NoNewPrivileges=no?)", strings.Join(nnpBad, ", "))
	} else {
		l.Add("no-new-privs", check.Pass, "set for %s", plural(seen, "process", "all processes"))
	}
}

// capRank puts the capabilities that undo confinement most directly first.
func capRank(c string) int {
	for i, x := range []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_MODULE"} {
		if c == x {
			return i
		}
	}
	return 99
}

// forbiddenText names forbidden capabilities with what they allow (the
// first three; a root process has them all).
func forbiddenText(caps []string) string {
	var out []string
	for i, c := range caps {
		if i == 3 {
			out = append(out, fmt.Sprintf("and %d more", len(caps)-3))
			break
		}
		out = append(out, c+" ("+hardening.Forbidden[c]+")")
	}
	return strings.Join(out, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	if strings.HasPrefix(many, "all ") {
		return fmt.Sprintf("all %d %s", n, strings.TrimPrefix(many, "all "))
	}
	return fmt.Sprintf("%d %s", n, many)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
