//go:build linux

// Package namespace builds and removes a confinement namespace: what
// vpn-ns@NAME.service runs (research anchor §4.1), reworked to fail closed
// (anchor §8.9, §9.2):
//
//   - a pin left at /run/netns/NAME by a crash is never adopted: it is
//     unpinned and a fresh namespace is built;
//   - the firewall is loaded in one transaction before any link but the
//     (still down) loopback exists, and before loopback comes up;
//   - the namespace is pinned last, so nothing that joins by path
//     (NetworkNamespacePath=, ip netns exec) can enter a half-built namespace;
//   - Down never removes the firewall: it unpins the namespace and the policy
//     dies with it, so a process still inside keeps running under the policy.
//
// Until the pin exists the namespace is referenced only by this process, so
// if the helper is killed mid-way the kernel destroys the namespace together
// with the veth peer inside it.
package namespace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/hostlink"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
)

// A step of Up. Its name prefixes the error when it fails ("verb noun").
type step struct {
	name string
	when func(*plan.Namespace) bool // nil: always
	run  func(*builder) error
}

// upSteps is the bring-up order; see the package comment for why it is this one.
var upSteps = []step{
	{name: "remove stale pin", run: (*builder).removeStalePin},
	{name: "create namespace", run: (*builder).create},
	{name: "set sysctls", run: (*builder).sysctls},
	{name: "load firewall", run: (*builder).firewall},
	{name: "bring up loopback", run: (*builder).loopback},
	{name: "load host-link firewall", when: func(n *plan.Namespace) bool { return n.HostLink != nil }, run: (*builder).hostLinkFirewall},
	{name: "create host link", when: func(n *plan.Namespace) bool { return n.HostLink != nil }, run: (*builder).hostLink},
	{name: "prepare private files", run: (*builder).private},
	{name: "write resolver files", run: (*builder).resolver},
	{name: "pin namespace", run: (*builder).pin},
	{name: "record confined units", run: (*builder).record},
}

// afterStep, when set (tests only), runs after each successful step; an error
// from it fails Up as if the step had failed.
var afterStep func(step string) error

// builder carries the state of one Up.
type builder struct {
	n   *plan.Namespace
	log *journal.Logger
	ns  *netns.NetNS
}

// Up builds namespace n and pins it at plan.NetnsPath(n.Name). On error
// everything it created is removed again (Down) and the error names the
// failed step.
func Up(n *plan.Namespace, log *journal.Logger) (err error) {
	if err := checkName(n.Name); err != nil {
		return err
	}
	start := time.Now()
	b := &builder{n: n, log: log}
	defer func() {
		if b.ns != nil {
			b.ns.Close() // after a successful pin the pin keeps the namespace
		}
	}()
	for _, s := range upSteps {
		if s.when != nil && !s.when(n) {
			continue
		}
		err := s.run(b)
		if err == nil && afterStep != nil {
			err = afterStep(s.name)
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", s.name, err)
			if derr := Down(n, log); derr != nil {
				log.Warnf("namespace %s: cleaning up after failed start: %v", n.Name, derr)
			}
			return err
		}
		log.Debugf("namespace %s: %s: done after %v", n.Name, s.name, time.Since(start))
	}
	log.Infof("namespace %s up at %s in %v", n.Name, plan.NetnsPath(n.Name), time.Since(start).Round(time.Microsecond))
	return nil
}

