package tunnel

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
)

func TestRestartDelay(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name  string
		prev  *restartRecord
		delay time.Duration
		n     int
	}{
		{"first start", nil, 0, 0},
		{"killed after it worked", &restartRecord{Start: ago(time.Hour), Healthy: true}, 0, 0},
		{"worked but lived under a second", &restartRecord{Start: ago(300 * time.Millisecond), Healthy: true}, restartQuick, 0},
		{"died before its device was up", &restartRecord{Start: ago(50 * time.Millisecond)}, restartFirst, 1},
		{"third failure in a row", &restartRecord{Start: ago(time.Second), Failures: 2}, 4 * restartFirst, 3},
		{"capped", &restartRecord{Start: ago(time.Second), Failures: 40}, restartMax, 41},
		{"long blocked run is no loop", &restartRecord{Start: ago(10 * time.Minute), Failures: 7}, 0, 0},
		{"clock went back", &restartRecord{Start: now.Add(time.Hour), Failures: 7}, 0, 0},
	} {
		d, n := restartDelay(c.prev, now)
		// Failures carry Backoff's ±10 % jitter.
		if d < c.delay*9/10 || d > c.delay*11/10 || n != c.n {
			t.Errorf("%s: got %s, %d failures; want %s, %d", c.name, d, n, c.delay, c.n)
		}
	}
}

// A helper that dies before its device works brakes its successor; one
// that had a working device does not.
func TestThrottleStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ns", "restart.json")
	log := journal.New(false)
	var status []string
	notify := func(s string) { status = append(status, s) }
	ctx := context.Background()
	start := time.Now()
	if _, ok := ThrottleStart(ctx, path, log, notify); !ok || time.Since(start) > restartFirst/2 {
		t.Fatalf("first start waited %s", time.Since(start))
	}
	// It died before serve marked it healthy: the next one waits.
	start = time.Now()
	th, ok := ThrottleStart(ctx, path, log, notify)
	if waited := time.Since(start); !ok || waited < restartFirst*7/10 {
		t.Fatalf("start after a failed one waited %s, want ~%s", waited, restartFirst)
	}
	if len(status) != 1 {
		t.Errorf("STATUS= lines: %q", status)
	}
	th.rec.Start = th.rec.Start.Add(-2 * time.Second) // it lived 2 s
	th.healthy(log)
	start = time.Now()
	if _, ok := ThrottleStart(ctx, path, log, notify); !ok || time.Since(start) > restartFirst/2 {
		t.Fatalf("start after a healthy one waited %s", time.Since(start))
	}
	// SIGTERM while waiting ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok := ThrottleStart(cctx, path, log, notify); ok {
		t.Error("a cancelled wait reported success")
	}
}
