//go:build linux

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// This file changes a running tunnel in place: endpoint failover and
// re-resolution for the stall watchdog, keepalive probing, and live reload
// of a new plan. Every change keeps the order that never opens a path: the
// pin set first allows the new endpoint (and drops the old one in the same
// transaction), then the device moves.

// Candidates returns the endpoints of peer i in order (endpoint, then
// failover), or nil.
func Candidates(p plan.Peer) []plan.Endpoint {
	if p.Endpoint == nil {
		return nil
	}
	return append([]plan.Endpoint{*p.Endpoint}, p.Failover...)
}

// Plan is the plan the device currently runs.
func (d *Device) Plan() *plan.Namespace {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// ActiveEndpoint returns which of peer i's endpoints is in use and its
// resolved address (invalid when it did not resolve).
func (d *Device) ActiveEndpoint(i int) (int, netip.AddrPort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i >= len(d.epIndex) {
		return 0, netip.AddrPort{}
	}
	return d.epIndex[i], d.endpoints[i]
}

// SwitchEndpoint resolves endpoint idx of peer i (in the birthplace) and
// moves the peer there. The pin set is updated first, in one transaction
// that also removes the old endpoint, so after a failover no packet can go
// to the dead endpoint. Switching to the endpoint in use re-applies it,
// which also makes the peer start a fresh handshake.
func (d *Device) SwitchEndpoint(ctx context.Context, i, idx int) (netip.AddrPort, error) {
	n := d.Plan()
	if i < 0 || i >= len(n.WireGuard.Peers) {
		return netip.AddrPort{}, fmt.Errorf("no peer %d", i)
	}
	cands := Candidates(n.WireGuard.Peers[i])
	if idx < 0 || idx >= len(cands) {
		return netip.AddrPort{}, fmt.Errorf("peer %d has no endpoint %d", i, idx)
	}
	ap, err := ResolveEndpoint(ctx, d.opts.Resolver, cands[idx])
	if err != nil {
		return netip.AddrPort{}, err
	}
	next := d.Endpoints()
	next[i] = ap
	if err := d.updatePins(next); err != nil {
		return netip.AddrPort{}, fmt.Errorf("update the pin set for %s: %w", ap, err)
	}
	if err := d.resetPeer(n, i, ap); err != nil {
		d.updatePins(d.Endpoints()) // back to the set that matches the device
		return netip.AddrPort{}, fmt.Errorf("move peer %d to %s: %w", i, ap, err)
	}
	d.mu.Lock()
	d.endpoints[i], d.epIndex[i] = ap, idx
	d.mu.Unlock()
	return ap, nil
}

// resetPeer re-creates peer i with endpoint ap: its session is dropped, so
// the next packet starts a handshake, and only an answer from the new
// endpoint proves it works (with the old session still valid, data would
// flow to the new endpoint without any handshake, and a dead endpoint
// could not be told from an idle one).
func (d *Device) resetPeer(n *plan.Namespace, i int, ap netip.AddrPort) error {
	keys, err := LoadKeys(n, d.log)
	if err != nil {
		return err
	}
	defer keys.Clear()
	eps := d.Endpoints()
	eps[i] = ap
	full, err := BuildConfig(&n.WireGuard, keys, eps)
	if err != nil {
		return err
	}
	defer clearConfig(&full)
	if err := d.configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: d.pubs[i], Remove: true}}}); err != nil {
		return err
	}
	return d.configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{full.Peers[i]}})
}

// SetKeepalive sets peer i's persistent keepalive. While the tunnel is
// down the supervisor probes with a short one: WireGuard only tries to
// handshake while it has something to send, and stopped or idle services
// send nothing. A change from 0 sends a keepalive at once.
func (d *Device) SetKeepalive(i int, interval time.Duration) error {
	d.mu.Lock()
	pub := d.pubs[i]
	d.mu.Unlock()
	return d.configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: pub, UpdateOnly: true, PersistentKeepaliveInterval: &interval}}})
}

// PeerStats is one peer's counters.
type PeerStats struct {
	LastHandshake   time.Time
	RxBytes         int64
	TxBytes         int64
	Endpoint        netip.AddrPort
	KeepaliveActual time.Duration
}

// PeerStats reads every peer's counters, parallel to the plan's peers.
func (d *Device) PeerStats() ([]PeerStats, error) {
	c, err := d.client()
	if err != nil {
		return nil, err
	}
	dev, err := c.Device(d.n.WireGuard.Interface)
	if err != nil {
		return nil, fmt.Errorf("read device %s: %w", d.n.WireGuard.Interface, err)
	}
	d.mu.Lock()
	pubs := slices.Clone(d.pubs)
	d.mu.Unlock()
	out := make([]PeerStats, len(pubs))
	for _, p := range dev.Peers {
		for i, pub := range pubs {
			if p.PublicKey != pub {
				continue
			}
			ps := PeerStats{LastHandshake: p.LastHandshakeTime, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes, KeepaliveActual: p.PersistentKeepaliveInterval}
			if p.Endpoint != nil {
				ep := p.Endpoint.AddrPort()
				ps.Endpoint = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
			}
			out[i] = ps
		}
	}
	return out, nil
}

// ResolvePending retries peers whose endpoint did not resolve at start.
// It returns how many are still unresolved.
func (d *Device) ResolvePending(ctx context.Context) (int, error) {
	n := d.Plan()
	pending := 0
	var errs []error
	for i, p := range n.WireGuard.Peers {
		if p.Endpoint == nil {
			continue
		}
		idx, ap := d.ActiveEndpoint(i)
		if ap.IsValid() {
			continue
		}
		if _, err := d.SwitchEndpoint(ctx, i, idx); err != nil {
			pending++
			errs = append(errs, fmt.Errorf("peer %d: %w", i, err))
			continue
		}
	}
	return pending, errors.Join(errs...)
}

// ErrNotLive is wrapped by Reconfigure when the new plan differs in a way
// only a restart of the namespace or tunnel can apply.
var ErrNotLive = errors.New("not a live change")

// Reconfigure applies plan next to the running tunnel without taking it
// down: keys, peers (added, removed, or updated in place so their session
// survives when only allowed IPs or keepalive change), endpoints (pins
// first), listen port, MTU, addresses and routes. What cannot change live
// (plan.LiveDiff) is refused before anything changes.
func (d *Device) Reconfigure(ctx context.Context, next *plan.Namespace) error {
	cur := d.Plan()
	if diffs := plan.LiveDiff(cur, next); len(diffs) > 0 {
		return fmt.Errorf("%w: %s", ErrNotLive, plan.DescribeDiffs(diffs))
	}
	keys, err := LoadKeys(next, d.log)
	if err != nil {
		return err
	}
	defer keys.Clear()
	pubs := make([]wgtypes.Key, len(next.WireGuard.Peers))
	for i, p := range next.WireGuard.Peers {
		if pubs[i], err = wgtypes.ParseKey(p.PublicKey); err != nil {
			return fmt.Errorf("peer %d public key: %w", i, err)
		}
	}
	// Endpoints: keep a peer's current one when it is still a candidate.
	eps := make([]netip.AddrPort, len(next.WireGuard.Peers))
	idx := make([]int, len(next.WireGuard.Peers))
	old := map[wgtypes.Key]int{}
	for i, pub := range d.pubs {
		old[pub] = i
	}
	// Peers that stay but move to another endpoint are re-created: their
	// session is dropped, so only a handshake with the new endpoint makes
	// them usable (as for a failover). Updated in place, the old session
	// would carry on towards the new address and the watchdog could not
	// tell a working endpoint from a dead one.
	var moved []wgtypes.PeerConfig
	for i, p := range next.WireGuard.Peers {
		cands := Candidates(p)
		if j, ok := old[pubs[i]]; ok {
			ci, cap := d.ActiveEndpoint(j)
			if ci < len(Candidates(cur.WireGuard.Peers[j])) {
				was := Candidates(cur.WireGuard.Peers[j])[ci]
				if k := slices.Index(cands, was); k >= 0 {
					eps[i], idx[i] = cap, k
					continue
				}
			}
			moved = append(moved, wgtypes.PeerConfig{PublicKey: pubs[i], Remove: true})
		}
		if len(cands) == 0 {
			continue
		}
		ap, err := ResolveEndpoint(ctx, d.opts.Resolver, cands[0])
		if err != nil {
			d.log.Warnf("reload: peer %d: %v (no endpoint until it resolves)", i, err)
			continue
		}
		eps[i] = ap
	}
	// The pin set first: it must allow every new endpoint before the
	// device sends to it (and drops the old ones in the same transaction).
	// Pinning itself is the same in both plans (LiveDiff).
	if err := d.updatePins(eps); err != nil {
		return fmt.Errorf("update the pin set: %w", err)
	}
	cfg, err := BuildConfig(&next.WireGuard, keys, eps)
	if err != nil {
		return err
	}
	// Replace the peer list, but as updates of the peers that stay (a
	// peer reconfigured with the same key keeps its session).
	cfg.ReplacePeers = false
	keep := map[wgtypes.Key]bool{}
	for _, pub := range pubs {
		keep[pub] = true
	}
	for _, pub := range d.pubs {
		if !keep[pub] {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: pub, Remove: true})
		}
	}
	if len(moved) > 0 {
		err = d.configure(wgtypes.Config{Peers: moved})
	}
	if err == nil {
		err = d.configure(cfg)
	}
	clearConfig(&cfg)
	if err != nil {
		d.updatePins(d.Endpoints())
		return err
	}
	d.mu.Lock()
	d.n, d.pubs, d.endpoints, d.epIndex = next, pubs, eps, idx
	d.mu.Unlock()
	if err := d.reconcileLink(cur, next); err != nil {
		return err
	}
	d.log.Infof("tunnel %s reconfigured live from %s", next.WireGuard.Interface, next.Source)
	return nil
}

func clearConfig(cfg *wgtypes.Config) {
	if cfg.PrivateKey != nil {
		clear(cfg.PrivateKey[:])
	}
	for _, p := range cfg.Peers {
		if p.PresharedKey != nil {
			clear(p.PresharedKey[:])
		}
	}
}

// reconcileLink brings MTU, addresses and routes of the link from cur to
// next: new ones are added before old ones are removed.
func (d *Device) reconcileLink(cur, next *plan.Namespace) error {
	l, err := d.link()
	if err != nil {
		return err
	}
	if MTU(&cur.WireGuard) != MTU(&next.WireGuard) {
		if err := d.nl.LinkSetMTU(l, MTU(&next.WireGuard)); err != nil {
			return fmt.Errorf("set MTU: %w", err)
		}
		if t, ok := d.tunDevice(); ok {
			t.mtu.Store(int32(MTU(&next.WireGuard)))
		}
	}
	if err := d.configureLink(); err != nil {
		return err
	}
	if err := d.addRoutes(); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for _, a := range Addresses(next) {
		want[a] = true
	}
	for _, a := range Addresses(cur) {
		if !want[a] {
			ipn := ipNet(a)
			if err := d.nl.AddrDel(l, &netlink.Addr{IPNet: &ipn}); err != nil {
				return fmt.Errorf("remove address %s: %w", a, err)
			}
		}
	}
	wantR := map[netip.Prefix]bool{}
	for _, r := range Routes(next) {
		wantR[r] = true
	}
	for _, r := range Routes(cur) {
		if !wantR[r] {
			dst := ipNet(r)
			rt := &netlink.Route{LinkIndex: d.linkIndex, Dst: &dst}
			if r.Addr().Is4() {
				rt.Scope = netlink.SCOPE_LINK // as addRoutes made it
			}
			if err := d.nl.RouteDel(rt); err != nil {
				return fmt.Errorf("remove route %s: %w", r, err)
			}
		}
	}
	return nil
}

// LinkIndex is the tunnel link's index in the namespace.
func (d *Device) LinkIndex() int { return d.linkIndex }

// Wait is closed when the embedded userspace device stops; nil (never)
// for kernel links.
func (d *Device) Wait() <-chan struct{} {
	if d.dev == nil {
		return nil
	}
	return d.dev.Wait()
}

// Check verifies that the link still exists with our index and name.
func (d *Device) Check() error {
	l, err := d.nl.LinkByIndex(d.linkIndex)
	if err != nil || l.Attrs().Name != d.n.WireGuard.Interface {
		return fmt.Errorf("link %s is no longer in namespace %s", d.n.WireGuard.Interface, d.n.Name)
	}
	return nil
}

// RefreshHostname re-resolves peer i's current hostname endpoint and moves
// the peer (pins first) when its address changed. On failure the old
// endpoint stays: a stale endpoint blackholes traffic, it never opens
// another path.
func (d *Device) RefreshHostname(ctx context.Context, i int) (bool, error) {
	n := d.Plan()
	idx, old := d.ActiveEndpoint(i)
	cands := Candidates(n.WireGuard.Peers[i])
	if idx >= len(cands) || !cands[idx].IsHostname() {
		return false, nil
	}
	ap, err := ResolveEndpoint(ctx, d.opts.Resolver, cands[idx])
	if err != nil {
		return false, err
	}
	if ap == old {
		return false, nil
	}
	if _, err := d.SwitchEndpoint(ctx, i, idx); err != nil {
		return false, err
	}
	d.log.Infof("peer %d: endpoint %s moved from %s to %s", i, cands[idx].Host, old, ap)
	return true, nil
}
