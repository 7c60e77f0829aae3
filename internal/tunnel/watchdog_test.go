package tunnel

import (
	"fmt"
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
	// rx: a handshake response (92 bytes) came back with each handshake.
	st := func(hs int, tx int64) wireguard.PeerStats {
		s := wireguard.PeerStats{TxBytes: tx}
		if hs >= 0 {
			s.RxBytes = 92
		}
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
		a := w.Check(0, s.stats, Observation{}, at(s.now))
		if a != s.action || w.Health(0) != s.health {
			t.Fatalf("t=%d (%s): health %s action %d, want %s %d", s.now, s.comment, w.Health(0), a, s.health, s.action)
		}
	}
	// Failover to the second endpoint, which never answers. The peer is
	// re-created there: its counters start from zero, without a handshake.
	if n := w.Next(0, 0); n != 1 {
		t.Fatalf("next endpoint %d, want 1", n)
	}
	w.Reset(0, at(290), 0, 0)
	if a := w.Check(0, st(-1, 300), Observation{}, at(300)); a != Nothing || w.Health(0) != Connecting {
		t.Fatalf("within the first-handshake grace: %s %d", w.Health(0), a)
	}
	if a := w.Check(0, st(-1, 600), Observation{}, at(306)); a != Failover || w.Health(0) != Unreachable {
		t.Fatalf("16 s without an answer: %s %d, want unreachable + failover", w.Health(0), a)
	}
	// A whole round failed: the next action waits (30 s after this one).
	w.Reset(0, at(306), 0, 0)
	if a := w.Check(0, st(-1, 300), Observation{}, at(322)); a != Nothing || w.Health(0) != Unreachable {
		t.Fatalf("in the pause after a failed round: %s %d, want unreachable and no action", w.Health(0), a)
	}
	if a := w.Check(0, st(-1, 600), Observation{}, at(340)); a != Failover {
		t.Fatalf("after the pause: action %d, want failover", a)
	}
	// An answer ends it all.
	w.Reset(0, at(340), 0, 0)
	if a := w.Check(0, st(342, 400), Observation{}, at(343)); a != Nothing || w.Health(0) != Up {
		t.Fatalf("handshake after failover: %s %d", w.Health(0), a)
	}
}

