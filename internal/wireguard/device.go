//go:build linux

// Package wireguard brings up the tunnel of one confinement namespace: the
// WireGuard interface lives inside /run/netns/NAME while its encrypted UDP
// socket is opened in the helper's own namespace (the socket birthplace:
// the host, or wireguard.socketNamespace, where systemd placed the helper).
//
// Kernel WireGuard is created from the birthplace with the target namespace
// in the same request (no move, so no rcu_barrier wait and the socket stays
// outside). Without the module an embedded wireguard-go device is used: its
// TUN is born inside the target from a thread in it, its UDP bind is opened
// by the process (birthplace), and the device lives as long as this process.
//
// Key material is read at run time only and is never printed (Secret).
package wireguard

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// UAPIDir is where wireguard-go listens (ipc's socket directory); wg(8)
// and wgctrl find userspace devices there.
const UAPIDir = "/var/run/wireguard"

// UAPISocket is the UAPI socket path of a userspace interface.
func UAPISocket(iface string) string { return UAPIDir + "/" + iface + ".sock" }

// Options are the injectable parts of Create.
type Options struct {
	// Resolver resolves hostname endpoints; nil means net.DefaultResolver.
	Resolver Resolver
	// UpdatePins replaces the endpoint set of the pin table in the
	// birthplace. nil means firewall.UpdatePinEndpoints in the process's
	// own namespace. Only used when pinning is on.
	UpdatePins func(table string, endpoints []netip.AddrPort) error

	// AllowUnresolved brings the tunnel up even when a hostname endpoint
	// cannot be resolved yet (boot before the uplink, a dead resolver):
	// that peer has no endpoint, its traffic goes nowhere (fail closed),
	// and the supervisor retries with ResolvePending. Without it Create
	// fails, as a tunnel that only looks ready would.
	AllowUnresolved bool

	// failAt makes Create fail right after the named step (tests).
	failAt string
}

// Device is a tunnel that is up.
type Device struct {
	lastStep time.Time // for step timing
	// devUp and pendingPeers: the userspace device gets its peers only
	// after it is up (see bringUpUserspace).
	devUp        bool
	pendingPeers string
	// pinIno is the inode of target if /run/netns/NAME pinned it at
	// creation (always, under systemd); Run then treats a removed or
	// replaced pin as the end of the tunnel. 0: not watched.
	pinIno  uint64
	n       *plan.Namespace
	log     *journal.Logger
	opts    Options
	target  *netns.NetNS
	backend string

	nl        *netlink.Handle // bound to target
	wgc       *wgctrl.Client  // genetlink socket opened inside target
	linkIndex int
	created   bool // a kernel link we created (and must delete)

	// userspace backend
	dev   *device.Device
	uapi  net.Listener
	nstun *nsTUN

	mu        sync.Mutex
	endpoints []netip.AddrPort // parallel to n.WireGuard.Peers (invalid: none yet)
	epIndex   []int            // which of the peer's endpoints is in use (0: Endpoint, k: Failover[k-1])
	pubs      []wgtypes.Key

	stalled bool // last status saw no handshake for staleHandshake

	closeOnce sync.Once
	closeErr  error
}

// Backend is the backend in use: plan.BackendKernel or plan.BackendUserspace.
func (d *Device) Backend() string { return d.backend }

// Endpoints returns the current peer endpoints (parallel to the plan's peers).
func (d *Device) Endpoints() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]netip.AddrPort(nil), d.endpoints...)
}

// Create brings the tunnel of n up inside target with default options.
func Create(ctx context.Context, n *plan.Namespace, target *netns.NetNS, log *journal.Logger) (*Device, error) {
	return CreateWithOptions(ctx, n, target, log, Options{})
}

