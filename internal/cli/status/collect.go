//go:build linux

package status

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// ErrUnknownNamespace is returned when NAME has no plan.
var ErrUnknownNamespace = errors.New("unknown namespace")

// Collector reads the state of the running system.
type Collector struct {
	Paths   paths.Paths
	Systemd systemd.Manager
	// Kernel enables reading links, routes, WireGuard and nftables
	// (needs root); without it those parts are reported as unread.
	Kernel bool
	Now    time.Time
}

var unitProps = []string{"Id", "LoadState", "ActiveState", "SubState", "MainPID", "ControlGroup", "FreezerState"}

// Collect builds the report for every namespace, or only one.
func (c Collector) Collect(only string) (*Report, error) {
	plans, err := c.Paths.LoadPlans()
	if err != nil {
		return nil, err
	}
	var sel []paths.PlanFile
	if only != "" {
		for _, pf := range plans {
			if pf.Name == only {
				sel = append(sel, pf)
			}
		}
	}
	// The generator's view of the config dir (files without a plan,
	// orphans), and the namespaces that may run without a plan.
	gen, genErr := c.generate()
	candidates := c.orphanCandidates(plans, gen)
	if only != "" {
		if len(sel) == 0 {
			// A namespace whose file was removed has no plan, but may
			// still run: that is worth a report, not "unknown".
			if !slices.Contains(candidates, only) {
				_, err := c.Paths.LoadPlan(only)
				return nil, fmt.Errorf("%w: %v", ErrUnknownNamespace, err)
			}
			candidates = []string{only}
		} else {
			candidates = nil
		}
		plans = sel
	}
	rep := &Report{Systemd: "running", Namespaces: []Namespace{}, NotCompiled: []NotCompiled{}, Orphans: []Orphan{}}

	// One systemctl call for every unit of every namespace.
	var all []string
	for _, pf := range plans {
		if pf.Plan != nil {
			all = append(all, chainUnits(pf.Plan)...)
			all = append(all, confinedUnits(pf.Plan)...)
			all = append(all, sectionUnits(pf.Plan)...)
		}
	}
	all = append(all, orphanUnits(candidates, c.Paths.StateDir)...)
	props := map[string]systemd.Props{}
	if res, err := c.Systemd.Show(all, unitProps...); err != nil {
		rep.Systemd = err.Error()
	} else {
		for i, u := range all {
			props[u] = res[i]
		}
	}
	known := Known{Systemd: rep.Systemd == "running", Kernel: c.Kernel}

	var host *netns.NetNS
	if c.Kernel {
		// The host is PID 1's namespace (where the helpers open the
		// tunnel's UDP socket), whatever namespace status runs in.
		if host, err = netns.Open(filepath.Join(c.Paths.Proc, "1", "ns", "net")); err != nil {
			host, _ = netns.Current()
		}
		if host != nil {
			defer host.Close()
		}
	}
	kernelOK := map[string]bool{}
	for _, pf := range plans {
		n, ok := c.namespace(pf, props, host)
		rep.Namespaces = append(rep.Namespaces, n)
		kernelOK[n.Name] = ok
	}
	if c.Kernel && host != nil {
		rep.Tripwire = c.collectTripwire(rep, host)
	}
	for i := range rep.Namespaces {
		n := &rep.Namespaces[i]
		if n.State == StateUnknown && n.Config == "" {
			continue // the plan could not be used: nothing to assess
		}
		Assess(n, Known{Systemd: known.Systemd, Kernel: c.Kernel && kernelOK[n.Name]}, c.Now)
	}
	if only == "" {
		rep.NotCompiled = c.notCompiled(plans, gen, genErr)
	}
	rep.Orphans = c.collectOrphans(gen, candidates, props, Known{Systemd: known.Systemd, Kernel: c.Kernel})
	return rep, nil
}

// generate compiles the config dir as the generator does.
func (c Collector) generate() (*generator.Output, error) {
	return generator.Generate(generator.Options{ConfigDir: c.Paths.ConfigDir, UnitPath: c.Paths.UnitPath, StateDir: c.Paths.StateDir})
}

func chainUnits(p *plan.Namespace) []string {
	out := []string{units.Instance(units.NsTemplate, p.Name), units.Instance(units.WgTemplate, p.Name)}
	if p.WireGuard.Pinning != nil {
		out = append(out, units.Instance(units.PinTemplate, p.Name))
	}
	if p.PortForwarding != nil {
		out = append(out, units.Instance(units.PfTemplate, p.Name))
	}
	return out
}

func confinedUnits(p *plan.Namespace) []string {
	var out []string
	for _, u := range p.Services {
		out = append(out, u.Name)
	}
	for _, u := range p.Sockets {
		out = append(out, u.Name)
	}
	return out
}

// sectionUnits are the units the round-2 sections show (read in the same
// systemctl call as the others).
func sectionUnits(p *plan.Namespace) []string {
	return publishUnits(p) // vpn-pf@ is among chainUnits
}

