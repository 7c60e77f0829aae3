//go:build linux

package tunnel

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// TestTripwireAlarm: an alert line when the counter grows, and at the
// first reading of a non-zero counter; nothing while it stays.
func TestTripwireAlarm(t *testing.T) {
	var b bytes.Buffer
	s := &Supervisor{n: &plan.Namespace{Name: "media"}, log: journal.NewWriter(&b, false)}
	for _, tc := range []struct {
		v    uint64
		want string
	}{
		{0, ""},
		{0, ""},
		{3, "tripwire: 3 packets of confined units of media dropped in the host's network namespace (3 new)"},
		{3, ""},
		{5, "tripwire: 5 packets of confined units of media dropped in the host's network namespace (2 new)"},
	} {
		b.Reset()
		s.tripwireAlarm(tc.v)
		v := tc.v
		s.state.TripwireDrops = &v
		if got := strings.TrimSpace(b.String()); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("counter %d: logged %q, want %q", tc.v, got, tc.want)
		}
	}
	// A helper started after an escape alerts at once.
	s = &Supervisor{n: &plan.Namespace{Name: "media"}, log: journal.NewWriter(&b, false)}
	b.Reset()
	s.tripwireAlarm(7)
	if !strings.Contains(b.String(), "7 packets") {
		t.Errorf("first reading 7: logged %q", b.String())
	}
	if TripwireCounter(&plan.Namespace{Name: "x", WireGuard: plan.WireGuard{SocketNamespace: "other"}}) != nil {
		t.Error("a helper in another socket namespace cannot read the host's table")
	}
}
