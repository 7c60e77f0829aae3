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
)

func (h Health) String() string {
	return [...]string{"up", "connecting", "idle", "unreachable", "stalled", "unresolved"}[h]
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
}

// Watchdog decides, from periodic peer counters, whether each peer is
// healthy and what to do when it is not. It is pure (the caller passes the
// time), so its rules are tested without waiting 180 s.
type Watchdog struct {
	stallAfter time.Duration
	firstHS    time.Duration
	peers      []peerWatch
	candidates []int // endpoints per peer
}

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
	for _, p := range n.WireGuard.Peers {
		w.peers = append(w.peers, peerWatch{since: now, lastTxMove: now, health: Connecting})
		w.candidates = append(w.candidates, len(wireguard.Candidates(p)))
	}
	return w
}

// Reset marks peer i as freshly configured (after a failover or reapply).
func (w *Watchdog) Reset(i int, now time.Time, tx int64) {
	p := &w.peers[i]
	p.since, p.txAtSince, p.lastTx, p.lastTxMove, p.health = now, tx, tx, now, Connecting
}

// MarkUnresolved records that peer i's endpoint did not resolve.
func (w *Watchdog) MarkUnresolved(i int) { w.peers[i].health = Unresolved }

// Health of peer i after the last Check.
func (w *Watchdog) Health(i int) Health { return w.peers[i].health }

// maxHold caps the pause between failover rounds.
const maxHold = 5 * time.Minute

// Check updates peer i from its counters and returns what to do.
func (w *Watchdog) Check(i int, s wireguard.PeerStats, unresolved bool, now time.Time) Action {
	p := &w.peers[i]
	if !s.LastHandshake.Equal(p.lastHS) {
		// A new handshake: what was sent up to now is accounted for.
		p.lastHS, p.sendStart, p.lastTx = s.LastHandshake, time.Time{}, s.TxBytes
	}
	if s.TxBytes > p.lastTx {
		p.lastTxMove = now
		if p.sendStart.IsZero() {
			p.sendStart = now
		}
	}
	p.lastTx = s.TxBytes
	fresh := !s.LastHandshake.IsZero() && !s.LastHandshake.Before(p.since)
	// Sending for longer than a handshake takes (WireGuard handshakes at
	// once when traffic resumes after an idle spell): a stall, not a
	// tunnel that just woke up.
	sending := !p.sendStart.IsZero() && now.Sub(p.sendStart) > w.firstHS
	switch {
	case unresolved:
		p.health = Unresolved
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
		return fmt.Sprintf("stalled: no handshake for %s while sending", now.Sub(s.LastHandshake).Round(time.Second))
	}
	return "endpoint does not resolve"
}