// CreateWithOptions brings the tunnel up: keys, endpoints (resolved here,
// in the birthplace), pin set, link, peers and key, device up, MTU and
// addresses, link up, routes — in that order, so the link never carries a
// packet before it has its peers. On error everything created is removed.
// target stays owned by the caller and must outlive the Device.
func CreateWithOptions(ctx context.Context, n *plan.Namespace, target *netns.NetNS, log *journal.Logger, opts Options) (_ *Device, err error) {
	start := time.Now()
	wg := &n.WireGuard
	d := &Device{n: n, log: log, opts: opts, target: target, lastStep: start}
	d.pinIno = d.pinnedInode()
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	keys, err := LoadKeys(n, log)
	if err := d.step("keys", err); err != nil {
		return nil, err
	}
	for i, p := range wg.Peers {
		pub, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("parse public key of peer %d: %w", i, err)
		}
		d.pubs = append(d.pubs, pub)
	}
	d.epIndex = make([]int, len(wg.Peers))
	d.endpoints, err = ResolveEndpoints(ctx, opts.Resolver, wg.Peers)
	if err != nil && opts.AllowUnresolved {
		log.Warnf("tunnel %s: %v; coming up without that endpoint (no traffic leaves until it resolves)", wg.Interface, err)
		err = nil
	}
	if err := d.step("resolve", err); err != nil {
		return nil, err
	}
	if wg.Pinning != nil {
		// The pin helper resolved hostnames on its own; a round-robin name
		// may have given it another address. Pin exactly what we use.
		err = d.updatePins(d.endpoints)
		if err := d.step("pin", err); err != nil {
			return nil, err
		}
	}
	cfg, err := BuildConfig(wg, keys, d.endpoints)
	if err != nil {
		return nil, err
	}
	d.nl, err = netlink.NewHandleAt(vnetns.NsHandle(target.Fd()))
	if err := d.step("netlink", err); err != nil {
		return nil, fmt.Errorf("open netlink in namespace %s: %w", n.Name, err)
	}
	err = d.createLink()
	if err := d.step("link", err); err != nil {
		return nil, err
	}
	err = d.configure(cfg)
	clear(cfg.PrivateKey[:])
	for _, p := range cfg.Peers {
		if p.PresharedKey != nil {
			clear(p.PresharedKey[:])
		}
	}
	if err := d.step("configure", err); err != nil {
		return nil, err
	}
	if d.dev != nil {
		// Explicitly: wireguard-go's up detection is unreliable across
		// namespaces on this kernel (see perf-limit.md). Up() opens the
		// UDP bind on this goroutine's thread: the birthplace.
		err = d.bringUpUserspace()
		if err := d.step("device-up", err); err != nil {
			return nil, fmt.Errorf("bring userspace device up: %w", err)
		}
	}
	err = d.configureLink()
	if err := d.step("addresses", err); err != nil {
		return nil, err
	}
	err = d.setUp()
	if err := d.step("link-up", err); err != nil {
		return nil, err
	}
	err = d.addRoutes()
	if err := d.step("routes", err); err != nil {
		return nil, err
	}
	log.Infof("tunnel %s up in namespace %s (backend %s, %s)", wg.Interface, n.Name, d.backend, time.Since(start).Round(10*time.Microsecond))
	return d, nil
}

// step passes err through and, in tests, injects a failure after a step.
func (d *Device) step(name string, err error) error {
	// Per-step timing at debug level (-v): bring-up speed is a feature.
	now := time.Now()
	if !d.lastStep.IsZero() {
		d.log.Debugf("tunnel step %s: %s", name, now.Sub(d.lastStep).Round(time.Microsecond))
	}
	d.lastStep = now
	if err == nil && d.opts.failAt == name {
		return fmt.Errorf("injected failure after step %s", name)
	}
	return err
}

func (d *Device) updatePins(eps []netip.AddrPort) error {
	p := d.n.WireGuard.Pinning
	if p == nil {
		return nil
	}
	if d.opts.UpdatePins != nil {
		return d.opts.UpdatePins(p.Table, PinSet(eps))
	}
	return updatePinsHere(p.Table, PinSet(eps))
}

// isNotSupported reports the kernel's answer when the wireguard module is
// missing ("operation not supported"; iproute2 prints "Unknown device type").
func isNotSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || strings.Contains(err.Error(), "operation not supported")
}