func unitOf(name string, p systemd.Props) Unit {
	return Unit{Name: name, LoadState: p["LoadState"], ActiveState: p["ActiveState"], SubState: p["SubState"], MainPID: p.Int("MainPID"),
		ControlGroup: p["ControlGroup"], FreezerState: p["FreezerState"]}
}

// namespace collects the facts of one namespace; it reports whether its
// kernel state could be read.
func (c Collector) namespace(pf paths.PlanFile, props map[string]systemd.Props, host *netns.NetNS) (Namespace, bool) {
	n := Namespace{Name: pf.Name, Plan: pf.Path, Problems: []string{}, Notes: []string{}, Errors: []string{},
		Units: []Unit{}, Confined: []Unit{}, Interfaces: []kstate.Link{}, Routes: []kstate.Route{}, Published: []Published{}}
	p := pf.Plan
	if p == nil {
		n.State = StateUnknown
		n.Problems = append(n.Problems, fmt.Sprintf("the plan cannot be used: %v", pf.Err))
		return n, false
	}
	n.Config = p.Source
	for _, u := range chainUnits(p) {
		n.Units = append(n.Units, unitOf(u, props[u]))
	}
	for _, u := range confinedUnits(p) {
		n.Confined = append(n.Confined, unitOf(u, props[u]))
	}
	pin := c.Paths.Netns(p.Name)
	n.Netns = Netns{Path: pin, Present: netns.IsPinned(pin)}
	var pinID procfs.ID
	if n.Netns.Present {
		if id, err := procfs.Stat(pin); err == nil {
			pinID = id
			n.Netns.ID = id.String()
		}
	}
	for i := range n.Confined {
		u := &n.Confined[i]
		if u.MainPID <= 0 {
			continue
		}
		id, err := procfs.NetnsOf(c.Paths.Proc, u.MainPID)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				n.Errors = append(n.Errors, fmt.Sprintf("namespace of %s (PID %d): %v", u.Name, u.MainPID, err))
			}
			continue
		}
		in := n.Netns.Present && id == pinID
		u.InNamespace = &in
		u.ProcessNetns = id.String()
	}
	n.DNS = DNS{Mode: p.DNS.Mode, Servers: []string{}, Search: p.DNS.Search, HostIPC: p.DNS.AllowHostResolverIPC}
	for _, a := range p.DNS.Servers {
		n.DNS.Servers = append(n.DNS.Servers, a.String())
	}
	if p.DNS.Mode == plan.DNSStrict {
		n.DNS.ResolvConf = filepath.Join(c.Paths.Runtime(p.Name), "resolv.conf")
		if b, err := os.ReadFile(n.DNS.ResolvConf); err == nil {
			n.DNS.Generated = nameservers(string(b))
			n.DNS.Current = bytes.Equal(b, resolvconf.ResolvConf(p.DNS))
		}
	}
	n.Tunnel = Tunnel{Interface: p.WireGuard.Interface, Configured: p.WireGuard.Backend, Addresses: []netip.Prefix{}, Peers: []Peer{}}
	if h := p.HostLink; h != nil {
		n.HostLink = &HostLink{HostIf: h.HostIf, NsIf: h.NsIf, Subnet: h.Subnet.String(), HostAddr: h.HostAddr.String(),
			NsAddr: h.NsAddr.String(), PublishedTCP: p.Ingress.FromHostTCP}
	}
	published(&n, p, props)
	if p.PortForwarding != nil {
		n.PortForwarding = c.portForwarding(p, props)
	}
	if pn := p.WireGuard.Pinning; pn != nil {
		sock := p.WireGuard.SocketNamespace
		if sock == "" {
			sock = "init"
		}
		n.Pinning = &Pinning{Namespace: sock, Table: pn.Table, Mark: pn.FwMark}
	}
	c.sections(&n, pf, props)
	if !c.Kernel {
		if n.Netns.Present {
			n.Errors = append(n.Errors, "kernel state (interfaces, tunnel, firewall): "+kstate.ErrPermission.Error())
		}
		return n, false
	}
	return n, c.kernel(&n, p, host)
}

// sections collects the round-2 sections of n, each in its own file.
func (c Collector) sections(n *Namespace, pf paths.PlanFile, props map[string]systemd.Props) {
	c.collectSupervisor(n)
	c.collectPending(n, pf)
}

