package doctor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
)

func TestFreezer(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "services: [{unit: app.service}]\n")
	f.expect("freezer", check.OK, "no namespace uses onTunnelLoss freeze")
	f.namespace("media", "onTunnelLoss: freeze\nservices: [{unit: app.service}]\n")
	f.expect("freezer", check.OK, "onTunnelLoss freeze of media can freeze and thaw")
	os.Remove(filepath.Join(f.o.Paths.Sys, "fs", "cgroup", "system.slice", "cgroup.freeze"))
	f.expect("freezer", check.Fail, "onTunnelLoss freeze cannot work here: no cgroup.freeze in")
	f.o.FSType = func(string) (int64, error) { return tmpfsMagic, nil }
	f.expect("freezer", check.Fail, "the unified cgroup hierarchy is not mounted at "+filepath.Join(f.o.Paths.Sys, "fs", "cgroup")+"; media use it (use block or stop")
	f.namespace("media", "services: [{unit: app.service}]\n")
	f.expect("freezer", check.OK, "this host cannot freeze (the unified cgroup hierarchy is not mounted")
}

func TestTripwire(t *testing.T) {
	f := newFake(t)
	f.expect("tripwire", check.OK, "host-side tripwire available")
	f.o.Probes.Tripwire = func() (string, error) {
		return "the kernel has no nftables socket expression (CONFIG_NFT_SOCKET): no such file or directory", nil
	}
	f.expect("tripwire", check.Warn, "host-side tripwire NOT available, nothing claims it: the kernel has no nftables socket expression (CONFIG_NFT_SOCKET)")
	// Not root: only what a hook recorded.
	f.o.Root = false
	f.expect("tripwire", check.Warn, "not probed (needs root)")
	f.write(f.o.TripwireMarker, "no cgroup2 hierarchy is mounted (cgroup v1-only host)\n", 0o644)
	f.expect("tripwire", check.Warn, "NOT available, nothing claims it: no cgroup2 hierarchy is mounted (cgroup v1-only host) (recorded by a unit's hook in "+f.o.TripwireMarker)
	// Supported now, unsupported at a unit's start.
	f.o.Root = true
	f.o.Probes.Tripwire = func() (string, error) { return "", nil }
	f.expect("tripwire", check.Warn, "found it unavailable earlier")
	f.o.Probes.Tripwire = func() (string, error) {
		return "", errors.New("tripwire: probe: operation not permitted (needs CAP_NET_ADMIN)")
	}
	os.Remove(f.o.TripwireMarker)
	f.expect("tripwire", check.Warn, "cannot tell whether the host-side tripwire works: tripwire: probe: operation not permitted")
}
