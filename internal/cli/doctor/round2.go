package doctor

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// freezer: onTunnelLoss freeze uses systemd's freezer (systemctl freeze),
// which needs the unified cgroup hierarchy: cgroup.freeze in the units'
// cgroups. Only a namespace that uses freeze makes its absence a failure.
func (d *doctor) freezer() {
	users := d.namesWhere(func(n *plan.Namespace) bool { return n.LossMode() == plan.OnTunnelLossFreeze })
	base := filepath.Join(d.o.Paths.Sys, "fs", "cgroup")
	fsType := d.o.FSType
	if fsType == nil {
		fsType = statfsType
	}
	unified := false
	if t, err := fsType(base); err == nil && t == cgroup2Magic {
		unified = true
	}
	file := ""
	for _, dir := range []string{"system.slice", "init.scope"} {
		p := filepath.Join(base, dir, "cgroup.freeze")
		if _, err := os.Stat(p); err == nil {
			file = p
			break
		}
	}
	can := unified && file != ""
	why := "the unified cgroup hierarchy is not mounted at " + base
	if unified {
		why = "no cgroup.freeze in " + filepath.Join(base, "system.slice") + " (the kernel's cgroup v2 freezer needs Linux >= 5.2)"
	}
	switch {
	case can && len(users) > 0:
		d.add("freezer", check.OK, "the cgroup freezer works here (%s): onTunnelLoss freeze of %s can freeze and thaw", file, strings.Join(users, ", "))
	case can:
		d.add("freezer", check.OK, "the cgroup freezer works here (%s); no namespace uses onTunnelLoss freeze", file)
	case len(users) > 0:
		d.add("freezer", check.Fail, "onTunnelLoss freeze cannot work here: %s; %s use it (use block or stop, or boot with systemd.unified_cgroup_hierarchy=1)", why, strings.Join(users, ", "))
	default:
		d.add("freezer", check.OK, "this host cannot freeze (%s); that matters only for onTunnelLoss freeze, which no namespace uses", why)
	}
}

// tripwire: the host-side tripwire is defence in depth; a host that cannot
// have it runs without it, and this says so plainly.
func (d *doctor) tripwire() {
	marker := ""
	if d.o.TripwireMarker != "" {
		if b, err := os.ReadFile(d.o.TripwireMarker); err == nil {
			marker = strings.TrimSpace(string(b))
		}
	}
	var err error
	unsupported := ""
	probed := d.o.Root && d.o.Probe && d.o.Probes.Tripwire != nil
	if probed {
		unsupported, err = d.o.Probes.Tripwire()
	}
	switch {
	case probed && err == nil && unsupported == "" && marker != "":
		d.add("tripwire", check.Warn, "the kernel accepts the host-side tripwire now, but a unit's hook found it unavailable earlier (%s: %s): restart the confined units to register them", d.o.TripwireMarker, marker)
	case probed && err == nil && unsupported == "":
		d.add("tripwire", check.OK, "host-side tripwire available: a packet of a confined unit's socket in the host namespace is dropped and counted (socket cgroupv2, tested in a throwaway namespace)")
	case probed && unsupported != "":
		d.add("tripwire", check.Warn, "host-side tripwire NOT available, nothing claims it: %s; confined units start without it (the namespace and its kill switch still confine them; only the escape counter is missing)", unsupported)
	case marker != "":
		d.add("tripwire", check.Warn, "host-side tripwire NOT available, nothing claims it: %s (recorded by a unit's hook in %s); confined units start without it", marker, d.o.TripwireMarker)
	case probed:
		d.add("tripwire", check.Warn, "cannot tell whether the host-side tripwire works: %v", err)
	default:
		why := "needs root"
		switch {
		case !d.o.Probe:
			why = "--no-probe"
		case d.o.Root:
			why = "no probe on this system"
		}
		d.add("tripwire", check.Warn, "host-side tripwire not probed (%s)", why)
	}
}

// published: a published port (publish:) is a socket unit in the host
// namespace; if something else already listens on its address and port,
// the socket unit fails and the web UI is not published. The generated
// sockets themselves (held by PID 1, their socket unit active) are not a
// conflict.
func (d *doctor) published() {
	type entry struct {
		ns, unit string
		addr     netip.AddrPort
	}
	var entries []entry
	for _, n := range d.plans {
		for _, p := range n.Publish {
			for _, l := range p.Listen {
				ap, err := netip.ParseAddrPort(l)
				if err != nil {
					continue // a named address (validate checked it)
				}
				entries = append(entries, entry{n.Name, p.Unit + ".socket", ap})
			}
		}
	}
	if len(entries) == 0 {
		return
	}
	if d.o.Host.TCPListeners == nil {
		return
	}
	ls, err := d.o.Host.TCPListeners()
	if err != nil {
		d.add("published", check.Warn, "cannot list the host's listening TCP sockets: %v", err)
		return
	}
	var units []string
	for _, e := range entries {
		units = append(units, e.unit)
	}
	states := map[string]string{}
	if d.o.UnitStates != nil {
		states, _ = d.o.UnitStates(units)
	}
	var conflicts []string
	for _, e := range entries {
		for _, l := range ls {
			if !overlaps(e.addr, l.Addr) {
				continue
			}
			if heldBy(l, 1) && states[e.unit] == "active" {
				continue // ours: the generated socket unit listens
			}
			who := holdersText(l.Holders)
			if heldBy(l, 1) {
				who = "systemd (PID 1): another socket unit, see systemctl list-sockets"
			}
			conflicts = append(conflicts, fmt.Sprintf("%s (%s of %s) is taken by %s on %s", e.addr, e.unit, e.ns, who, l.Addr))
		}
	}
	sort.Strings(conflicts)
	if len(conflicts) > 0 {
		d.add("published", check.Fail, "something else already listens on a published port, so its socket unit cannot start: %s", strings.Join(conflicts, "; "))
		return
	}
	var addrs []string
	for _, e := range entries {
		addrs = append(addrs, e.addr.String())
	}
	d.add("published", check.OK, "no other listener on the published addresses %s", strings.Join(addrs, ", "))
}

// overlaps reports whether a listener on b keeps a socket on a from
// binding: same port, and the same address or a wildcard on either side
// (an IPv6 wildcard may also cover IPv4: dual-stack sockets).
func overlaps(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	aa, ba := a.Addr(), b.Addr()
	switch {
	case aa == ba:
		return true
	case ba.IsUnspecified() && (ba.Is6() || aa.Is4()):
		return true
	case aa.IsUnspecified() && (aa.Is6() || ba.Is4()):
		return true
	}
	return false
}

func heldBy(l procfs.TCPListener, pid int) bool {
	for _, h := range l.Holders {
		if h.PID == pid {
			return true
		}
	}
	return false
}

func holdersText(hs []procfs.Holder) string {
	if len(hs) == 0 {
		return "a socket no process holds (a kernel listener?)"
	}
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s (PID %d)", h.Name, h.PID))
	}
	return strings.Join(out, ", ")
}