func (d *Device) createLink() error {
	wg := &d.n.WireGuard
	switch wg.Backend {
	case plan.BackendKernel:
		return d.createKernel()
	case plan.BackendUserspace:
		return d.createUserspace()
	case plan.BackendAuto, "":
		err := d.createKernel()
		if err == nil || !isNotSupported(err) {
			return err
		}
		d.log.Infof("kernel WireGuard is not available (%v); using the embedded wireguard-go", err)
		return d.createUserspace()
	}
	return fmt.Errorf("create link: unknown backend %q", wg.Backend)
}

// createKernel asks the kernel from this (birthplace) namespace for a link
// inside target: the device's UDP socket belongs to the namespace the
// request came from, and no move (rcu_barrier) is needed.
func (d *Device) createKernel() error {
	wg := &d.n.WireGuard
	link := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{
		Name:      wg.Interface,
		MTU:       MTU(wg),
		Namespace: netlink.NsFd(d.target.Fd()),
	}}
	if err := netlink.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create WireGuard link %s: a link of that name already exists in namespace %s (stale? run the helper's down command)", wg.Interface, d.n.Name)
		}
		return fmt.Errorf("create WireGuard link %s: %w", wg.Interface, err)
	}
	d.created = true
	d.backend = plan.BackendKernel
	l, err := d.nl.LinkByName(wg.Interface)
	if err != nil {
		return fmt.Errorf("find new link %s: %w", wg.Interface, err)
	}
	d.linkIndex = l.Attrs().Index
	return nil
}

// createUserspace starts an embedded wireguard-go device.
func (d *Device) createUserspace() error {
	wg := &d.n.WireGuard
	// The UAPI socket first, outside the target: its path is global and a
	// live socket of the same name makes UAPIOpen fail ("in use"), which
	// stops us before we touch the namespace.
	f, err := ipc.UAPIOpen(wg.Interface)
	if err != nil {
		return fmt.Errorf("open UAPI socket %s: %w", UAPISocket(wg.Interface), err)
	}
	defer f.Close()
	mtu := MTU(wg)
	var t tun.Device
	err = d.target.Do(func() error {
		// Born inside the target: no move, and the TUN's netlink listener
		// watches the target namespace.
		var err error
		t, err = tun.CreateTUN(wg.Interface, mtu)
		return err
	})
	if err != nil {
		os.Remove(UAPISocket(wg.Interface))
		return fmt.Errorf("create TUN %s in namespace %s: %w", wg.Interface, d.n.Name, err)
	}
	nt := &nsTUN{Device: t}
	nt.mtu.Store(int32(mtu))
	d.nstun = nt
	d.dev = device.NewDevice(nt, conn.NewDefaultBind(), d.deviceLogger())
	d.backend = plan.BackendUserspace
	l, err := d.nl.LinkByName(wg.Interface)
	if err != nil {
		os.Remove(UAPISocket(wg.Interface))
		return fmt.Errorf("find new link %s: %w", wg.Interface, err)
	}
	d.linkIndex = l.Attrs().Index
	d.uapi, err = ipc.UAPIListen(wg.Interface, f)
	if err != nil {
		os.Remove(UAPISocket(wg.Interface))
		return fmt.Errorf("listen on UAPI socket: %w", err)
	}
	go func(l net.Listener, dev *device.Device) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}(d.uapi, d.dev)
	return nil
}

// nsTUN answers MTU() from what we configured: wireguard-go looks the MTU
// up by interface name in the calling thread's namespace, where the TUN
// does not exist (or, worse, another link of the same name does).
type nsTUN struct {
	tun.Device
	mtu atomic.Int32
}

func (t *nsTUN) MTU() (int, error) { return int(t.mtu.Load()), nil }

func (d *Device) tunDevice() (*nsTUN, bool) { return d.nstun, d.nstun != nil }

