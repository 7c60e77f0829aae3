package tunnel

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// The tunnel unit restarts its helper at once (RestartSec=0): a killed or
// crashed helper is replaced in one process start, which is most of the
// recovery time (P6). The price of an immediate restart is a crash loop
// when the helper cannot even get its device up (a plan it refuses, a
// namespace that vanished while vpn-ns@ is active): systemd 252 has no
// growing RestartSec (RestartSteps= is 254+), and StartLimitIntervalSec=0
// (never give up) removes the only brake. So the helper brakes itself:
// each start records itself, and a start whose predecessor never had a
// working device waits, doubling from 250 ms to 30 s. A predecessor that
// had its device up (it was killed or lost it later) is replaced at once;
// one that had it up but lived less than a second waits 100 ms, which is
// what RestartSec= used to give every restart.

// RestartPath is where the helper of namespace name records its starts.
func RestartPath(name string) string { return filepath.Join(plan.PrivatePath(name), "restart.json") }

// restartRecord is the last start of a tunnel helper.
type restartRecord struct {
	Start    time.Time `json:"start"`
	Healthy  bool      `json:"healthy"`
	Failures int       `json:"failures"`
}

const (
	restartFirst      = 250 * time.Millisecond
	restartMax        = 30 * time.Second
	restartQuick      = 100 * time.Millisecond
	restartShortLived = time.Second
	// A predecessor that ran this long is not part of a crash loop even
	// if its device never came up (it was retrying inside, blocked).
	restartForget = 5 * time.Minute
)

// restartDelay is the pure rule: how long a start at now waits, and the
// failure count it records, given its predecessor (nil: none). Failures
// back off like lost tunnels do (Backoff: doubling, capped, ±10 % jitter).
func restartDelay(prev *restartRecord, now time.Time) (time.Duration, int) {
	if prev == nil {
		return 0, 0
	}
	lived := now.Sub(prev.Start)
	switch {
	case prev.Healthy && lived >= restartShortLived:
		return 0, 0
	case prev.Healthy:
		return restartQuick, 0
	case lived >= restartForget || lived < 0:
		return 0, 0
	}
	n := prev.Failures + 1
	b := Backoff{First: restartFirst, Max: restartMax, n: n}
	return b.Next(), n
}

// RestartThrottle is one helper process's record (Options.Restart).
type RestartThrottle struct {
	path string
	rec  restartRecord
}

// ThrottleStart records this start and waits out the crash-loop delay
// (false: ctx ended while waiting). An unreadable or unwritable record
// costs a fixed restartFirst: a loop must never spin at full speed.
func ThrottleStart(ctx context.Context, path string, log *journal.Logger, notify func(string)) (*RestartThrottle, bool) {
	now := time.Now()
	prev, err := loadRestart(path)
	delay, n := restartDelay(prev, now)
	if err != nil {
		log.Warnf("read %s: %v", path, err)
		delay = restartFirst
	}
	t := &RestartThrottle{path: path, rec: restartRecord{Start: now, Failures: n}}
	if err := t.save(); err != nil {
		log.Warnf("record this start in %s: %v", path, err)
		delay = max(delay, restartFirst)
	}
	if delay == 0 {
		return t, true
	}
	if n > 0 {
		log.Warnf("the previous tunnel helper exited before its tunnel was up (%d in a row): waiting %s before this start", n, delay.Round(time.Millisecond))
	}
	notify(fmt.Sprintf("STATUS=waiting %s before starting (restart backoff)", delay.Round(time.Millisecond)))
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return t, false
	case <-timer.C:
		return t, true
	}
}

// healthy records that this helper had a working device: its successor
// starts at once.
func (t *RestartThrottle) healthy(log *journal.Logger) {
	if t == nil || t.rec.Healthy {
		return
	}
	t.rec.Healthy, t.rec.Failures = true, 0
	if err := t.save(); err != nil {
		log.Warnf("record a working tunnel in %s: %v", t.path, err)
	}
}

func (t *RestartThrottle) save() error {
	b, err := json.Marshal(t.rec)
	if err != nil {
		return err
	}
	return writeAtomic(t.path, b, 0o600)
}

func loadRestart(path string) (*restartRecord, error) {
	var r restartRecord
	if found, err := loadJSON(path, &r); !found || err != nil {
		return nil, err
	}
	return &r, nil
}
