package natpmp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
)

// jumpClock: After(d) moves time by d and fires at once (the lease loop's
// schedule runs instantly; the NAT-PMP exchanges are real, on loopback).
type jumpClock struct{ now time.Time }

func (c *jumpClock) Now() time.Time { return c.now }
func (c *jumpClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestProtonLease runs the lease loop against the test responder: the
// port changes on the second renewal, the third renewal is refused and
// retried after the backoff, and stopping releases the mappings.
func TestProtonLease(t *testing.T) {
	s := startServer(t)
	s.ChangePortAt(3, 40000)
	s.ScriptAt(7, natpmpd.Refuse) // round 4's UDP request
	epoch := time.Unix(0, 0)
	clock := &jumpClock{now: epoch}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events []string
	at := func() string { return fmt.Sprintf("%6.2fs", clock.now.Sub(epoch).Seconds()) }
	c := client(s)
	c.ListenPacket = func(ctx context.Context) (net.PacketConn, error) {
		if len(s.Requests()) == 9 {
			cancel() // stop instead of round 6
		}
		return Listen(ctx, netip.Addr{})
	}
	loop := lease.New(lease.Config{
		Provider: Proton{Client: c},
		Clock:    clock,
		Rand:     func() float64 { return 0 },
		OnChange: func(old, new uint16) { events = append(events, fmt.Sprintf("%s change %d → %d", at(), old, new)) },
		OnLoss:   func(err error) { events = append(events, fmt.Sprintf("%s loss: %v", at(), err)) },
		Logf: func(f string, a ...any) {
			if msg := fmt.Sprintf(f, a...); strings.Contains(msg, "refused") {
				events = append(events, at()+" "+msg)
			}
		},
	})
	if err := loop.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"  0.00s change 0 → 38534",
		" 90.00s change 38534 → 40000",
		"135.00s lease: natpmp map udp 0→1 for 60 s: gateway refused udp request: result 2 (not authorized/refused) (failure 1, next try in 500ms)",
		"180.50s loss: port forwarding stopped", // the renewal due then is never sent
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	var got []string
	for _, r := range s.Requests() {
		got = append(got, fmt.Sprintf("%d:%d→%d/%d", r.Op, r.Internal, r.External, r.Lifetime))
	}
	wantReqs := []string{
		"1:0→1/60", "2:0→1/60", // acquire
		"1:0→1/60", "2:0→1/60", // 45 s
		"1:0→1/60", "2:0→1/60", // 90 s, port 40000
		"1:0→1/60",             // 135 s, refused
		"1:0→1/60", "2:0→1/60", // 135.5 s
		"1:0→0/0", "2:0→0/0", // release at stop
	}
	if diff := cmp.Diff(wantReqs, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
