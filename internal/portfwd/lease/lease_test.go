package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock jumps: After(d) moves time forward by d and fires at once, so
// Run executes on the test's goroutine with no real waiting.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// result is one scripted provider answer.
type result struct {
	port  uint16
	err   error
	delay time.Duration // how long the call takes (fake time)
}

// provider answers from scripts and records a timeline; when a script
// runs out it cancels the loop.
type provider struct {
	t       *testing.T
	clock   *fakeClock
	cancel  context.CancelFunc
	acquire []result
	renew   []result
	life    time.Duration
	renewIn time.Duration
	log     []string
}

func (p *provider) at() string { return fmt.Sprintf("%3.0fs", p.clock.now.Sub(t0).Seconds()) }

func (p *provider) next(kind string, script *[]result) (Lease, error) {
	if len(*script) == 0 {
		p.log = append(p.log, p.at()+" "+kind+": script done")
		p.cancel()
		return Lease{}, context.Canceled
	}
	r := (*script)[0]
	*script = (*script)[1:]
	p.clock.now = p.clock.now.Add(r.delay)
	if r.err != nil {
		p.log = append(p.log, fmt.Sprintf("%s %s: %v", p.at(), kind, r.err))
		return Lease{}, r.err
	}
	p.log = append(p.log, fmt.Sprintf("%s %s: %d", p.at(), kind, r.port))
	return Lease{Port: r.port, Lifetime: p.life, RenewAfter: p.renewIn}, nil
}

func (p *provider) Acquire(ctx context.Context) (Lease, error) { return p.next("acquire", &p.acquire) }
func (p *provider) Renew(ctx context.Context, cur Lease) (Lease, error) {
	if cur.Port == 0 {
		p.t.Error("Renew without a lease")
	}
	return p.next("renew", &p.renew)
}
func (p *provider) Release(ctx context.Context, cur Lease) error {
	if ctx.Err() != nil {
		p.t.Error("Release got a dead context")
	}
	p.log = append(p.log, fmt.Sprintf("%s release %d", p.at(), cur.Port))
	return nil
}

// run drives a loop over p until p's scripts are done; rand is fixed at
// 0.5 (waits are 3/4 of the backoff) unless the test changes cfg.
func run(t *testing.T, p *provider, edit func(*Config)) *Loop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.t, p.cancel = t, cancel
	if p.clock == nil {
		p.clock = &fakeClock{now: t0}
	}
	if p.life == 0 {
		p.life = 60 * time.Second
	}
	cfg := Config{
		Provider: p,
		Clock:    p.clock,
		Rand:     func() float64 { return 0.5 },
		OnChange: func(old, new uint16) {
			p.log = append(p.log, fmt.Sprintf("%s change %d → %d", p.at(), old, new))
		},
		OnLoss: func(reason error) { p.log = append(p.log, fmt.Sprintf("%s loss: %v", p.at(), reason)) },
	}
	if edit != nil {
		edit(&cfg)
	}
	l := New(cfg)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not finish")
	}
	return l
}

func check(t *testing.T, want []string, p *provider) {
	t.Helper()
	if diff := cmp.Diff(want, p.log); diff != "" {
		t.Errorf("timeline mismatch (-want +got):\n%s", diff)
	}
}

var errGW = errors.New("gateway refused")

// TestNATPMPSchedule: a 60 s lifetime is renewed every 45 s.
func TestNATPMPSchedule(t *testing.T) {
	p := &provider{acquire: []result{{port: 38534}}, renew: []result{{port: 38534}, {port: 38534}}}
	run(t, p, nil)
	check(t, []string{
		"  0s acquire: 38534",
		"  0s change 0 → 38534",
		" 45s renew: 38534",
		" 90s renew: 38534",
		"135s renew: script done",
		"135s release 38534",
		"135s loss: port forwarding stopped",
	}, p)
}

// TestPIASchedule: RenewAfter overrides the 3/4 rule.
func TestPIASchedule(t *testing.T) {
	p := &provider{life: 30 * time.Minute, renewIn: 15 * time.Minute,
		acquire: []result{{port: 50000}}, renew: []result{{port: 50000}}}
	run(t, p, nil)
	check(t, []string{
		"  0s acquire: 50000",
		"  0s change 0 → 50000",
		"900s renew: 50000",
		"1800s renew: script done",
		"1800s release 50000",
		"1800s loss: port forwarding stopped",
	}, p)
}

func TestPortChange(t *testing.T) {
	p := &provider{acquire: []result{{port: 38534}}, renew: []result{{port: 38534}, {port: 40000}}}
	run(t, p, nil)
	check(t, []string{
		"  0s acquire: 38534",
		"  0s change 0 → 38534",
		" 45s renew: 38534",
		" 90s renew: 40000",
		" 90s change 38534 → 40000",
		"135s renew: script done",
		"135s release 40000",
		"135s loss: port forwarding stopped",
	}, p)
}

