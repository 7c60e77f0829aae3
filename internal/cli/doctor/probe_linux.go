//go:build linux

package doctor

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
)

// Defaults wires the real system: probes in throwaway namespaces, the
// host's links and routes, systemctl.
func Defaults(p paths.Paths, probe bool) Options {
	return Options{
		Paths: p,
		Root:  os.Geteuid() == 0,
		Probe: probe,
		Probes: Probes{
			KernelWireGuard: ProbeKernelWireGuard,
			Nftables:        ProbeNftables,
			Tun:             func() error { return ProbeTun(filepath.Join(p.Root, "dev/net/tun")) },
			Tripwire:        func() (string, error) { return ProbeTripwire(filepath.Join(p.Proc, "1")) },
		},
		TripwireMarker: p.InRuntime(tripwire.MarkerPath),
		UnitStates: func(us []string) (map[string]string, error) {
			props, err := systemd.Systemctl{}.Show(us, "ActiveState")
			if err != nil {
				return nil, err
			}
			out := map[string]string{}
			for i, u := range us {
				out[u] = props[i]["ActiveState"]
			}
			return out, nil
		},
		Host: Host{
			Links:  func() ([]kstate.Link, error) { return kstate.Links(nil) },
			Routes: func() ([]kstate.Route, error) { return kstate.Routes(nil) },
			RouteTo: func(sock string, dst netip.Addr) (kstate.Route, error) {
				if sock == "" {
					return kstate.RouteTo(nil, dst)
				}
				ns, err := netns.Open(p.Netns(sock))
				if err != nil {
					return kstate.Route{}, err
				}
				defer ns.Close()
				return kstate.RouteTo(ns, dst)
			},
			TCP:     func() ([]sockdiag.Socket, error) { return sockdiag.TCP(nil) },
			Holders: func(inodes []uint32) map[uint32][]sockdiag.Holder { return sockdiag.Holders(p.Proc, inodes) },
		},
		Systemd: systemd.InstalledVersion,
		Booted:  systemd.Systemctl{BootedPath: filepath.Join(p.Root, "run/systemd/system")}.Booted,
		GeneratorDirs: []string{"/etc/systemd/system-generators", "/run/systemd/system-generators",
			"/usr/local/lib/systemd/system-generators", "/usr/lib/systemd/system-generators", "/lib/systemd/system-generators"},
	}
}

// throwaway runs f with a new network namespace that is never pinned: it
// and everything created in it vanish when the handle is closed.
func throwaway(f func(ns *netns.NetNS) error) error {
	ns, err := netns.New()
	if err != nil {
		return fmt.Errorf("create a throwaway namespace: %w", err)
	}
	defer ns.Close()
	return f(ns)
}

// ProbeKernelWireGuard creates a wireguard link in a throwaway namespace.
func ProbeKernelWireGuard() (bool, error) {
	ok := false
	err := throwaway(func(ns *netns.NetNS) error {
		h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
		if err != nil {
			return err
		}
		defer h.Close()
		err = h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "vpncprobe0"}})
		switch {
		case err == nil:
			ok = true
			return nil
		case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV):
			return nil
		}
		return err
	})
	return ok, err
}

// probePlan uses every feature the kill switch and pin table use: strict
// DNS, allowList egress with CIDRs and ports, ingress, host link, IPv6.
const probePlan = `ipv6: {mode: tunnel}
dns: {servers: [10.64.0.1, "fd00::1"], search: [example.net]}
egress:
  mode: allowList
  allowedCidrs: [10.0.0.0/8, 192.168.1.0/24, "2001:db8::/32"]
  allowedTcpPorts: [443]
  allowedUdpPorts: [123]
ingress: {fromTunnel: {tcp: [51413], udp: [51413]}}
publishToHost: {tcp: [8080]}
wireguard:
  privateKeyFile: /nonexistent/probe.key
  addresses: [10.64.0.2/32, "fd00::2/128"]
  endpointPinning: {enable: true}
  peers:
    - publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0, "::/0"]
services: [{unit: probe.service}]
`

// ProbeNftables loads the rulesets a namespace needs into a throwaway
// namespace (internal/firewall, exactly as vpn-ns@ and vpn-pin@ do).
func ProbeNftables() error {
	r := config.CompileFile("/etc/vpn-confinement.d/probe.yaml", []byte(probePlan), config.Env{})
	config.CompileAll([]*config.Result{r})
	if r.Plan == nil {
		return fmt.Errorf("internal error: probe plan invalid: %v", r.Diags.Errors())
	}
	return throwaway(func(ns *netns.NetNS) error {
		if err := firewall.Apply(ns, firewall.Build(r.Plan)); err != nil {
			return fmt.Errorf("kill switch: %w", err)
		}
		eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:51820"), netip.MustParseAddrPort("[2001:db8::7]:51820")}
		if err := firewall.ApplyPin(ns, firewall.BuildPin(r.Plan, eps)); err != nil {
			return fmt.Errorf("pin table: %w", err)
		}
		return nil
	})
}

// ProbeTripwire asks internal/tripwire whether this host can have the
// host-side tripwire: PID 1's cgroup2 mount, and the kernel accepting the
// table's socket cgroupv2 rules (loaded and deleted in one batch, in a
// throwaway namespace: the kernel's answer is the same in every network
// namespace, and the host's ruleset is never touched).
func ProbeTripwire(proc1 string) (string, error) {
	var unsupported string
	err := throwaway(func(ns *netns.NetNS) error {
		err := (&tripwire.Host{NS: ns, Proc: proc1}).Supported()
		if tripwire.IsUnsupported(err) {
			unsupported = err.Error()
			return nil
		}
		return err
	})
	return unsupported, err
}

// ProbeTun opens the TUN clone device, as wireguard-go does.
func ProbeTun(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}