// TestWatchdogFollow: a reload that leaves a peer's key and endpoints
// alone keeps its state (an old handshake of a live session is not a
// connect that never came); a changed endpoint starts connecting.
func TestWatchdogFollow(t *testing.T) {
	t0 := time.Unix(100000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	cur := wdPlan(1)
	w := NewWatchdog(cur, t0)
	up := wireguard.PeerStats{LastHandshake: at(1), TxBytes: 1000, RxBytes: 1000}
	w.Check(0, up, Observation{}, at(2))
	next := wdPlan(1)
	next.DNS.Servers = nil // an unrelated change
	f := w.Follow(cur, next, at(100))
	up.TxBytes, up.RxBytes = 5000, 5000
	if a := f.Check(0, up, Observation{}, at(120)); a != Nothing || f.Health(0) != Up {
		t.Fatalf("unchanged peer after a reload: %s %d, want up", f.Health(0), a)
	}
	next.WireGuard.Peers[0].Endpoint = &plan.Endpoint{Host: "198.51.100.9", Port: 51820}
	f = w.Follow(cur, next, at(100))
	if a := f.Check(0, up, Observation{}, at(101)); a != Nothing || f.Health(0) != Connecting {
		t.Fatalf("moved peer after a reload: %s %d, want connecting", f.Health(0), a)
	}
}

// TestWatchdogNothingSent: without traffic WireGuard never handshakes, so
// a peer that was never tried is connecting, not unreachable.
func TestWatchdogNothingSent(t *testing.T) {
	t0 := time.Unix(100000, 0)
	w := NewWatchdog(wdPlan(2), t0)
	if a := w.Check(0, wireguard.PeerStats{}, Observation{}, t0.Add(time.Hour)); a != Nothing || w.Health(0) != Connecting {
		t.Fatalf("%s %d, want connecting and no action", w.Health(0), a)
	}
}

// TestWatchdogSingleEndpoint: one endpoint is re-resolved and re-applied.
func TestWatchdogSingleEndpoint(t *testing.T) {
	t0 := time.Unix(100000, 0)
	w := NewWatchdog(wdPlan(1), t0)
	if a := w.Check(0, wireguard.PeerStats{TxBytes: 500}, Observation{}, t0.Add(20*time.Second)); a != Reapply {
		t.Fatalf("action %d, want reapply", a)
	}
	if a := w.Check(0, wireguard.PeerStats{TxBytes: 500}, Observation{Unresolved: true}, t0.Add(21*time.Second)); w.Health(0) != Unresolved || a != Nothing {
		t.Fatalf("unresolved: %s %d", w.Health(0), a)
	}
}

// TestWatchdogSilence: a peer that answered and then sends nothing back
// while data goes out is stalled after 30 s, long before its handshake is
// 180 s old; keepalives alone (which a live peer never answers) are not
// data, and any answer clears it.
func TestWatchdogSilence(t *testing.T) {
	t0 := time.Unix(100000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	n := wdPlan(1)
	n.WireGuard.Peers[0].PersistentKeepalive = 25
	w := NewWatchdog(n, t0)
	hs := at(1)
	steps := []struct {
		now    int
		tx, rx int64
		health Health
		action Action
		why    string
	}{
		{2, 148, 92, Up, Nothing, "handshake"},
		{4, 1000, 92, Up, Nothing, "data out, the answer is on its way"},
		{6, 1200, 600, Up, Nothing, "answered"},
		{30, 1232, 600, Up, Nothing, "idle: one keepalive (32 bytes), no answer expected"},
		{80, 1296, 600, Up, Nothing, "idle: two more keepalives over 50 s"},
		{82, 2000, 600, Up, Nothing, "data again: unanswered since 82"},
		{100, 4000, 600, Up, Nothing, "18 s without an answer: WireGuard retries handshakes"},
		{113, 5000, 600, Stalled, Reapply, "31 s without an answer while sending: stalled"},
	}
	for _, s := range steps {
		a := w.Check(0, wireguard.PeerStats{LastHandshake: hs, TxBytes: s.tx, RxBytes: s.rx}, Observation{}, at(s.now))
		if a != s.action || w.Health(0) != s.health {
			t.Fatalf("t=%d (%s): health %s action %d, want %s %d", s.now, s.why, w.Health(0), a, s.health, s.action)
		}
	}
	// The provider answers again: a new handshake on the re-applied peer.
	w.Reset(0, at(113), 0, 0)
	if a := w.Check(0, wireguard.PeerStats{LastHandshake: at(120), TxBytes: 300, RxBytes: 92}, Observation{}, at(121)); a != Nothing || w.Health(0) != Up {
		t.Fatalf("after the answer: %s %d", w.Health(0), a)
	}
}

// TestWatchdogNoRoute: without a route nothing is judged or done; when
// the route is back a peer with a fresh handshake is up at once (its
// session outlived a short uplink outage) and one without gets a new grace.
func TestWatchdogNoRoute(t *testing.T) {
	t0 := time.Unix(100000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	w := NewWatchdog(wdPlan(2), t0)
	up := wireguard.PeerStats{LastHandshake: at(1), TxBytes: 1000, RxBytes: 1000}
	if a := w.Check(0, up, Observation{}, at(2)); a != Nothing || w.Health(0) != Up {
		t.Fatalf("up: %s %d", w.Health(0), a)
	}
	for _, s := range []int{4, 20, 60} {
		if a := w.Check(0, wireguard.PeerStats{LastHandshake: at(1), TxBytes: 1000, RxBytes: 1000}, Observation{NoRoute: true}, at(s)); a != Nothing || w.Health(0) != NoRoute {
			t.Fatalf("t=%d without a route: %s %d", s, w.Health(0), a)
		}
	}
	if a := w.Check(0, wireguard.PeerStats{LastHandshake: at(1), TxBytes: 1100, RxBytes: 1000}, Observation{}, at(62)); a != Nothing || w.Health(0) != Up {
		t.Fatalf("route back, session fresh: %s %d", w.Health(0), a)
	}
	// Never connected (boot without an uplink): a fresh grace when the
	// route appears, however long it was missing.
	w = NewWatchdog(wdPlan(2), t0)
	w.Check(0, wireguard.PeerStats{}, Observation{NoRoute: true}, at(100))
	if a := w.Check(0, wireguard.PeerStats{TxBytes: 148}, Observation{}, at(102)); a != Nothing || w.Health(0) != Connecting {
		t.Fatalf("route appears at boot: %s %d, want connecting", w.Health(0), a)
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

// TestAsyncNotifier: a receiver that does not read never blocks Notify;
// READY=1 and STOPPING=1 go out in order, STATUS= lines coalesce to the
// latest.
func TestAsyncNotifier(t *testing.T) {
	release := make(chan struct{})
	got := make(chan string, 100)
	n := newAsyncNotifier(func(s string) { <-release; got <- s })
	done := make(chan struct{})
	go func() {
		n.Notify("READY=1")
		for i := 0; i < 1000; i++ {
			n.Notify(fmt.Sprintf("STATUS=%d", i))
		}
		n.Notify("STOPPING=1")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked on a receiver that does not read")
	}
	close(release)
	var msgs []string
	for len(msgs) < 3 {
		select {
		case m := <-got:
			msgs = append(msgs, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %q", msgs)
		}
	}
	if msgs[0] != "READY=1" || msgs[1] != "STOPPING=1" || msgs[2] != "STATUS=999" {
		t.Errorf("sent %q, want READY=1, STOPPING=1, STATUS=999", msgs)
	}
}
