//go:build linux

package tunnel

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

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// Options are the injectable parts of the supervisor (tests shorten the
// intervals and fake the service manager).
type Options struct {
	// Units controls the confined units (onTunnelLoss stop/freeze); nil:
	// systemd over D-Bus.
	Units UnitControl
	// WireGuard are the device options (resolver, pin updates).
	WireGuard wireguard.Options
	// CheckInterval: how often the link, the device and the peers are
	// checked (the link subscription reacts at once in between).
	CheckInterval time.Duration
	// ProbeKeepalive is set on peers while the tunnel is not usable, so
	// handshakes are retried even when the confined services send nothing.
	ProbeKeepalive time.Duration
	// Backoff between attempts to bring a lost tunnel back.
	Backoff *Backoff
	// PlanPath is where reload reads the new plan.
	PlanPath string
	// StatePath, MetricsPath, RecordPath, ControlPath: "" takes the
	// namespace's defaults.
	StatePath, MetricsPath, RecordPath, ControlPath string
	// Notify sends sd_notify messages; nil: daemon.SdNotify.
	Notify func(string)
	// Restart is this process's start record (ThrottleStart); serve
	// marks it healthy once the device works. nil: none.
	Restart *RestartThrottle
	// Tripwire reads this namespace's tripwire counter (nil: none).
	Tripwire func() (uint64, bool)
}

func (o *Options) defaults(n *plan.Namespace) {
	if o.CheckInterval == 0 {
		o.CheckInterval = 2 * time.Second
	}
	if o.ProbeKeepalive == 0 {
		o.ProbeKeepalive = 10 * time.Second
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff()
	}
	if o.PlanPath == "" {
		o.PlanPath = plan.Path(plan.DefaultGeneratorDir, n.Name)
	}
	if o.StatePath == "" {
		o.StatePath = StatePath(n.Name)
	}
	if o.MetricsPath == "" {
		o.MetricsPath = plan.MetricsPath(n.Name)
	}
	if o.RecordPath == "" {
		o.RecordPath = RecordPath(n.Name)
	}
	if o.ControlPath == "" {
		o.ControlPath = ControlPath(n.Name)
	}
	if o.Notify == nil {
		o.Notify = newAsyncNotifier(func(s string) { daemon.SdNotify(false, s) }).Notify
	}
	if o.Units == nil {
		o.Units = NewDBusUnits()
	}
}

// errNamespaceGone ends the supervisor: without its namespace the tunnel
// has no purpose (vpn-ns@ is stopping, and BindsTo= stops us too).
var errNamespaceGone = errors.New("namespace gone")

// Supervisor runs one namespace's tunnel for good.
type Supervisor struct {
	n      *plan.Namespace
	log    *journal.Logger
	o      Options
	target *netns.NetNS
	pinIno uint64

	rec     Record
	ready   bool
	state   State
	reloads chan reloadReq
	probing map[int]bool
	// recovering says, per peer, what the watchdog did about it until it
	// is usable again (a failover or re-apply awaiting its handshake).
	recovering map[int]string
	wd         *Watchdog
	planHash   string
	routes     *routes
}

// Run is `vpn-confinement-wireguard run NAME`: it serves until ctx ends
// (SIGTERM: nil) or the namespace disappears (an error).
func Run(ctx context.Context, n *plan.Namespace, log *journal.Logger, o Options) error {
	o.defaults(n)
	target, err := netns.Open(plan.NetnsPath(n.Name))
	if err != nil {
		return fmt.Errorf("open namespace: %w (is vpn-ns@%s running?)", err, n.Name)
	}
	defer target.Close()
	s := &Supervisor{n: n, log: log, o: o, target: target, reloads: make(chan reloadReq), probing: map[int]bool{}, recovering: map[int]string{}}
	s.pinIno = pinnedInode(target, n.Name)
	if s.routes, err = openRoutes(wireguard.FwMark(&n.WireGuard)); err != nil {
		log.Warnf("cannot watch the routes to the endpoints: %v", err)
	}
	defer s.routes.Close()
	s.planHash = hashFile(o.PlanPath)
	if s.rec, err = LoadRecord(o.RecordPath); err != nil {
		log.Warnf("read %s: %v (starting without it)", o.RecordPath, err)
	}
	s.state = State{Namespace: n.Name, PID: os.Getpid(), Interface: n.WireGuard.Interface, OnTunnelLoss: n.OnTunnelLoss, Since: time.Now()}
	stopControl, err := s.listenControl()
	if err != nil {
		log.Warnf("no live reload: %v", err)
	} else {
		defer stopControl()
	}
	first := true
	for {
		if ctx.Err() != nil {
			s.stopping()
			return nil
		}
		wo := s.o.WireGuard
		wo.AllowUnresolved = true
		// The watchdog counts handshakes from before the device exists:
		// the first one may complete while it is still being set up.
		created := time.Now()
		dev, err := wireguard.CreateWithOptions(ctx, s.n, target, log, wo)
		if err != nil {
			if !s.namespaceOK() {
				return fmt.Errorf("%w: %s", errNamespaceGone, plan.NetnsPath(n.Name))
			}
			s.setState(StateBlocked, "cannot bring the tunnel up: "+err.Error(), journal.Err)
			if !s.ready && s.n.LossMode() != plan.OnTunnelLossStop {
				// block and freeze: the services may start, blocked; the
				// helper keeps trying. stop: they wait for a tunnel.
				s.notifyReady()
			}
			s.hold(ctx)
			if !s.wait(ctx, s.o.Backoff.Next()) {
				s.stopping()
				return nil
			}
			continue
		}
		if !first {
			s.state.Recreations++
		}
		first = false
		s.state.Backend = dev.Backend()
		err = s.serve(ctx, dev, created)
		dev.Close()
		if ctx.Err() != nil {
			s.stopping()
			return nil
		}
		if errors.Is(err, errNamespaceGone) {
			return err
		}
		s.setState(StateBlocked, err.Error(), journal.Err)
		s.hold(ctx)
		if !s.wait(ctx, s.o.Backoff.Next()) {
			s.stopping()
			return nil
		}
	}
}

