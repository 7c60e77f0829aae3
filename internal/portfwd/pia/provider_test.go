package pia

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
)

func TestForwarder(t *testing.T) {
	now := time.Now()
	f := &fakeGateway{port: 47047, expires: now.Add(40 * time.Minute)}
	g := startGateway(t, f)
	tokens := 0
	fw := &Forwarder{
		Gateway: g,
		Token:   func(context.Context) (string, error) { tokens++; return token, nil },
		Now:     func() time.Time { return now },
	}
	ctx := context.Background()
	l, err := fw.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Port != 47047 || l.RenewAfter != 15*time.Minute || l.Lifetime != 30*time.Minute {
		t.Errorf("lease %+v", l)
	}
	if tokens != 1 || f.sigs != 1 || f.binds != 1 {
		t.Errorf("%d tokens, %d signatures, %d binds", tokens, f.sigs, f.binds)
	}

	// Renew 15 min later: bindPort again, same signature; the lifetime
	// is now capped by expires_at (40 - 15 = 25 min).
	now = now.Add(15 * time.Minute)
	l, err = fw.Renew(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if l.Lifetime != 25*time.Minute || f.sigs != 1 || f.binds != 2 {
		t.Errorf("lease %+v after %d signatures, %d binds", l, f.sigs, f.binds)
	}

	// 409: the loop is told to reacquire.
	f.busy = 1
	_, err = fw.Renew(ctx, l)
	if !errors.Is(err, ErrPortBusy) || !errors.Is(err, lease.ErrReacquire) {
		t.Errorf("busy renew: %v", err)
	}
	noSecrets(t, err)

	// Past expires_at: reacquire without asking the server.
	now = now.Add(30 * time.Minute)
	binds := f.binds
	_, err = fw.Renew(ctx, l)
	if !errors.Is(err, ErrExpired) || !errors.Is(err, lease.ErrReacquire) || f.binds != binds {
		t.Errorf("expired renew: %v (%d binds)", err, f.binds-binds)
	}
	// A new signature that is already expired is an error, not a loop.
	if _, err := fw.Acquire(ctx); err == nil || errors.Is(err, lease.ErrReacquire) {
		t.Errorf("acquire with an expired signature: %v", err)
	}
	// The server renews it: a new port.
	f.port, f.expires = 51000, now.Add(60*24*time.Hour)
	l, err = fw.Acquire(ctx)
	if err != nil || l.Port != 51000 || l.Lifetime != 30*time.Minute {
		t.Errorf("reacquire: %+v, %v", l, err)
	}
	if err := fw.Release(ctx, l); err != nil {
		t.Error(err)
	}
}

// TestForwarderInLoop: the lease loop drives the forwarder through a busy
// port to a new signature.
func TestForwarderInLoop(t *testing.T) {
	f := &fakeGateway{port: 47047, expires: time.Now().Add(60 * 24 * time.Hour)}
	g := startGateway(t, f)
	fw := &Forwarder{Gateway: g, Token: func(context.Context) (string, error) { return token, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changes [][2]uint16
	clock := &jumpClock{now: time.Now()}
	loop := lease.New(lease.Config{
		Provider: fw,
		Clock:    clock,
		OnChange: func(old, new uint16) {
			changes = append(changes, [2]uint16{old, new})
			if len(changes) == 1 {
				f.mu.Lock()
				f.busy, f.nextPort = 1, 47048 // the next bind is refused, the next signature differs
				f.mu.Unlock()
			} else {
				cancel()
			}
		},
	})
	if err := loop.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0] != [2]uint16{0, 47047} || changes[1] != [2]uint16{47047, 47048} {
		t.Errorf("changes %v", changes)
	}
	// acquire (1 signature, 1 bind), renewal refused (1 bind), reacquire
	// at once (1 signature, 1 bind).
	if f.sigs != 2 || f.binds != 3 {
		t.Errorf("%d signatures, %d binds", f.sigs, f.binds)
	}
}

type jumpClock struct{ now time.Time }

func (c *jumpClock) Now() time.Time { return c.now }
func (c *jumpClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestForwarderNearExpiry: a signature that would expire before the next
// keep-alive is replaced at this one, not renewed in ever shorter steps
// (3/4 of what is left, again and again) until it runs out.
func TestForwarderNearExpiry(t *testing.T) {
	clock := &jumpClock{now: time.Now()}
	f := &fakeGateway{port: 47047, expires: clock.now.Add(40 * time.Minute)}
	g := startGateway(t, f)
	fw := &Forwarder{Gateway: g, Token: func(context.Context) (string, error) { return token, nil }, Now: clock.Now}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changes [][2]uint16
	var bindsBefore int
	loop := lease.New(lease.Config{
		Provider: fw,
		Clock:    clock,
		OnChange: func(old, new uint16) {
			changes = append(changes, [2]uint16{old, new})
			if len(changes) == 1 {
				f.mu.Lock()
				f.nextPort, f.nextExp = 47048, clock.now.Add(60*24*time.Hour)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			bindsBefore = f.binds - 1 // the new signature's own bind
			f.mu.Unlock()
			cancel()
		},
		OnLoss: func(err error) {
			if !errors.Is(err, lease.ErrStopped) {
				t.Errorf("lost the port on the way to a new signature: %v", err)
			}
		},
	})
	if err := loop.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[1] != [2]uint16{47047, 47048} {
		t.Fatalf("changes %v", changes)
	}
	// Acquire at 0 (bind), keep-alive at 15 min (bind, 25 min left), at
	// 30 min only 10 min are left: a new signature instead of a bind.
	if bindsBefore != 2 {
		t.Errorf("%d binds of the old signature before the new one, want 2", bindsBefore)
	}
}