// TestRenewalRecovers: failures before expiry are retried with backoff
// (rand 0.5: 0.75 s, 1.5 s, 3 s) and the lease is kept.
func TestRenewalRecovers(t *testing.T) {
	p := &provider{acquire: []result{{port: 38534}},
		renew: []result{{err: errGW}, {err: errGW}, {err: errGW}, {port: 38534}}}
	l := run(t, p, nil)
	check(t, []string{
		"  0s acquire: 38534",
		"  0s change 0 → 38534",
		" 45s renew: gateway refused",
		" 46s renew: gateway refused", // 45.75
		" 47s renew: gateway refused", // 47.25
		" 50s renew: 38534",           // 50.25
		" 95s renew: script done",
		" 95s release 38534",
		" 95s loss: port forwarding stopped",
	}, p)
	if st := l.State(); st.Failures != 0 || st.Err != nil {
		t.Errorf("state after recovery %+v", st)
	}
}

// TestLossAndReacquire: renewal fails until the lease expires (the last
// try exactly at expiry), the loss is reported with the cause, and the
// loop goes back to acquiring with the backoff continuing.
func TestLossAndReacquire(t *testing.T) {
	fail := result{err: errGW}
	p := &provider{
		acquire: []result{{port: 38534}, fail, {port: 41000}},
		renew:   []result{fail, fail, fail, fail, fail},
	}
	run(t, p, nil)
	check(t, []string{
		"  0s acquire: 38534",
		"  0s change 0 → 38534",
		" 45s renew: gateway refused",
		" 46s renew: gateway refused", // +0.75
		" 47s renew: gateway refused", // +1.5
		" 50s renew: gateway refused", // +3
		" 56s renew: gateway refused", // +6 = 56.25; +12 would pass expiry, so next at 60
		" 60s loss: lease of port 38534 expired, renewal failing since 03:04:50: gateway refused",
		" 60s acquire: gateway refused",
		" 84s acquire: 41000", // failure 6: 32 s, 3/4 of it
		" 84s change 0 → 41000",
		"129s renew: script done",
		"129s release 41000",
		"129s loss: port forwarding stopped",
	}, p)
}

func TestReacquire(t *testing.T) {
	busy := fmt.Errorf("port 50000 is busy: %w", ErrReacquire)
	p := &provider{
		acquire: []result{{port: 50000}, {err: errGW}, {port: 50001}},
		renew:   []result{{err: busy}},
	}
	run(t, p, nil)
	check(t, []string{
		"  0s acquire: 50000",
		"  0s change 0 → 50000",
		" 45s renew: port 50000 is busy: lease cannot be renewed, acquire a new one",
		" 45s acquire: gateway refused", // at once, in the same step
		" 46s acquire: 50001",           // the retry acquires, not renews
		" 46s change 50000 → 50001",
		" 91s renew: script done",
		" 91s release 50001",
		" 91s loss: port forwarding stopped",
	}, p)
}

// TestBackoff checks the schedule of acquisition failures: doubling from
// MinBackoff, capped at MaxBackoff, each wait in [b/2, b].
func TestBackoff(t *testing.T) {
	for _, r := range []struct {
		rand float64
		want []float64
	}{
		{0, []float64{0.5, 1, 2, 4, 8, 16, 30, 30, 30}},
		{0.999999, []float64{1, 2, 4, 8, 16, 32, 60, 60, 60}},
	} {
		var script []result
		for range len(r.want) + 1 {
			script = append(script, result{err: errGW})
		}
		p := &provider{acquire: script}
		var times []time.Time
		run(t, p, func(c *Config) {
			c.Rand = func() float64 { return r.rand }
			c.Logf = func(string, ...any) { times = append(times, p.clock.now) }
		})
		var got []float64
		for i := 1; i < len(times); i++ {
			got = append(got, times[i].Sub(times[i-1]).Round(time.Millisecond).Seconds())
		}
		if diff := cmp.Diff(r.want, got); diff != "" {
			t.Errorf("rand %v: waits (-want +got):\n%s", r.rand, diff)
		}
	}
}

// TestSlowCallCutAtExpiry: a renewal call is given only until expiry.
func TestSlowCallCutAtExpiry(t *testing.T) {
	var deadlines []time.Duration
	p := &slowProvider{deadlines: &deadlines}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	clock := &fakeClock{now: t0}
	p.clock = clock
	l := New(Config{Provider: p, Clock: clock, CallTimeout: 30 * time.Second})
	l.Run(ctx)
	// Acquire: the call timeout. Renew at 45 s: 15 s left until expiry.
	want := []time.Duration{30 * time.Second, 15 * time.Second}
	if diff := cmp.Diff(want, deadlines); diff != "" {
		t.Errorf("call deadlines (-want +got):\n%s", diff)
	}
}

type slowProvider struct {
	clock     *fakeClock
	cancel    context.CancelFunc
	deadlines *[]time.Duration
}

func (p *slowProvider) record(ctx context.Context) {
	d, _ := ctx.Deadline()
	*p.deadlines = append(*p.deadlines, time.Until(d).Round(time.Second))
}
func (p *slowProvider) Acquire(ctx context.Context) (Lease, error) {
	p.record(ctx)
	return Lease{Port: 1, Lifetime: time.Minute}, nil
}
func (p *slowProvider) Renew(ctx context.Context, _ Lease) (Lease, error) {
	p.record(ctx)
	p.cancel()
	return Lease{}, ctx.Err()
}
func (p *slowProvider) Release(context.Context, Lease) error { return nil }

func TestBadLeases(t *testing.T) {
	for _, tt := range []struct {
		lease Lease
		want  string
	}{
		{Lease{Port: 0, Lifetime: time.Minute}, "port 0"},
		{Lease{Port: 5, Lifetime: 0}, "lifetime 0s"},
	} {
		clock := &fakeClock{now: t0}
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		p := funcProvider(func() (Lease, error) {
			calls++
			if calls > 1 {
				cancel()
				return Lease{}, ctx.Err()
			}
			return tt.lease, nil
		})
		var changed bool
		l := New(Config{Provider: p, Clock: clock, OnChange: func(_, _ uint16) { changed = true }})
		l.step(ctx)
		if st := l.State(); st.Held || changed || st.Err == nil || !strings.Contains(st.Err.Error(), tt.want) {
			t.Errorf("lease %+v: state %+v", tt.lease, st)
		}
		cancel()
	}
}

type funcProvider func() (Lease, error)

func (f funcProvider) Acquire(context.Context) (Lease, error)      { return f() }
func (f funcProvider) Renew(context.Context, Lease) (Lease, error) { return f() }
func (f funcProvider) Release(context.Context, Lease) error        { return nil }

// TestStatus walks the loop step by step and reads the STATUS= line.
func TestStatus(t *testing.T) {
	clock := &fakeClock{now: t0}
	p := &provider{clock: clock, life: time.Minute,
		acquire: []result{{err: errors.New("connection refused:\nno NAT-PMP")}, {port: 38534}}}
	p.t, p.cancel = t, func() {}
	l := New(Config{Provider: p, Clock: clock, Rand: func() float64 { return 0.5 }})
	ctx := context.Background()
	if got, want := l.Status(), "no lease yet: acquiring a port"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	clock.now = l.step(ctx)
	if got, want := l.Status(), "no lease: connection refused: no NAT-PMP (next try in 0 s)"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	clock.now = t0
	if got, want := l.Status(), "no lease: connection refused: no NAT-PMP (next try in 1 s)"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	clock.now = l.State().Next
	next := l.step(ctx)
	clock.now = clock.now.Add(12 * time.Second)
	if got, want := l.Status(), "port 38534, renewed 12 s ago"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	p.renew = []result{{err: errGW}}
	clock.now = next
	l.step(ctx)
	if got, want := l.Status(), "port 38534, renewal failing: gateway refused (expires in 15 s)"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	if l.Port() != 38534 {
		t.Errorf("Port() = %d", l.Port())
	}
	if got := ago(3*time.Minute + 20*time.Second); got != "3 min" {
		t.Errorf("ago = %q", got)
	}
}

// TestRealClock runs the loop on real time with a 40 ms lease: renewals
// happen every 30 ms until the context ends, then the lease is released.
func TestRealClock(t *testing.T) {
	var mu sync.Mutex
	renewals, released := 0, false
	p := &realProvider{renew: func() { mu.Lock(); renewals++; mu.Unlock() }, release: func() { released = true }}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var lost error
	l := New(Config{Provider: p, OnLoss: func(err error) { lost = err }})
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if renewals < 3 || !released || !errors.Is(lost, ErrStopped) {
		t.Errorf("%d renewals, released %v, lost %v", renewals, released, lost)
	}
}

type realProvider struct{ renew, release func() }

func (p *realProvider) Acquire(context.Context) (Lease, error) {
	return Lease{Port: 1, Lifetime: 40 * time.Millisecond}, nil
}
func (p *realProvider) Renew(context.Context, Lease) (Lease, error) {
	p.renew()
	return Lease{Port: 1, Lifetime: 40 * time.Millisecond}, nil
}
func (p *realProvider) Release(context.Context, Lease) error { p.release(); return nil }
