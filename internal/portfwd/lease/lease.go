// Package lease keeps a forwarded port alive, whatever the protocol: it
// acquires a lease from a Provider (NAT-PMP for ProtonVPN, the PIA API),
// renews it before it runs out, notices when the port changes or is lost,
// and backs off exponentially, with jitter, while the provider fails.
//
// The state machine is one method, step, that does the due work and says
// when it wants to run next; Run only sleeps between steps on a Clock. With
// a fake clock the whole machine runs on one goroutine, deterministically,
// and tests never sleep.
//
// A lease is lost when renewal keeps failing until it expires, or when the
// loop stops (it then releases the lease). After a loss the loop goes back
// to acquiring. A renewal that returns a different port is a change, not a
// loss.
package lease

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Lease is a forwarded port as a provider granted it. Durations count
// from the moment the provider call returned, so providers need no clock.
type Lease struct {
	Port uint16
	// Lifetime is how long the port stays forwarded without renewal.
	Lifetime time.Duration
	// RenewAfter is when to renew; 0 means at 3/4 of Lifetime (NAT-PMP:
	// 45 s of a 60 s mapping). PIA sets 15 min against a longer lifetime.
	RenewAfter time.Duration
}

// Provider talks to one port-forwarding service.
type Provider interface {
	// Acquire obtains a new lease.
	Acquire(ctx context.Context) (Lease, error)
	// Renew extends cur. It may return another port. An error wrapping
	// ErrReacquire means cur can never be renewed (PIA: the port is busy
	// or the signature expired) and a new lease must be acquired.
	Renew(ctx context.Context, cur Lease) (Lease, error)
	// Release gives the lease back, best effort.
	Release(ctx context.Context, cur Lease) error
}

// ErrReacquire, wrapped by a Renew error, makes the loop call Acquire at
// once instead of retrying Renew.
var ErrReacquire = errors.New("lease cannot be renewed, acquire a new one")

// ErrStopped is the loss reason when the loop stops.
var ErrStopped = errors.New("port forwarding stopped")

// ExpiredError is the loss reason when renewal failed until expiry.
type ExpiredError struct {
	Port  uint16
	Since time.Time // first failed renewal
	Err   error     // the last renewal error
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("lease of port %d expired, renewal failing since %s: %v", e.Port, e.Since.Format(time.TimeOnly), e.Err)
}

func (e *ExpiredError) Unwrap() error { return e.Err }

// Clock is the loop's time source.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults of Config.
const (
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultCallTimeout    = 30 * time.Second
	DefaultReleaseTimeout = 5 * time.Second
)

// Config configures a Loop. Only Provider is required.
type Config struct {
	Provider Provider
	Clock    Clock // nil: real time

	// OnChange is called with the old and the new port whenever the port
	// changes: old is 0 on the first acquisition and after a loss.
	// OnLoss is called with the reason (an *ExpiredError or ErrStopped)
	// when a lease is lost. Both run on the loop's goroutine, which does
	// nothing else meanwhile: a slow callback delays renewal, so hand
	// slow work (talking to a torrent client) to another goroutine.
	OnChange func(old, new uint16)
	OnLoss   func(reason error)
	Logf     func(format string, args ...any)

	// Backoff after failures: MinBackoff doubling up to MaxBackoff, each
	// wait drawn uniformly from [b/2, b] so that many clients do not
	// retry in step; renewal retries are never scheduled after expiry.
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds one Acquire or Renew call; a renewal is also
	// cut off at the lease's expiry.
	CallTimeout time.Duration
	// ReleaseTimeout bounds the Release call when the loop stops.
	ReleaseTimeout time.Duration
	// Rand returns a number in [0, 1) for the jitter; nil: math/rand.
	Rand func() float64
}

// State is a snapshot of the loop.
type State struct {
	Held     bool
	Port     uint16
	Renewed  time.Time // last successful acquisition or renewal
	Expires  time.Time
	RenewAt  time.Time
	Err      error     // last failure, nil after a success
	Failing  time.Time // first failure of the current run of failures
	Failures int
	Next     time.Time // when the loop will act next
}

// Loop is the renewal state machine.
type Loop struct {
	cfg       Config
	clock     Clock
	cur       Lease // valid while st.Held
	reacquire bool  // the last Renew asked for a new lease

	mu sync.Mutex
	st State
}

// New returns a loop; call Run to start it.
func New(cfg Config) *Loop {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.ReleaseTimeout <= 0 {
		cfg.ReleaseTimeout = DefaultReleaseTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &Loop{cfg: cfg, clock: cfg.Clock}
}

// Run keeps the lease until ctx ends, then releases it (with its own
// ReleaseTimeout, since ctx is done) and reports ErrStopped to OnLoss. It
// returns the release error, if any.
func (l *Loop) Run(ctx context.Context) error {
	for {
		next := l.step(ctx)
		if ctx.Err() != nil {
			return l.stop(ctx)
		}
		if d := next.Sub(l.clock.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return l.stop(ctx)
			case <-l.clock.After(d):
			}
		}
	}
}

// State returns a snapshot.
func (l *Loop) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

// Port is the forwarded port, 0 while there is none.
func (l *Loop) Port() uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.st.Held {
		return 0
	}
	return l.st.Port
}

