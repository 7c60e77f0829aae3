package apps

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Syncer keeps an Adapter's port equal to the wanted one, on its own
// goroutine, so that the lease loop's callbacks (which must not block)
// only record a wish: Set(port) on a change, Set(0) on a loss. The latest
// wish wins; failures (client not up yet, restarting, wrong password) are
// retried with backoff; and the port is re-read every Verify interval, so
// a client that restarted with an old configuration is corrected.
type Syncer struct {
	Adapter Adapter
	Name    string // for logs and Status, e.g. "qbittorrent"
	Logf    func(format string, args ...any)
	// MinRetry doubling up to MaxRetry (defaults 1 s and 60 s), each wait
	// drawn from [b/2, b].
	MinRetry, MaxRetry time.Duration
	// Verify is the re-check interval while in sync; 0 means 5 min,
	// negative means never.
	Verify time.Duration
	// CallTimeout bounds one adapter call (default 30 s).
	CallTimeout time.Duration

	mu      sync.Mutex
	want    uint16
	pending bool // want has not been applied yet
	wake    chan struct{}
	status  string
}

// Set records the wanted port (0: closed, see Adapter.Close). It never
// blocks.
func (s *Syncer) Set(port uint16) {
	s.mu.Lock()
	s.want, s.pending = port, true
	s.ensureWake()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Syncer) ensureWake() {
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
}

// Status is a one-line summary, e.g. "qbittorrent: port 38534" or
// "qbittorrent: setting port 38534 failing: ...".
func (s *Syncer) Status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == "" {
		return s.Name + ": nothing to set yet"
	}
	return s.Name + ": " + s.status
}

// Run applies wishes until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	s.mu.Lock()
	s.ensureWake()
	wake := s.wake
	s.mu.Unlock()
	minR, maxR := s.MinRetry, s.MaxRetry
	if minR <= 0 {
		minR = time.Second
	}
	if maxR <= 0 {
		maxR = time.Minute
	}
	verify := s.Verify
	if verify == 0 {
		verify = 5 * time.Minute
	}
	failures := 0
	var timer <-chan time.Time
	for {
		s.mu.Lock()
		want, pending := s.want, s.pending
		s.mu.Unlock()
		if pending {
			timer = nil
			if err := s.apply(ctx, want); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				b := min(minR<<min(failures-1, 30), maxR)
				if b <= 0 {
					b = maxR
				}
				wait := b/2 + time.Duration(rand.Float64()*float64(b/2))
				s.record(fmt.Sprintf("%s failing (retry in %v): %s", describe(want), wait.Round(time.Millisecond), oneLine(err)))
				timer = time.After(wait)
			} else {
				failures = 0
				s.record(describe(want))
				s.mu.Lock()
				if s.want == want {
					s.pending = false
				}
				s.mu.Unlock()
				if verify > 0 && want != 0 {
					timer = time.After(verify)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer:
			timer = nil
			if failures > 0 {
				s.mu.Lock()
				s.pending = true
				s.mu.Unlock()
				continue
			}
			s.check(ctx)
			if verify > 0 {
				timer = time.After(verify)
			}
		}
	}
}

// check re-reads the port and re-applies it when the client drifted.
func (s *Syncer) check(ctx context.Context) {
	s.mu.Lock()
	want := s.want
	s.mu.Unlock()
	if want == 0 {
		return
	}
	c, cancel := s.callCtx(ctx)
	defer cancel()
	got, err := s.Adapter.Port(c)
	if err == nil && got == want {
		return
	}
	if err != nil {
		s.logf("%s: re-checking port %d: %v", s.Name, want, err)
	} else {
		s.logf("%s: listens on %d, not %d (restarted with an old setting?); setting it again", s.Name, got, want)
	}
	s.mu.Lock()
	s.pending = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Syncer) apply(ctx context.Context, want uint16) error {
	c, cancel := s.callCtx(ctx)
	defer cancel()
	if want == 0 {
		return s.Adapter.Close(c)
	}
	return s.Adapter.SetPort(c, want)
}

func (s *Syncer) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := s.CallTimeout
	if t <= 0 {
		t = 30 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

func (s *Syncer) record(status string) {
	s.mu.Lock()
	changed := s.status != status
	s.status = status
	s.mu.Unlock()
	if changed {
		s.logf("%s: %s", s.Name, status)
	}
}

func (s *Syncer) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func describe(port uint16) string {
	if port == 0 {
		return "closed"
	}
	return fmt.Sprintf("port %d", port)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
