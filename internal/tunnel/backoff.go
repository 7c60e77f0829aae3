package tunnel

import (
	"math/rand/v2"
	"time"
)

// Backoff is the delay before each retry to bring a lost tunnel back: the
// first retry is immediate (a killed device comes back in well under a
// second), then it doubles from First up to Max, with ±20 % jitter so many
// namespaces losing one uplink do not retry in lockstep.
type Backoff struct {
	First, Max time.Duration
	n          int
}

// DefaultBackoff: 0, 250 ms, 500 ms, 1 s, ... capped at 30 s.
func DefaultBackoff() *Backoff { return &Backoff{First: 250 * time.Millisecond, Max: 30 * time.Second} }

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	defer func() { b.n++ }()
	if b.n == 0 {
		return 0
	}
	d := b.First << min(b.n-1, 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	j := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + j
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }
