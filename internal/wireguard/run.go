//go:build linux

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Intervals of the run loop. Variables so tests can speed them up.
var (
	// CheckInterval backs up the link subscription: the link, the userspace
	// device and the namespace pin are checked this often.
	CheckInterval = 2 * time.Second
	// StatusInterval is how often STATUS= is sent to systemd.
	StatusInterval = 15 * time.Second
)

// staleHandshake is WireGuard's reject-after time: a session older than
// this carries no traffic, so the tunnel is effectively down.
const staleHandshake = 180 * time.Second

// ErrTunnelGone is returned by Run when the tunnel disappeared underneath
// us; the helper then exits non-zero, systemd marks vpn-wg@ failed and
// BindsTo= stops the confined services.
var ErrTunnelGone = errors.New("tunnel gone")

// Run tells systemd the tunnel is ready, then watches it until ctx ends
// (nil: the caller closes the device and exits 0) or the tunnel fails
// (an error wrapping ErrTunnelGone). Hostname endpoints are re-resolved
// here, in the birthplace.
func (d *Device) Run(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 32)
	done := make(chan struct{})
	defer close(done)
	subErr := make(chan error, 1)
	ns := vnetns.NsHandle(d.target.Fd())
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &ns,
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		// The periodic check still catches a vanished link, only later.
		d.log.Warnf("cannot subscribe to link events in namespace %s: %v", d.n.Name, err)
		updates = nil
	}
	// The pin was recorded by Create: deciding here would miss a pin
	// deleted between Create and Run, and then never watch it.
	pinIno := d.pinIno
	// A link deleted between Create and the subscription sent no event.
	if err := d.check(pinIno); err != nil {
		return err
	}
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		d.log.Warnf("notify systemd: %v", err)
	}
	d.sendStatus()

	var devDone <-chan struct{}
	if d.dev != nil {
		devDone = d.dev.Wait()
	}
	check := time.NewTicker(CheckInterval)
	defer check.Stop()
	status := time.NewTicker(StatusInterval)
	defer status.Stop()
	refresh := newRefresher(d.n.WireGuard.Peers, time.Now())
	timer := time.NewTimer(refresh.wait(time.Now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			return nil
		case u, ok := <-updates:
			if !ok {
				d.log.Warnf("link event subscription in namespace %s ended; relying on periodic checks", d.n.Name)
				updates = nil
				continue
			}
			if int(u.Index) == d.linkIndex && u.Header.Type == unix.RTM_DELLINK {
				return fmt.Errorf("%w: link %s was deleted from namespace %s", ErrTunnelGone, d.n.WireGuard.Interface, d.n.Name)
			}
		case err := <-subErr:
			d.log.Warnf("link event subscription in namespace %s: %v", d.n.Name, err)
		case <-devDone:
			return fmt.Errorf("%w: the userspace WireGuard device of %s stopped", ErrTunnelGone, d.n.WireGuard.Interface)
		case <-check.C:
			if err := d.check(pinIno); err != nil {
				return err
			}
		case <-status.C:
			d.sendStatus()
		case now := <-timer.C:
			for _, i := range refresh.due(now) {
				d.refreshPeer(ctx, i)
			}
			timer.Reset(refresh.wait(time.Now()))
		}
	}
}

// pinnedInode is the inode of our namespace if /run/netns/NAME pins it
// (always, under systemd), else 0: the pin is then not watched.
func (d *Device) pinnedInode() uint64 {
	ino, err := d.target.Inode()
	if err != nil {
		return 0
	}
	pin, err := netns.Open(plan.NetnsPath(d.n.Name))
	if err != nil {
		return 0
	}
	defer pin.Close()
	if p, err := pin.Inode(); err != nil || p != ino {
		return 0
	}
	return ino
}

// check verifies that the link still exists with our index and name, and
// that /run/netns/NAME still pins the namespace we serve: after an
// `ip netns delete` our references keep it alive, but nothing new (no
// service) can join it, so the tunnel has no purpose any more.
func (d *Device) check(pinIno uint64) error {
	l, err := d.nl.LinkByIndex(d.linkIndex)
	if err != nil || l.Attrs().Name != d.n.WireGuard.Interface {
		return fmt.Errorf("%w: link %s is no longer in namespace %s", ErrTunnelGone, d.n.WireGuard.Interface, d.n.Name)
	}
	if pinIno != 0 {
		pin, err := netns.Open(plan.NetnsPath(d.n.Name))
		if err != nil {
			return fmt.Errorf("%w: namespace %s is no longer pinned: %v", ErrTunnelGone, d.n.Name, err)
		}
		ino, err := pin.Inode()
		pin.Close()
		if err == nil && ino != pinIno {
			return fmt.Errorf("%w: %s now pins another namespace", ErrTunnelGone, plan.NetnsPath(d.n.Name))
		}
	}
	return nil
}

// StatusLine renders s for systemctl status; no secrets, no keys.
func StatusLine(s Stats, now time.Time) string {
	hs := "no handshake yet"
	if !s.LastHandshake.IsZero() {
		age := now.Sub(s.LastHandshake).Round(time.Second)
		hs = fmt.Sprintf("handshake %s ago", age)
		if age > staleHandshake {
			hs = fmt.Sprintf("no handshake for %s (tunnel stalled)", age)
		}
	}
	return fmt.Sprintf("%s, rx %s, tx %s", hs, bytesText(s.RxBytes), bytesText(s.TxBytes))
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (d *Device) sendStatus() {
	s, err := d.Stats()
	if err != nil {
		d.log.Debugf("read status: %v", err)
		return
	}
	now := time.Now()
	line := StatusLine(s, now)
	d.log.Debugf("status: %s", line)
	// Log transitions only: a stalled tunnel blackholes traffic (fail
	// closed) and is worth one journal line, not one every interval.
	stalled := !s.LastHandshake.IsZero() && now.Sub(s.LastHandshake) > staleHandshake
	if stalled != d.stalled {
		if stalled {
			d.log.Warnf("tunnel %s: %s", d.n.WireGuard.Interface, line)
		} else {
			d.log.Infof("tunnel %s recovered: %s", d.n.WireGuard.Interface, line)
		}
		d.stalled = stalled
	}
	daemon.SdNotify(false, "STATUS="+line)
}

// refreshPeer re-resolves peer i's hostname and moves the peer (and the
// pin set) when the address changed. On any failure the old endpoint stays:
// a stale endpoint blackholes traffic, it never opens another path.
func (d *Device) refreshPeer(ctx context.Context, i int) {
	p := d.n.WireGuard.Peers[i]
	ap, err := ResolveEndpoint(ctx, d.opts.Resolver, *p.Endpoint)
	if err != nil {
		d.log.Warnf("peer %d: %v (keeping the current endpoint)", i, err)
		return
	}
	d.mu.Lock()
	old := d.endpoints[i]
	d.mu.Unlock()
	if ap == old {
		return
	}
	next := d.Endpoints()
	next[i] = ap
	// Pins first: the new endpoint must be allowed before the device
	// sends to it; the old one is dropped in the same transaction.
	if err := d.updatePins(next); err != nil {
		d.log.Errorf("peer %d: endpoint %s moved to %s but the pin set could not be updated: %v (keeping %s)", i, p.Endpoint.Host, ap, err, old)
		return
	}
	if err := d.configure(EndpointUpdate(d.pubs[i], ap)); err != nil {
		d.log.Errorf("peer %d: update endpoint to %s: %v", i, ap, err)
		d.updatePins(d.Endpoints()) // restore the set that matches the device
		return
	}
	d.mu.Lock()
	d.endpoints[i] = ap
	d.mu.Unlock()
	d.log.Infof("peer %d: endpoint %s moved from %s to %s", i, p.Endpoint.Host, old, ap)
}

// refresher schedules hostname re-resolution per peer.
type refresher struct {
	every []time.Duration
	next  []time.Time
}

func newRefresher(peers []plan.Peer, now time.Time) *refresher {
	r := &refresher{every: make([]time.Duration, len(peers)), next: make([]time.Time, len(peers))}
	for i := range peers {
		r.every[i] = refreshInterval(peers, i)
		r.next[i] = now.Add(r.every[i])
	}
	return r
}

// wait is the time until the next refresh (a long time when none is due).
func (r *refresher) wait(now time.Time) time.Duration {
	w := time.Duration(1<<62 - 1)
	for i, e := range r.every {
		if e > 0 {
			w = min(w, max(r.next[i].Sub(now), 0))
		}
	}
	return w
}

// due returns the peers to refresh now and schedules their next refresh.
func (r *refresher) due(now time.Time) []int {
	var out []int
	for i, e := range r.every {
		if e > 0 && !now.Before(r.next[i]) {
			out = append(out, i)
			r.next[i] = now.Add(e)
		}
	}
	return out
}

// RunHelper is `vpn-confinement-wireguard run`: bring the tunnel of n up
// in /run/netns/NAME, serve until ctx ends (SIGTERM), tear it down. An error
// means the unit must be marked failed.
func RunHelper(ctx context.Context, n *plan.Namespace, log *journal.Logger) error {
	target, err := netns.Open(plan.NetnsPath(n.Name))
	if err != nil {
		return fmt.Errorf("open namespace: %w (is vpn-ns@%s running?)", err, n.Name)
	}
	defer target.Close()
	d, err := Create(ctx, n, target, log)
	if err != nil {
		return err
	}
	runErr := d.Run(ctx)
	closeErr := d.Close()
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return closeErr
	}
	log.Infof("tunnel %s of namespace %s stopped", n.WireGuard.Interface, n.Name)
	return nil
}

// Down removes what a tunnel of n may have left: the link in
// /run/netns/NAME, but only if it has the configured name and is a
// WireGuard or TUN link (a user's link of another kind is never touched),
// and a stale UAPI socket. It succeeds when there is nothing to remove.
func Down(n *plan.Namespace, log *journal.Logger) error {
	iface := n.WireGuard.Interface
	var errs []error
	if path := plan.NetnsPath(n.Name); netns.IsPinned(path) {
		if err := deleteLink(path, iface, log); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeStaleSocket(UAPISocket(iface)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func deleteLink(path, iface string, log *journal.Logger) error {
	ns, err := netns.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", path, err)
	}
	defer h.Close()
	l, err := h.LinkByName(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", iface, err)
	}
	if !ownLink(l) {
		log.Warnf("not deleting %s in %s: it is a %s link, not WireGuard or TUN", iface, path, l.Type())
		return nil
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", iface, err)
	}
	log.Infof("deleted link %s in %s", iface, path)
	return nil
}

// ownLink: only the kinds a tunnel of ours creates.
func ownLink(l netlink.Link) bool {
	switch t := l.(type) {
	case *netlink.Wireguard:
		return true
	case *netlink.Tuntap:
		return t.Mode == netlink.TUNTAP_MODE_TUN
	}
	return l.Type() == "wireguard"
}

// removeStaleSocket removes a UAPI socket nobody listens on. A live one may
// belong to a running device (ours still stopping, or another namespace's
// device of the same name) and is left alone.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket; not removing it", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	unix.Close(fd)
	if err == nil {
		return nil // live
	}
	if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