// stopping is what SIGTERM leaves in the state file.
func (s *Supervisor) stopping() {
	s.o.Notify(daemon.SdNotifyStopping)
	s.setState(StateBlocked, "tunnel helper stopped", journal.Info)
}

func (s *Supervisor) notifyReady() {
	if !s.ready {
		s.o.Notify(daemon.SdNotifyReady)
		s.ready = true
	}
}

// wait sleeps d unless ctx ends (false) first.
func (s *Supervisor) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		d = time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case req := <-s.reloads:
			// No device now: the new plan is used for the next attempt.
			req.reply <- s.reload(ctx, nil, req)
		}
	}
}

// setState records a state change, logging transitions once at pri.
func (s *Supervisor) setState(state, reason string, pri int) {
	now := time.Now()
	// The journal gets transitions (the reason changes every second, e.g.
	// "handshake 12s ago"); STATUS= always shows the current one.
	if state != s.state.State {
		s.state.Since = now
		s.log.Logf(pri, "tunnel %s of %s: %s%s", s.n.WireGuard.Interface, s.n.Name, state, prefixed(": ", reason))
	}
	if state != s.state.State || reason != s.state.Reason {
		s.o.Notify("STATUS=" + statusLine(state, reason))
	}
	s.state.State, s.state.Reason, s.state.Updated = state, reason, now
	s.writeState()
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func statusLine(state, reason string) string {
	switch state {
	case StateBlocked:
		return "blocked (confined services have no way out): " + reason
	}
	return state + prefixed(", ", reason)
}

func (s *Supervisor) writeState() {
	s.state.Units = s.unitInfo()
	if c, err := firewall.Counters(s.target, firewall.TableName); err == nil {
		s.state.KillSwitchDrops = map[string]uint64{"input": c["input drop"].Packets, "output": c["output drop"].Packets}
	}
	if s.o.Tripwire != nil {
		if v, ok := s.o.Tripwire(); ok {
			s.tripwireAlarm(v)
			s.state.TripwireDrops = &v
		}
	}
	s.state.PlanHash = s.planHash
	if err := s.state.Write(s.o.StatePath, s.o.MetricsPath); err != nil {
		s.log.Debugf("write state: %v", err)
	}
}

// namespaceOK reports whether /run/netns/NAME still pins our namespace.
func (s *Supervisor) namespaceOK() bool {
	pin, err := netns.Open(plan.NetnsPath(s.n.Name))
	if err != nil {
		return false
	}
	defer pin.Close()
	ino, err := pin.Inode()
	return err == nil && (s.pinIno == 0 || ino == s.pinIno)
}

func pinnedInode(target *netns.NetNS, name string) uint64 {
	ino, err := target.Inode()
	if err != nil {
		return 0
	}
	pin, err := netns.Open(plan.NetnsPath(name))
	if err != nil {
		return 0
	}
	defer pin.Close()
	if p, err := pin.Inode(); err != nil || p != ino {
		return 0
	}
	return ino
}

// serve watches a live device until it is lost (an error), ctx ends (nil)
// or the namespace disappears (errNamespaceGone).
func (s *Supervisor) serve(ctx context.Context, dev *wireguard.Device, created time.Time) error {
	s.notifyReady()
	s.o.Restart.healthy(s.log)
	updates := make(chan netlink.LinkUpdate, 32)
	done := make(chan struct{})
	defer close(done)
	ns := vnetns.NsHandle(s.target.Fd())
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		s.log.Warnf("cannot subscribe to link events in %s: %v (periodic checks only)", s.n.Name, err)
		updates = nil
	}
	index := dev.LinkIndex()
	devDone := dev.Wait()
	now := time.Now()
	s.wd = NewWatchdog(s.n, created)
	s.probing = map[int]bool{}
	s.recovering = map[int]string{}
	refresh := newRefresh(s.n.WireGuard.Peers, now)
	check := time.NewTicker(s.o.CheckInterval)
	defer check.Stop()
	// While a handshake is awaited (a new device, a re-applied peer) the
	// checks come fast, so held units are released within a fraction of
	// a second of the handshake rather than a whole interval later.
	interval := s.o.CheckInterval
	pace := func() {
		want := s.o.CheckInterval
		if s.state.State == StateConnecting {
			want = min(want, fastCheck)
		}
		if want != interval {
			interval = want
			check.Reset(want)
		}
	}
	s.tick(ctx, dev)
	pace()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			if int(u.Index) == index && u.Header.Type == unix.RTM_DELLINK {
				return fmt.Errorf("link %s was deleted from namespace %s", s.n.WireGuard.Interface, s.n.Name)
			}
		case <-devDone:
			return fmt.Errorf("the userspace WireGuard device %s stopped", s.n.WireGuard.Interface)
		case req := <-s.reloads:
			req.reply <- s.reload(ctx, dev, req)
		case <-check.C:
			if !s.namespaceOK() {
				return errNamespaceGone
			}
			if err := dev.Check(); err != nil {
				return err
			}
			for _, i := range refresh.due(time.Now()) {
				if _, err := dev.RefreshHostname(ctx, i); err != nil {
					s.log.Warnf("peer %d: %v (keeping the current endpoint)", i, err)
				}
			}
			s.tick(ctx, dev)
			pace()
		}
	}
}

// fastCheck is the check interval while a handshake is awaited.
const fastCheck = 200 * time.Millisecond