func (d *Device) deviceLogger() *device.Logger {
	lim := &logLimit{every: 30 * time.Second, last: map[string]logSeen{}}
	return &device.Logger{
		Verbosef: func(format string, args ...any) { d.log.Debugf("wireguard-go: "+format, args...) },
		// Send failures (e.g. packets the pin table drops, an uplink that
		// is down) repeat with every packet; they are warnings about the
		// tunnel, not our errors, and each kind is logged at most every
		// 30 s so an outage does not flood the journal.
		Errorf: func(format string, args ...any) {
			if n, ok := lim.allow(format, time.Now()); ok {
				suffix := ""
				if n > 0 {
					suffix = fmt.Sprintf(" (and %d more like it in the last %s)", n, lim.every)
				}
				d.log.Warnf("wireguard-go: "+format+"%s", append(args, suffix)...)
			}
		},
	}
}

// logLimit lets one line per format through per interval and counts the
// rest.
type logLimit struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]logSeen
}

type logSeen struct {
	at         time.Time
	suppressed int
}

func (l *logLimit) allow(format string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.last[format]
	if ok && now.Sub(s.at) < l.every {
		s.suppressed++
		l.last[format] = s
		return 0, false
	}
	if len(l.last) > 64 {
		clear(l.last)
	}
	l.last[format] = logSeen{at: now}
	return s.suppressed, true
}

// configure applies cfg. The embedded (userspace) device is configured in
// process through its UAPI handler: going through wgctrl would first dial
// generic netlink (where the kernel's failed "wireguard" family lookup can
// even try to load a module) and then round-trip the UAPI socket, together
// several milliseconds of a ~5 ms bring-up. Kernel links use wgctrl.
func (d *Device) configure(cfg wgtypes.Config) error {
	if d.dev != nil {
		if !d.devUp {
			// Before the device is up: interface settings only; the peers
			// follow in bringUpUserspace once the bind carries the mark.
			iface, peers := cfg, cfg
			iface.Peers, iface.ReplacePeers = nil, false
			peers.PrivateKey, peers.ListenPort, peers.FirewallMark = nil, nil, nil
			d.pendingPeers = uapiConfig(peers)
			cfg = iface
		}
		if err := d.dev.IpcSet(uapiConfig(cfg)); err != nil {
			return fmt.Errorf("configure %s: %w", d.n.WireGuard.Interface, err)
		}
		return nil
	}
	c, err := d.client()
	if err != nil {
		return err
	}
	if err := c.ConfigureDevice(d.n.WireGuard.Interface, cfg); err != nil {
		return fmt.Errorf("configure %s: %w", d.n.WireGuard.Interface, err)
	}
	return nil
}

// client returns the wgctrl client, created on first use inside target: its
// generic-netlink socket then talks to the target namespace (kernel links);
// userspace devices are reached over the UAPI socket's path. Kept for
// status and endpoint updates.
func (d *Device) client() (*wgctrl.Client, error) {
	if d.wgc != nil {
		return d.wgc, nil
	}
	err := d.target.Do(func() error {
		c, err := wgctrl.New()
		if err != nil {
			return err
		}
		d.wgc = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open wgctrl in namespace %s: %w", d.n.Name, err)
	}
	return d.wgc, nil
}

// uapiConfig renders cfg in wireguard-go's UAPI "set" format (the text wg(8)
// sends over the UAPI socket). Keys are hex; the string is never logged.
func uapiConfig(cfg wgtypes.Config) string {
	var b strings.Builder
	if cfg.PrivateKey != nil {
		fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(&b, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.FirewallMark != nil {
		fmt.Fprintf(&b, "fwmark=%d\n", *cfg.FirewallMark)
	}
	if cfg.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
			continue
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(&b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a.String())
		}
	}
	return b.String()
}

// bringUpUserspace brings the embedded device up and only then adds the
// peers. wireguard-go may already have opened its bind on its own (its TUN
// up-detection fires right after NewDevice here), and a mark configured
// before that is never applied to the live socket; so the bind is reopened
// while there are no peers yet (no handshake can be lost in between), and
// pinning can rely on every outer packet carrying the mark.
func (d *Device) bringUpUserspace() error {
	if err := d.dev.Up(); err != nil {
		return err
	}
	d.devUp = true
	if FwMark(&d.n.WireGuard) != 0 {
		if err := d.dev.BindUpdate(); err != nil {
			return fmt.Errorf("reopen bind with fwmark: %w", err)
		}
	}
	peers := d.pendingPeers
	d.pendingPeers = ""
	if err := d.dev.IpcSet(peers); err != nil {
		return fmt.Errorf("configure peers of %s: %w", d.n.WireGuard.Interface, err)
	}
	return nil
}

func (d *Device) link() (netlink.Link, error) {
	l, err := d.nl.LinkByIndex(d.linkIndex)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", d.n.WireGuard.Interface, err)
	}
	return l, nil
}

