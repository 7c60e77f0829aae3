package tunnel

import (
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

func wdPlan(endpoints int) *plan.Namespace {
	p := plan.Peer{Endpoint: &plan.Endpoint{Host: "198.51.100.1", Port: 51820}}
	for i := 1; i < endpoints; i++ {
		p.Failover = append(p.Failover, plan.Endpoint{Host: "198.51.100.2", Port: uint16(51820 + i)})
	}
	return &plan.Namespace{
		Watchdog:  plan.Watchdog{StallAfterSeconds: 205, FirstHandshakeSeconds: 15},
		WireGuard: plan.WireGuard{Peers: []plan.Peer{p}},
	}
}

// TestWatchdogRules walks the watchdog through a life: connecting, up,
// idle, stalled while sending, failover, an endpoint that never answers,
// and the pause between failed rounds. Time is passed in, so 180 s of
// WireGuard timers take no time.
func TestWatchdogRules(t *testing.T) {
	t0 := time.Unix(100000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	w := NewWatchdog(wdPlan(2), t0)
	st := func(hs int, tx int64) wireguard.PeerStats {
		s := wireguard.PeerStats{TxBytes: tx}
		if hs >= 0 {
			s.LastHandshake = at(hs)
		}
		return s
	}
	steps := []struct {
		now     int
		stats   wireguard.PeerStats
		health  Health
		action  Action
		comment string
	}{
		{1, st(-1, 148), Connecting, Nothing, "first handshake attempt"},
		{3, st(2, 300), Up, Nothing, "handshake done"},
		{150, st(2, 300), Up, Nothing, "148 s since the handshake: within stallAfter"},
		{260, st(2, 300), Idle, Nothing, "old handshake, nothing sent since: idle, not stalled"},
		{270, st(2, 900), Idle, Nothing, "traffic resumes: WireGuard handshakes now; not a stall yet"},
		{280, st(2, 1500), Idle, Nothing, "10 s of sending without a handshake: still within the grace"},
		{290, st(2, 2000), Stalled, Failover, "sending for 20 s, no handshake for 288 s: stalled"},
	}
	for _, s := range steps {
		a := w.Check(0, s.stats, false, at(s.now))
		if a != s.action || w.Health(0) != s.health {
			t.Fatalf("t=%d (%s): health %s action %d, want %s %d", s.now, s.comment, w.Health(0), a, s.health, s.action)
		}
	}
	// Failover to the second endpoint, which never answers.
	if n := w.Next(0, 0); n != 1 {
		t.Fatalf("next endpoint %d, want 1", n)
	}
	w.Reset(0, at(290), 2000)
	if a := w.Check(0, st(2, 2300), false, at(300)); a != Nothing || w.Health(0) != Connecting {
		t.Fatalf("within the first-handshake grace: %s %d", w.Health(0), a)
	}
	if a := w.Check(0, st(2, 2600), false, at(306)); a != Failover || w.Health(0) != Unreachable {
		t.Fatalf("16 s without an answer: %s %d, want unreachable + failover", w.Health(0), a)
	}
	// A whole round failed: the next action waits (30 s after this one).
	w.Reset(0, at(306), 2600)
	if a := w.Check(0, st(2, 2900), false, at(322)); a != Nothing || w.Health(0) != Unreachable {
		t.Fatalf("in the pause after a failed round: %s %d, want unreachable and no action", w.Health(0), a)
	}
	if a := w.Check(0, st(2, 3200), false, at(340)); a != Failover {
		t.Fatalf("after the pause: action %d, want failover", a)
	}
	// An answer ends it all.
	w.Reset(0, at(340), 3200)
	if a := w.Check(0, st(342, 3400), false, at(343)); a != Nothing || w.Health(0) != Up {
		t.Fatalf("handshake after failover: %s %d", w.Health(0), a)
	}
}

// TestWatchdogNothingSent: without traffic WireGuard never handshakes, so
// a peer that was never tried is connecting, not unreachable.
func TestWatchdogNothingSent(t *testing.T) {
	t0 := time.Unix(100000, 0)
	w := NewWatchdog(wdPlan(2), t0)
	if a := w.Check(0, wireguard.PeerStats{}, false, t0.Add(time.Hour)); a != Nothing || w.Health(0) != Connecting {
		t.Fatalf("%s %d, want connecting and no action", w.Health(0), a)
	}
}

// TestWatchdogSingleEndpoint: one endpoint is re-resolved and re-applied.
func TestWatchdogSingleEndpoint(t *testing.T) {
	t0 := time.Unix(100000, 0)
	w := NewWatchdog(wdPlan(1), t0)
	if a := w.Check(0, wireguard.PeerStats{TxBytes: 500}, false, t0.Add(20*time.Second)); a != Reapply {
		t.Fatalf("action %d, want reapply", a)
	}
	if a := w.Check(0, wireguard.PeerStats{TxBytes: 500}, true, t0.Add(21*time.Second)); w.Health(0) != Unresolved || a != Nothing {
		t.Fatalf("unresolved: %s %d", w.Health(0), a)
	}
}

func TestBackoff(t *testing.T) {
	b := &Backoff{First: 100 * time.Millisecond, Max: time.Second}
	if d := b.Next(); d != 0 {
		t.Fatalf("first retry after %s, want at once", d)
	}
	prev := time.Duration(0)
	for i := 0; i < 10; i++ {
		d := b.Next()
		if d > time.Second+time.Second/10 || d < prev/2 {
			t.Fatalf("retry %d after %s", i, d)
		}
		prev = d
	}
	if prev < 900*time.Millisecond {
		t.Errorf("capped delay %s, want about 1s", prev)
	}
	b.Reset()
	if d := b.Next(); d != 0 {
		t.Errorf("after reset: %s", d)
	}
}