// kernel reads links, routes, the tunnel and the firewalls; it reports
// whether the namespace's state could be read.
func (c Collector) kernel(n *Namespace, p *plan.Namespace, host *netns.NetNS) bool {
	ok := true
	fail := func(what string, err error) {
		n.Errors = append(n.Errors, fmt.Sprintf("%s: %v", what, err))
		ok = false
	}
	if host != nil {
		c.hostSide(n, p, host)
	}
	if n.HostLink != nil && host != nil {
		if links, err := kstate.Links(host); err != nil {
			fail("host links", err)
		} else {
			for _, l := range links {
				if l.Name == n.HostLink.HostIf {
					n.HostLink.HostPresent, n.HostLink.HostUp = true, l.Up
				}
			}
		}
	}
	if n.Pinning != nil {
		sockNS := host
		if s := p.WireGuard.SocketNamespace; s != "" {
			var err error
			if sockNS, err = netns.Open(c.Paths.Netns(s)); err != nil {
				fail("socket namespace "+s, err)
				sockNS = nil
			} else {
				defer sockNS.Close()
			}
		}
		if sockNS != nil {
			fw, err := kstate.ReadFirewall(sockNS, n.Pinning.Table)
			if err != nil {
				fail("pinning table", err)
			}
			n.Pinning.Firewall = fw
		}
	}
	if !n.Netns.Present {
		return ok
	}
	ns, err := netns.Open(n.Netns.Path)
	if err != nil {
		fail("namespace", err)
		return false
	}
	defer ns.Close()
	links, err := kstate.Links(ns)
	if err != nil {
		fail("interfaces", err)
		return false
	}
	n.Interfaces = links
	for _, l := range links {
		switch {
		case l.Name == p.WireGuard.Interface:
			t := &n.Tunnel
			t.Present, t.Up, t.MTU, t.Addresses = true, l.Up, l.MTU, l.Addrs
			switch l.Kind {
			case "wireguard":
				t.Backend = "kernel"
			case "tun":
				t.Backend = "userspace"
			default:
				t.Backend = l.Kind
			}
		case n.HostLink != nil && l.Name == n.HostLink.NsIf:
			n.HostLink.NsPresent = true
		}
	}
	if rs, err := kstate.Routes(ns); err != nil {
		fail("routes", err)
	} else {
		n.Routes = rs
	}
	if fw, err := kstate.ReadFirewall(ns, firewall.TableName); err != nil {
		fail("firewall", err)
	} else {
		n.Firewall = fw
	}
	if pf := n.PortForwarding; pf != nil {
		if open, err := firewall.Ports(ns, firewall.TableName, firewall.SetForwarded); err != nil {
			fail("forwarded ports", err)
		} else {
			pf.Open = append([]uint16{}, open...)
		}
	}
	if n.Tunnel.Present {
		dev, err := kstate.ReadWireGuard(ns, p.WireGuard.Interface)
		if err != nil {
			fail("tunnel", err)
		}
		c.peers(n, p, dev)
	}
	return ok
}

func (c Collector) peers(n *Namespace, p *plan.Namespace, dev *kstate.WireGuard) {
	byKey := map[string]kstate.WGPeer{}
	if dev != nil {
		n.Tunnel.ListenPort, n.Tunnel.PublicKey = dev.ListenPort, dev.PublicKey
		for _, dp := range dev.Peers {
			byKey[dp.PublicKey] = dp
		}
	}
	for _, pp := range p.WireGuard.Peers {
		peer := Peer{PublicKey: pp.PublicKey, AllowedIPs: pp.AllowedIPs, Keepalive: pp.PersistentKeepalive}
		if pp.Endpoint != nil {
			peer.ConfiguredEndpoint = netJoin(pp.Endpoint.Host, pp.Endpoint.Port)
			for _, f := range pp.Failover {
				peer.Failover = append(peer.Failover, netJoin(f.Host, f.Port))
			}
		}
		if dp, ok := byKey[pp.PublicKey]; ok {
			peer.OnDevice = true
			peer.Endpoint, peer.RxBytes, peer.TxBytes, peer.AllowedIPs = dp.Endpoint, dp.RxBytes, dp.TxBytes, dp.AllowedIPs
			if !dp.LastHandshake.IsZero() {
				hs := dp.LastHandshake
				age := int64(c.Now.Sub(hs) / time.Second)
				peer.LatestHandshake, peer.HandshakeAge = &hs, &age
			}
		}
		n.Tunnel.Peers = append(n.Tunnel.Peers, peer)
	}
}

func netJoin(host string, port uint16) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

func nameservers(s string) []string {
	out := []string{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

// notCompiled lists namespace files that have no plan, with the reason.
func (c Collector) notCompiled(plans []paths.PlanFile, res *generator.Output, err error) []NotCompiled {
	out := []NotCompiled{}
	have := map[string]bool{}
	for _, pf := range plans {
		have[pf.Name] = true
	}
	if err != nil {
		return append(out, NotCompiled{File: c.Paths.ConfigDir, Reason: err.Error()})
	}
	for _, r := range res.Results {
		if have[r.Name] {
			continue
		}
		nc := NotCompiled{File: r.File, Namespace: r.Name}
		if r.Plan == nil {
			nc.Reason = fmt.Sprintf("invalid (%d errors), its units are blocked; see: vpn-confinement validate %s", len(r.Diags.Errors()), r.File)
		} else {
			nc.Reason = "valid but not compiled yet: run systemctl daemon-reload"
		}
		out = append(out, nc)
	}
	return out
}