// step does whatever is due now and returns when to call it again.
func (l *Loop) step(ctx context.Context) time.Time {
	now := l.clock.Now()
	st := l.State()
	if st.Held && !now.Before(st.Expires) {
		l.lose(&ExpiredError{Port: st.Port, Since: st.Failing, Err: st.Err})
		st = l.State()
	}
	if !st.Held {
		lease, err := l.call(ctx, now.Add(l.cfg.CallTimeout), func(c context.Context) (Lease, error) {
			return l.cfg.Provider.Acquire(c)
		})
		return l.done(ctx, lease, err)
	}
	lease, err := l.call(ctx, st.Expires, l.renew)
	return l.done(ctx, lease, err)
}

// renew renews the current lease, or acquires a new one when the
// provider said the current one is beyond renewal.
func (l *Loop) renew(ctx context.Context) (Lease, error) {
	if !l.reacquire {
		lease, err := l.cfg.Provider.Renew(ctx, l.cur)
		if !errors.Is(err, ErrReacquire) {
			return lease, err
		}
		l.logf("lease: port %d cannot be renewed (%v); acquiring a new one", l.cur.Port, err)
		l.reacquire = true
	}
	return l.cfg.Provider.Acquire(ctx)
}

func (l *Loop) call(ctx context.Context, deadline time.Time, f func(context.Context) (Lease, error)) (Lease, error) {
	if d := l.clock.Now().Add(l.cfg.CallTimeout); d.Before(deadline) {
		deadline = d
	}
	// The deadline is in the loop's clock; a context needs real time.
	c, cancel := context.WithTimeout(ctx, deadline.Sub(l.clock.Now()))
	defer cancel()
	lease, err := f(c)
	if err == nil && lease.Port == 0 {
		err = errors.New("provider returned port 0")
	}
	if err == nil && lease.Lifetime <= 0 {
		err = fmt.Errorf("provider returned port %d with lifetime %v", lease.Port, lease.Lifetime)
	}
	return lease, err
}

// done records the outcome of a call and schedules the next step.
func (l *Loop) done(ctx context.Context, lease Lease, err error) time.Time {
	now := l.clock.Now()
	if err != nil {
		if ctx.Err() != nil {
			return now // stopping; Run sees it
		}
		return l.fail(now, err)
	}
	l.mu.Lock()
	old := uint16(0)
	if l.st.Held {
		old = l.st.Port
	}
	renewAfter := lease.RenewAfter
	if renewAfter <= 0 || renewAfter > lease.Lifetime {
		renewAfter = lease.Lifetime * 3 / 4
	}
	l.cur, l.reacquire = lease, false
	l.st = State{
		Held: true, Port: lease.Port, Renewed: now,
		Expires: now.Add(lease.Lifetime), RenewAt: now.Add(renewAfter), Next: now.Add(renewAfter),
	}
	l.mu.Unlock()
	if old != lease.Port {
		l.logf("lease: port %d → %d", old, lease.Port)
		if l.cfg.OnChange != nil {
			l.cfg.OnChange(old, lease.Port)
		}
	}
	return now.Add(renewAfter)
}

func (l *Loop) fail(now time.Time, err error) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Failures == 0 {
		l.st.Failing = now
	}
	l.st.Failures++
	l.st.Err = err
	b := l.cfg.MinBackoff << min(l.st.Failures-1, 30)
	if b <= 0 || b > l.cfg.MaxBackoff {
		b = l.cfg.MaxBackoff
	}
	wait := b/2 + time.Duration(l.cfg.Rand()*float64(b/2))
	next := now.Add(wait)
	if l.st.Held && next.After(l.st.Expires) {
		next = l.st.Expires // the last try is due at expiry, not after it
	}
	l.st.Next = next
	l.logf("lease: %v (failure %d, next try in %v)", err, l.st.Failures, next.Sub(now).Round(time.Millisecond))
	return next
}

// lose drops the lease and reports why, keeping the failure count so the
// backoff continues.
func (l *Loop) lose(reason error) {
	l.mu.Lock()
	port := l.st.Port
	l.st.Held = false
	l.mu.Unlock()
	l.reacquire = false
	l.logf("lease: lost port %d: %v", port, reason)
	if l.cfg.OnLoss != nil {
		l.cfg.OnLoss(reason)
	}
}

func (l *Loop) stop(ctx context.Context) error {
	st := l.State()
	if !st.Held {
		return nil
	}
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ReleaseTimeout)
	defer cancel()
	err := l.cfg.Provider.Release(c, l.cur)
	l.lose(ErrStopped)
	if err != nil {
		return fmt.Errorf("release port %d: %w", st.Port, err)
	}
	return nil
}

func (l *Loop) logf(format string, args ...any) {
	if l.cfg.Logf != nil {
		l.cfg.Logf(format, args...)
	}
}

// Status is a one-line summary for systemd's STATUS=, e.g. "port 38534,
// renewed 12 s ago" or "no lease: <error> (next try in 8 s)".
func (l *Loop) Status() string {
	st := l.State()
	now := l.clock.Now()
	errText := ""
	if st.Err != nil {
		errText = strings.Join(strings.Fields(st.Err.Error()), " ") // one line
	}
	switch {
	case st.Held && st.Err == nil:
		return fmt.Sprintf("port %d, renewed %s ago", st.Port, ago(now.Sub(st.Renewed)))
	case st.Held:
		return fmt.Sprintf("port %d, renewal failing: %s (expires in %s)", st.Port, errText, ago(st.Expires.Sub(now)))
	case st.Err != nil:
		return fmt.Sprintf("no lease: %s (next try in %s)", errText, ago(st.Next.Sub(now)))
	}
	return "no lease yet: acquiring a port"
}

// ago formats a duration for humans: seconds up to two minutes, then
// minutes.
func ago(d time.Duration) string {
	d = max(d, 0)
	if d < 2*time.Minute {
		return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
	}
	return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
}