func (b *builder) removeStalePin() error {
	path := plan.NetnsPath(b.n.Name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	// Adopting it would inherit whatever a crashed run or someone else put
	// there (links, routes, no or another firewall).
	b.log.Warnf("namespace %s: %s exists from an earlier run; not adopting it: unpinning it (processes still inside keep its firewall) and building a fresh one", b.n.Name, path)
	if err := netns.Unpin(path); err != nil {
		return err
	}
	// Cut the old namespace's host link even if the new plan has none
	// (hostlink.Up would replace it otherwise): a process lingering in the
	// old namespace must not stay reachable from the host.
	return hostlink.Down(b.n.Name, nil)
}

func (b *builder) create() error {
	ns, err := netns.New()
	if err != nil {
		return err
	}
	b.ns = ns
	return nil
}

// sysctls are written from a thread inside the namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
//
// ip_unprivileged_port_start=0 lets hardened services that run without
// CAP_NET_BIND_SERVICE (the baseline hardening drops all capabilities) bind
// ports below 1024. It is safe because the namespace holds only our services;
// the host's setting is untouched.
func (b *builder) sysctls() error {
	return b.ns.Do(func() error {
		if err := writeSysctl("net/ipv4/ip_unprivileged_port_start", "0"); err != nil {
			return err
		}
		if b.n.IPv6 {
			return nil
		}
		if _, err := os.Stat("/proc/sys/net/ipv6"); errors.Is(err, os.ErrNotExist) {
			return nil // kernel without IPv6 (ipv6.disable=1): nothing to disable
		}
		// "default" covers links created later (veth peer, WireGuard),
		// "all" the loopback that already exists.
		for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
			if err := writeSysctl(k, "1"); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeSysctl(key, value string) error {
	path := "/proc/sys/" + key
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, werr := f.WriteString(value + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (b *builder) firewall() error {
	return firewall.Apply(b.ns, firewall.Build(b.n))
}

func (b *builder) loopback() error {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(b.ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	return h.LinkSetUp(lo)
}

func (b *builder) hostLink() error {
	return hostlink.Up(b.ns, b.n.Name, b.n.HostLink)
}

// hostLinkFirewall loads the host side of the host link in the host's
// namespace (this helper's own) before the link exists: from its first
// packet, the link leads only to the egress.toHost ports of the host.
func (b *builder) hostLinkFirewall() error {
	return firewall.Apply(nil, firewall.BuildHostLink(b.n))
}

func (b *builder) private() error {
	return preparePrivate(b.n)
}

// resolver writes the files even in compat mode (compat services simply do
// not bind them): one code path, and switching modes needs no restart of
// the namespace.
func (b *builder) resolver() error {
	return resolvconf.Write(plan.RuntimePath(b.n.Name), b.n.DNS)
}

func (b *builder) pin() error {
	return b.ns.Pin(plan.NetnsPath(b.n.Name))
}

func (b *builder) record() error {
	return writeRecord(b.n)
}

// RecordPath is the file listing the units confined by namespace name at its
// last good start.
func RecordPath(name string) string { return filepath.Join(plan.StateDir, name+".units") }

// writeRecord stores the confined units' names, one per line. The generator
// reads it when the namespace's YAML no longer parses, to keep blocking
// these units instead of letting them start unconfined. It outlives reboots,
// hence the fsyncs.
func writeRecord(n *plan.Namespace) error {
	var sb strings.Builder
	for _, u := range n.Services {
		sb.WriteString(u.Name + "\n")
	}
	for _, u := range n.Sockets {
		sb.WriteString(u.Name + "\n")
	}
	if err := os.MkdirAll(plan.StateDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", plan.StateDir, err)
	}
	path := RecordPath(n.Name)
	f, err := os.CreateTemp(plan.StateDir, "."+n.Name+".units.*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.WriteString(sb.String())
	merr := f.Chmod(0o644)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if d, err := os.Open(plan.StateDir); err == nil {
		d.Sync() // best effort: the rename is already visible
		d.Close()
	}
	return nil
}

// Down removes namespace n: the pin, the host link and the runtime files.
// It keeps the state record (the generator needs it while the namespace is
// down). It is idempotent and succeeds when everything is already gone, as
// it also runs after a failed start (ExecStopPost=).
func Down(n *plan.Namespace, log *journal.Logger) error {
	return down(n.Name, n.HostLink, n, log)
}

// DownName is Down without a plan (its file is gone): it removes the pin,
// any host link tagged as ours for name, and the runtime files.
func DownName(name string, log *journal.Logger) error {
	return down(name, nil, nil, log)
}

func down(name string, hl *plan.HostLink, current *plan.Namespace, log *journal.Logger) error {
	if err := checkName(name); err != nil {
		return err
	}
	// Published units whose files vanished are no longer bound to us:
	// stop them by name, from the plan that runs and the current one.
	applied, _ := plan.LoadTrusted(AppliedPath(name))
	stopPublished(name, []*plan.Namespace{applied, current}, log)
	var errs []error
	// The firewall is not deleted: unpinning drops the last reference held
	// by us and the policy dies with the namespace. Deleting it first would
	// leave any process still inside without policy (anchor §8.9).
	path := plan.NetnsPath(name)
	_, statErr := os.Lstat(path)
	if err := netns.Unpin(path); err != nil {
		errs = append(errs, fmt.Errorf("unpin namespace: %w", err))
	} else if statErr == nil {
		log.Infof("namespace %s: unpinned %s", name, path)
	}
	if err := hostlink.Down(name, hl); err != nil {
		errs = append(errs, fmt.Errorf("delete host link: %w", err))
	}
	if err := firewall.DeleteTable(nil, firewall.HostLinkTablePrefix+name); err != nil {
		errs = append(errs, fmt.Errorf("delete host-link firewall: %w", err))
	}
	if err := os.RemoveAll(plan.RuntimePath(name)); err != nil {
		errs = append(errs, fmt.Errorf("remove runtime files: %w", err))
	}
	if err := os.RemoveAll(plan.PrivatePath(name)); err != nil {
		errs = append(errs, fmt.Errorf("remove private runtime files: %w", err))
	}
	// A stopped namespace has no tunnel to report: node_exporter must not
	// go on serving its last state (vpn-wg@ stops before vpn-ns@, so no
	// helper writes it again).
	if err := os.Remove(plan.MetricsPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove the metrics textfile: %w", err))
	}
	return errors.Join(errs...)
}

// checkName: the name becomes a path below /run/netns, /run/vpn-confinement
// and the state dir; the plan comes from the generator, but a wrong name must
// never reach the file system.
func checkName(name string) error {
	if !config.ValidNamespaceName(name) {
		return fmt.Errorf("check namespace name %q: not a valid namespace name", name)
	}
	return nil
}
