package doctor

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
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

func TestPublishedPortTaken(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "publish: [{listen: \"127.0.0.1:8080\", port: 8080}, {listen: \"0.0.0.0:9091\"}]\nservices: [{unit: app.service}]\n")
	var listeners []procfs.TCPListener
	f.o.Host.TCPListeners = func() ([]procfs.TCPListener, error) { return listeners, nil }
	states := map[string]string{}
	f.o.UnitStates = func([]string) (map[string]string, error) { return states, nil }
	f.expect("published", check.OK, "no other listener on the published addresses 127.0.0.1:8080, 0.0.0.0:9091")

	l := func(a string, pid int, name string) procfs.TCPListener {
		return procfs.TCPListener{Addr: netip.MustParseAddrPort(a), Holders: []procfs.Holder{{PID: pid, Name: name}}}
	}
	// Our own socket units listening (PID 1 holds them, the units are active).
	listeners = []procfs.TCPListener{l("127.0.0.1:8080", 1, "systemd"), l("0.0.0.0:9091", 1, "systemd"), l("0.0.0.0:22", 700, "sshd")}
	states["vpn-publish-media-8080.socket"], states["vpn-publish-media-9091.socket"] = "active", "active"
	f.expect("published", check.OK, "no other listener")

	// Something else on the port: a wildcard listener, and PID 1 with
	// another socket unit.
	listeners = []procfs.TCPListener{l("[::]:8080", 812, "lighttpd"), l("0.0.0.0:9091", 1, "systemd")}
	states["vpn-publish-media-9091.socket"] = "inactive"
	f.expect("published", check.Fail, "127.0.0.1:8080 (vpn-publish-media-8080.socket of media) is taken by lighttpd (PID 812) on [::]:8080")
	f.expect("published", check.Fail, "0.0.0.0:9091 (vpn-publish-media-9091.socket of media) is taken by systemd (PID 1): another socket unit")
	// Another address on the same port does not collide.
	listeners = []procfs.TCPListener{l("192.168.1.20:8080", 812, "lighttpd")}
	f.expect("published", check.OK, "no other listener")
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "0.0.0.0:80", true},
		{"0.0.0.0:80", "192.168.1.2:80", true},
		{"127.0.0.1:80", "[::]:80", true},
		{"[::1]:80", "0.0.0.0:80", false},
		{"[::1]:80", "[::]:80", true},
		{"127.0.0.1:80", "[::1]:80", false},
	} {
		if got := overlaps(netip.MustParseAddrPort(tc.a), netip.MustParseAddrPort(tc.b)); got != tc.want {
			t.Errorf("%s vs %s: %v", tc.a, tc.b, got)
		}
	}
}
