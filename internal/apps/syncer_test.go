package apps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeApp records calls; fail makes the next n SetPort calls fail.
type fakeApp struct {
	mu     sync.Mutex
	port   uint16
	fail   int
	calls  []string
	closed bool
}

func (a *fakeApp) SetPort(_ context.Context, p uint16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("set %d", p))
	if a.fail > 0 {
		a.fail--
		return errors.New("connection refused")
	}
	a.port, a.closed = p, false
	return nil
}

func (a *fakeApp) Port(context.Context) (uint16, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "get")
	return a.port, nil
}

func (a *fakeApp) Close(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "close")
	a.closed = true
	return nil
}

func (a *fakeApp) state() (uint16, bool, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.port, a.closed, append([]string(nil), a.calls...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func start(t *testing.T, s *Syncer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestSyncerRetriesAndLatestWins(t *testing.T) {
	app := &fakeApp{fail: 3}
	s := &Syncer{Adapter: app, Name: "app", MinRetry: time.Millisecond, MaxRetry: 4 * time.Millisecond, Verify: -1}
	s.Set(38534) // before Run: kept
	start(t, s)
	waitFor(t, "port 38534", func() bool { p, _, _ := app.state(); return p == 38534 })
	if _, _, calls := app.state(); strings.Join(calls, ",") != "set 38534,set 38534,set 38534,set 38534" {
		t.Errorf("calls %v", calls)
	}
	if got := s.Status(); got != "app: port 38534" {
		t.Errorf("status %q", got)
	}
	s.Set(40000)
	s.Set(40001) // may or may not see 40000 first; 40001 must win
	waitFor(t, "port 40001", func() bool { p, _, _ := app.state(); return p == 40001 })
	s.Set(0)
	waitFor(t, "closed", func() bool { _, c, _ := app.state(); return c })
	if got := s.Status(); got != "app: closed" {
		t.Errorf("status %q", got)
	}
}

func TestSyncerFailingStatus(t *testing.T) {
	app := &fakeApp{fail: 1 << 30}
	s := &Syncer{Adapter: app, Name: "app", MinRetry: time.Hour, Verify: -1}
	start(t, s)
	s.Set(5)
	waitFor(t, "a failure", func() bool { return strings.Contains(s.Status(), "failing") })
	if got := s.Status(); !strings.HasPrefix(got, "app: port 5 failing (retry in ") || !strings.HasSuffix(got, "): connection refused") {
		t.Errorf("status %q", got)
	}
}

// TestSyncerVerify: the client restarted with its old port; the periodic
// re-check sets the port again.
func TestSyncerVerify(t *testing.T) {
	app := &fakeApp{}
	var mu sync.Mutex
	var logs []string
	s := &Syncer{Adapter: app, Name: "app", Verify: 5 * time.Millisecond,
		Logf: func(f string, a ...any) { mu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); mu.Unlock() }}
	start(t, s)
	s.Set(38534)
	waitFor(t, "port 38534", func() bool { p, _, _ := app.state(); return p == 38534 })
	app.mu.Lock()
	app.port = 6881
	app.mu.Unlock()
	waitFor(t, "port 38534 again", func() bool { p, _, _ := app.state(); return p == 38534 })
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "listens on 6881, not 38534") {
		t.Errorf("logs %q", logs)
	}
}