func (d *Device) configureLink() error {
	l, err := d.link()
	if err != nil {
		return err
	}
	if err := d.nl.LinkSetMTU(l, MTU(&d.n.WireGuard)); err != nil {
		return fmt.Errorf("set MTU of %s: %w", d.n.WireGuard.Interface, err)
	}
	for _, a := range Addresses(d.n) {
		ipn := ipNet(a)
		if err := d.nl.AddrReplace(l, &netlink.Addr{IPNet: &ipn}); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a, d.n.WireGuard.Interface, err)
		}
	}
	for _, a := range d.n.WireGuard.Addresses {
		if a.Addr().Is6() && !d.n.IPv6 {
			d.log.Warnf("not configuring IPv6 address %s: IPv6 is disabled in namespace %s", a, d.n.Name)
		}
	}
	return nil
}

func (d *Device) setUp() error {
	l, err := d.link()
	if err != nil {
		return err
	}
	if err := d.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", d.n.WireGuard.Interface, err)
	}
	return nil
}

func (d *Device) addRoutes() error {
	for _, r := range Routes(d.n) {
		dst := ipNet(r)
		rt := &netlink.Route{LinkIndex: d.linkIndex, Dst: &dst}
		if r.Addr().Is4() {
			rt.Scope = netlink.SCOPE_LINK
		}
		if err := d.nl.RouteReplace(rt); err != nil {
			return fmt.Errorf("add route %s dev %s: %w", r, d.n.WireGuard.Interface, err)
		}
	}
	return nil
}

// Close tears the tunnel down: the userspace device closes its TUN (the
// link vanishes with it) and unlinks its UAPI socket; a kernel link we
// created is deleted. Safe to call more than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		if d.uapi != nil {
			d.uapi.Close() // unlinks the socket
		}
		if d.dev != nil {
			d.dev.Close()
		}
		if d.created && d.nl != nil {
			if l, err := d.nl.LinkByIndex(d.linkIndex); err == nil && l.Attrs().Name == d.n.WireGuard.Interface {
				if err := d.nl.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete link %s: %w", d.n.WireGuard.Interface, err))
				}
			}
		}
		if d.wgc != nil {
			d.wgc.Close()
		}
		if d.nl != nil {
			d.nl.Close()
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Stats is a secret-free summary of the tunnel for STATUS= and tests.
type Stats struct {
	LastHandshake time.Time // latest over all peers, zero if none yet
	ListenPort    int
	RxBytes       int64
	TxBytes       int64
	Endpoints     []netip.AddrPort // as the device reports them
}

// Stats reads the device state.
func (d *Device) Stats() (Stats, error) {
	c, err := d.client()
	if err != nil {
		return Stats{}, err
	}
	dev, err := c.Device(d.n.WireGuard.Interface)
	if err != nil {
		return Stats{}, fmt.Errorf("read device %s: %w", d.n.WireGuard.Interface, err)
	}
	s := Stats{ListenPort: dev.ListenPort}
	for _, p := range dev.Peers {
		if p.LastHandshakeTime.After(s.LastHandshake) {
			s.LastHandshake = p.LastHandshakeTime
		}
		s.RxBytes += p.ReceiveBytes
		s.TxBytes += p.TransmitBytes
		var ep netip.AddrPort
		if p.Endpoint != nil {
			ep = p.Endpoint.AddrPort()
			ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s, nil
}
