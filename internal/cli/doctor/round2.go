package doctor

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
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
