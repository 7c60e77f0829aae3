// Package tunnel supervises the WireGuard tunnel of one confinement
// namespace for vpn-wg@NAME.service: it keeps the tunnel up for good
// (recreating it when its link or device vanishes, with a backoff that
// starts at once and caps at a sane interval), watches for stalls (a live
// device whose peer stopped answering) and fails over between a peer's
// endpoints, applies onTunnelLoss to the confined services (nothing for
// block; stop and start again; freeze and thaw), applies a new plan live,
// and proves itself: STATUS= lines, a state file for vpn-confinement
// status, and a Prometheus textfile.
//
// Fail closed never depends on this package: the namespace and its kill
// switch hold while the tunnel is gone, whatever the supervisor does.
package tunnel

import (
	"fmt"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// Health of one peer as the watchdog sees it.
type Health int

// Health values, from good to bad.
const (
	// Up: a handshake on the current endpoint, fresh enough.
	Up Health = iota
	// Connecting: no handshake yet on the current endpoint, within the
	// first-handshake grace.
	Connecting
	// Idle: the last handshake is old, but nothing was sent since: an
	// idle tunnel is not a stalled one.
	Idle
	// Unreachable: the current endpoint never answered within the grace.
	Unreachable
	// Stalled: handshakes stopped while the tunnel kept sending.
	Stalled
	// Unresolved: the endpoint's host name does not resolve (yet).
	Unresolved
	// NoRoute: the socket's namespace has no route to the endpoint (the
	// uplink is down): nothing can reach the peer, whatever WireGuard does.
	NoRoute
)

func (h Health) String() string {
	return [...]string{"up", "connecting", "idle", "unreachable", "stalled", "unresolved", "no route"}[h]
}

// Observation is what the supervisor found out about a peer besides its
// counters.
type Observation struct {
	// Unresolved: the endpoint's host name did not resolve.
	Unresolved bool
	// NoRoute: the birthplace has no route to the endpoint.
	NoRoute bool
}

// Usable is true for states in which traffic can flow.
func (h Health) Usable() bool { return h == Up || h == Idle }

// Action is what the watchdog asks the supervisor to do for a peer.
type Action int

// Actions.
const (
	Nothing Action = iota
	// Failover: move to the next endpoint (re-resolving it).
	Failover
	// Reapply: re-resolve the current endpoint and set it again, which
	// also starts a fresh handshake (single-endpoint peers).
	Reapply
)

// peerWatch is the watchdog state of one peer.
type peerWatch struct {
	since      time.Time // current endpoint configured at
	txAtSince  int64     // tx bytes then
	lastTx     int64     // tx bytes at the previous check
	lastTxMove time.Time // last time tx grew
	lastHS     time.Time // the handshake seen at the previous check
	sendStart  time.Time // first tx growth after lastHS (zero: none)
	health     Health
	round      int       // failover rounds without success
	holdUntil  time.Time // no action before (backoff between rounds)
	tried      int       // endpoints tried in this round
	lastRx     int64     // rx bytes at the previous check
	lastCheck  time.Time // the previous check
	// unanswered is the first check since rx last grew at which more than
	// keepalives was sent (data or a handshake initiation); zero: none.
	unanswered time.Time
	noRoute    bool // the previous check found no route
}

// Watchdog decides, from periodic peer counters, whether each peer is
// healthy and what to do when it is not. It is pure (the caller passes the
// time), so its rules are tested without waiting 180 s.
type Watchdog struct {
	stallAfter time.Duration
	firstHS    time.Duration
	// silentAfter: a peer that had a handshake on this endpoint and sends
	// us nothing at all for this long while we send it data is stalled.
	// A live WireGuard peer answers data within 10 s (its passive
	// keepalive, KEEPALIVE_TIMEOUT) and we re-handshake after 15 s without
	// an answer (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT), so twice the
	// first-handshake grace never flags a live peer; it is what catches a
	// provider that went silent long before the handshake-age rule
	// (stallAfter, 180 s + keepalive) can.
	silentAfter time.Duration
	// keepalive is the shortest keepalive interval a peer may have (its
	// own, or the supervisor's probe): tx growth that keepalives explain
	// (32 bytes each) is not "sending data".
	keepalive  []time.Duration
	peers      []peerWatch
	candidates []int // endpoints per peer
}

// keepaliveSize is the size of a WireGuard keepalive on the wire counters
// (header 16 + empty payload + tag 16); a data packet is at least 64.
const keepaliveSize = 32

// probeKeepaliveFloor is the shortest keepalive the supervisor sets while
// probing (Options.ProbeKeepalive's default).
const probeKeepaliveFloor = 10 * time.Second

// NewWatchdog starts watching n's peers, all configured at now.
func NewWatchdog(n *plan.Namespace, now time.Time) *Watchdog {
	w := &Watchdog{
		stallAfter: time.Duration(n.Watchdog.StallAfterSeconds) * time.Second,
		firstHS:    time.Duration(n.Watchdog.FirstHandshakeSeconds) * time.Second,
	}
	if w.stallAfter <= 0 {
		w.stallAfter = 180 * time.Second
	}
	if w.firstHS <= 0 {
		w.firstHS = 15 * time.Second
	}
	w.silentAfter = 2 * w.firstHS
	for _, p := range n.WireGuard.Peers {
		w.peers = append(w.peers, peerWatch{since: now, lastTxMove: now, lastCheck: now, health: Connecting})
		w.candidates = append(w.candidates, len(wireguard.Candidates(p)))
		ka := probeKeepaliveFloor
		if k := time.Duration(p.PersistentKeepalive) * time.Second; k > 0 && k < ka {
			ka = k
		}
		w.keepalive = append(w.keepalive, ka)
	}
	return w
}

// Follow returns the watchdog for a reloaded plan next (applied to the
// device from at on): a peer whose key and endpoints did not change keeps
// its state (its session survived the reload, and an old handshake must
// not look like one that never came); other peers start connecting.
func (w *Watchdog) Follow(cur, next *plan.Namespace, at time.Time) *Watchdog {
	nw := NewWatchdog(next, at)
	if w == nil {
		return nw
	}
	for i, p := range next.WireGuard.Peers {
		for j, q := range cur.WireGuard.Peers {
			if j < len(w.peers) && p.PublicKey == q.PublicKey && sameEndpoints(p, q) {
				nw.peers[i] = w.peers[j]
			}
		}
	}
	return nw
}

func sameEndpoints(a, b plan.Peer) bool {
	ca, cb := wireguard.Candidates(a), wireguard.Candidates(b)
	if len(ca) != len(cb) {
		return false
	}
	for i := range ca {
		if ca[i] != cb[i] {
			return false
		}
	}
	return true
}

// Reset marks peer i as freshly configured (after a failover or reapply)
// with counters tx and rx (a re-created peer's start from zero).
func (w *Watchdog) Reset(i int, now time.Time, tx, rx int64) {
	p := &w.peers[i]
	p.since, p.txAtSince, p.lastTx, p.lastTxMove, p.health = now, tx, tx, now, Connecting
	p.lastRx, p.unanswered = rx, time.Time{}
}

// MarkUnresolved records that peer i's endpoint did not resolve.
func (w *Watchdog) MarkUnresolved(i int) { w.peers[i].health = Unresolved }

// Health of peer i after the last Check.
func (w *Watchdog) Health(i int) Health { return w.peers[i].health }

// maxHold caps the pause between failover rounds.
const maxHold = 5 * time.Minute

// Check updates peer i from its counters and returns what to do.
func (w *Watchdog) Check(i int, s wireguard.PeerStats, o Observation, now time.Time) Action {
	p := &w.peers[i]
	elapsed := now.Sub(p.lastCheck)
	p.lastCheck = now
	fresh := !s.LastHandshake.IsZero() && !s.LastHandshake.Before(p.since)
	if o.NoRoute {
		// Nothing can leave: no verdict on the peer, no action (another
		// endpoint has no route either, as a rule), and the silence and
		// grace timers start again when the route is back.
		p.noRoute, p.health, p.unanswered = true, NoRoute, time.Time{}
		p.lastTx, p.lastRx = s.TxBytes, s.RxBytes
		return Nothing
	}
	if p.noRoute {
		p.noRoute = false
		if !fresh {
			w.Reset(i, now, s.TxBytes, s.RxBytes)
		}
	}
	if !s.LastHandshake.Equal(p.lastHS) {
		// A new handshake: what was sent up to now is accounted for.
		p.lastHS, p.sendStart, p.lastTx = s.LastHandshake, time.Time{}, s.TxBytes
	}
	sentData := s.TxBytes-p.lastTx > keepaliveSize*(1+int64(elapsed/w.keepalive[i]))
	if s.TxBytes > p.lastTx {
		p.lastTxMove = now
		if p.sendStart.IsZero() {
			p.sendStart = now
		}
	}
	switch {
	case s.RxBytes != p.lastRx:
		p.unanswered = time.Time{}
	case sentData && p.unanswered.IsZero():
		p.unanswered = now
	}
	p.lastTx, p.lastRx = s.TxBytes, s.RxBytes
	// Sending for longer than a handshake takes (WireGuard handshakes at
	// once when traffic resumes after an idle spell): a stall, not a
	// tunnel that just woke up.
	sending := !p.sendStart.IsZero() && now.Sub(p.sendStart) > w.firstHS
	silent := fresh && !p.unanswered.IsZero() && now.Sub(p.unanswered) > w.silentAfter
	switch {
	case o.Unresolved:
		p.health = Unresolved
	case silent:
		p.health = Stalled
	case fresh && now.Sub(s.LastHandshake) <= w.stallAfter:
		p.health, p.round, p.tried = Up, 0, 0
		return Nothing
	case fresh && !sending:
		p.health = Idle
		return Nothing
	case fresh:
		p.health = Stalled
	case now.Sub(p.since) <= w.firstHS || s.TxBytes <= p.txAtSince:
		// Within the grace, or nothing was even tried: WireGuard only
		// handshakes when it has something to send.
		p.health = Connecting
		return Nothing
	default:
		p.health = Unreachable
	}
	if now.Before(p.holdUntil) {
		return Nothing
	}
	p.tried++
	if p.tried >= max(w.candidates[i], 1) {
		// A whole round failed: pause (doubling) before the next one, so
		// a provider that is down is not hammered; WireGuard keeps
		// retrying the current endpoint meanwhile.
		p.round++
		p.tried = 0
		p.holdUntil = now.Add(min(w.firstHS<<min(p.round, 10), maxHold))
	}
	if w.candidates[i] > 1 {
		return Failover
	}
	return Reapply
}

// Next returns the endpoint to fail over to from cur.
func (w *Watchdog) Next(i, cur int) int {
	if w.candidates[i] == 0 {
		return 0
	}
	return (cur + 1) % w.candidates[i]
}

// Worst is the worst health over all peers (Up without peers).
func (w *Watchdog) Worst() Health {
	h := Up
	for _, p := range w.peers {
		h = max(h, p.health)
	}
	return h
}

// Describe is a short text for STATUS= and logs.
func (w *Watchdog) Describe(i int, s wireguard.PeerStats, now time.Time) string {
	p := w.peers[i]
	switch p.health {
	case Up, Idle:
		return fmt.Sprintf("handshake %s ago", now.Sub(s.LastHandshake).Round(time.Second))
	case Connecting:
		return fmt.Sprintf("connecting for %s", now.Sub(p.since).Round(time.Second))
	case Unreachable:
		return fmt.Sprintf("endpoint not answering for %s", now.Sub(p.since).Round(time.Second))
	case Stalled:
		if !p.unanswered.IsZero() {
			return fmt.Sprintf("stalled: nothing received for %s while sending", now.Sub(p.unanswered).Round(time.Second))
		}
		return fmt.Sprintf("stalled: no handshake for %s while sending", now.Sub(s.LastHandshake).Round(time.Second))
	case NoRoute:
		return "no route to the endpoint (uplink down?)"
	}
	return "endpoint does not resolve"
}
