package status

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Supervisor is what the tunnel helper (vpn-wg@NAME, internal/tunnel)
// reports in its state file: the namespace's lifecycle state, why, and
// everything its Prometheus textfile carries (vpnc_* metrics, same names
// in camelCase), so `status --json` and the metrics never disagree.
type Supervisor struct {
	File string `json:"file"`
	// MetricsFile is the helper's Prometheus textfile (node_exporter's
	// textfile collector reads it).
	MetricsFile string `json:"metricsFile"`
	// Present is false when there is no state file (vpn-wg@ has not run
	// since boot); Error says why an existing one could not be read.
	Present bool   `json:"present"`
	Error   string `json:"error,omitempty"`
	// Current is false when the file was written by a process that is not
	// vpn-wg@'s main process now: what it says is history.
	Current bool `json:"current"`
	PID     int  `json:"pid"`
	// Up is vpnc_tunnel_up; State is vpnc_tunnel_state (up, connecting,
	// stalled, blocked), entered at Since (vpnc_tunnel_state_since_seconds).
	Up           bool      `json:"up"`
	State        string    `json:"state"`
	Since        time.Time `json:"since"`
	Reason       string    `json:"reason,omitempty"`
	OnTunnelLoss string    `json:"onTunnelLoss"`
	// PlanHash is the SHA-256 of the plan file the helper runs.
	PlanHash string `json:"planHash"`
	// Failovers (vpnc_endpoint_failovers_total) and Recreations
	// (vpnc_tunnel_recreations_total) count since the helper started.
	Failovers   int   `json:"failovers"`
	Recreations int   `json:"recreations"`
	RxBytes     int64 `json:"rxBytes"`
	TxBytes     int64 `json:"txBytes"`
	// KillSwitchDrops (vpnc_killswitch_dropped_packets_total) by chain.
	KillSwitchDrops map[string]uint64 `json:"killSwitchDrops"`
	// TripwireDrops (vpnc_tripwire_dropped_packets_total) as the helper
	// saw it; status also reads the counter itself (Namespace.Tripwire).
	TripwireDrops *uint64          `json:"tripwireDrops,omitempty"`
	Peers         []SupervisorPeer `json:"peers"`
	// Units are vpnc_confined_unit_active and vpnc_confined_unit_held.
	Units   []SupervisedUnit `json:"units"`
	Updated time.Time        `json:"updated"`
}

// SupervisorPeer is one peer as the watchdog sees it.
type SupervisorPeer struct {
	Endpoint string `json:"endpoint,omitempty"`
	// EndpointIndex counts from 1 (endpoint i of Endpoints).
	EndpointIndex int    `json:"endpointIndex"`
	Endpoints     int    `json:"endpoints"`
	Health        string `json:"health"`
	// HandshakeAge (vpnc_handshake_age_seconds) is taken at the helper's
	// last update; absent before the first handshake.
	LastHandshake *time.Time `json:"lastHandshake,omitempty"`
	HandshakeAge  *int64     `json:"handshakeAgeSeconds,omitempty"`
}

// SupervisedUnit is a confined unit as the helper last saw it.
type SupervisedUnit struct {
	Unit   string `json:"unit"`
	Active bool   `json:"active"`
	// Held is "frozen" or "stopped" while the helper holds it
	// (onTunnelLoss freeze/stop), "" otherwise.
	Held string `json:"held,omitempty"`
}

// collectSupervisor reads vpn-wg@'s state file.
func (c Collector) collectSupervisor(n *Namespace) {
	path := c.Paths.InRuntime(tunnel.StatePath(n.Name))
	s, err := tunnel.LoadState(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		n.Supervisor = &Supervisor{File: path}
	case err != nil:
		n.Supervisor = &Supervisor{File: path, Error: err.Error()}
	default:
		n.Supervisor = supervisorFrom(path, s)
		n.Supervisor.MetricsFile = c.Paths.InRuntime(plan.MetricsPath(n.Name))
		if wg := n.unit(units.WgTemplate); wg != nil {
			n.Supervisor.Current = wg.ActiveState == "active" && wg.MainPID == s.PID
		}
	}
}

// supervisorFrom converts the helper's state (Current is left false).
func supervisorFrom(path string, s *tunnel.State) *Supervisor {
	out := &Supervisor{File: path, Present: true, PID: s.PID, Up: s.State == tunnel.StateUp, State: s.State, Since: s.Since,
		Reason: s.Reason, OnTunnelLoss: s.OnTunnelLoss, PlanHash: s.PlanHash, Failovers: s.Failovers, Recreations: s.Recreations,
		RxBytes: s.RxBytes, TxBytes: s.TxBytes, KillSwitchDrops: s.KillSwitchDrops, TripwireDrops: s.TripwireDrops,
		Peers: []SupervisorPeer{}, Units: []SupervisedUnit{}, Updated: s.Updated}
	if out.KillSwitchDrops == nil {
		out.KillSwitchDrops = map[string]uint64{}
	}
	for _, p := range s.Peers {
		sp := SupervisorPeer{Endpoint: p.Endpoint, EndpointIndex: p.EndpointIndex + 1, Endpoints: p.Endpoints, Health: p.Health}
		if !p.LastHandshake.IsZero() {
			hs := p.LastHandshake
			age := int64(s.Updated.Sub(hs) / time.Second)
			sp.LastHandshake, sp.HandshakeAge = &hs, &age
		}
		out.Peers = append(out.Peers, sp)
	}
	for _, u := range s.Units {
		out.Units = append(out.Units, SupervisedUnit{Unit: u.Unit, Active: u.Active == "active", Held: u.Held})
	}
	return out
}

// supervisor assesses the helper's report: a blocked or stalled tunnel
// is a problem (the services have no way out), connecting a note.
func (a *assessor) supervisor(now time.Time) {
	n := a.n
	s := n.Supervisor
	wg := units.Instance(units.WgTemplate, n.Name)
	if s == nil {
		return
	}
	if s.Error != "" {
		n.Errors = append(n.Errors, "tunnel helper state: "+s.Error)
		return
	}
	if !s.Present || !n.Netns.Present {
		return
	}
	if !s.Current {
		a.note("the tunnel helper's state file (%s) was written by PID %d, which is not %s's main process: it is not current", s.File, s.PID, wg)
		return
	}
	since := sinceText(s.Since, now)
	switch s.State {
	case tunnel.StateBlocked:
		a.problem(StateDegraded, "tunnel blocked since %s: %s; confined services have no way out (onTunnelLoss %s); see: journalctl -u %s", since, orUnknown(s.Reason), s.OnTunnelLoss, wg)
	case tunnel.StateStalled:
		a.problem(StateDegraded, "tunnel stalled since %s: %s; the watchdog re-resolves and fails over (onTunnelLoss %s); see: journalctl -u %s", since, orUnknown(s.Reason), s.OnTunnelLoss, wg)
	case tunnel.StateConnecting:
		a.note("tunnel connecting since %s: %s", since, orUnknown(s.Reason))
	}
	var held []string
	for _, u := range s.Units {
		if u.Held != "" {
			held = append(held, u.Unit+" ("+u.Held+")")
		}
	}
	if len(held) > 0 {
		a.note("held by the tunnel helper until the tunnel is up: %s", strings.Join(held, ", "))
	}
}

// writeSupervisor is the "lifecycle" row.
func (n *Namespace) writeSupervisor(p printer, now time.Time) {
	s := n.Supervisor
	if s == nil || !n.Netns.Present {
		return
	}
	if !s.Present {
		p.row("lifecycle", "no report from the tunnel helper yet (%s)", s.File)
		return
	}
	if s.Error != "" {
		return
	}
	cur := ""
	if !s.Current {
		cur = " (not current: written by PID " + fmt.Sprint(s.PID) + ")"
	}
	p.row("lifecycle", "%s since %s%s, onTunnelLoss %s, %s, %s%s", s.State, sinceText(s.Since, now), prefixed(": ", s.Reason),
		s.OnTunnelLoss, plural(s.Failovers, "failover"), plural(s.Recreations, "recreation"), cur)
	for i, peer := range s.Peers {
		hs := "never"
		if peer.HandshakeAge != nil {
			hs = durationText(time.Duration(*peer.HandshakeAge)*time.Second) + " ago"
		}
		ep := peer.Endpoint
		if ep == "" {
			ep = "(none)"
		}
		p.more("peer %d: %s, endpoint %d of %d %s, handshake %s", i+1, peer.Health, peer.EndpointIndex, peer.Endpoints, ep, hs)
	}
	if len(s.KillSwitchDrops) > 0 {
		var ks []string
		for _, c := range sortedKeys(s.KillSwitchDrops) {
			ks = append(ks, fmt.Sprintf("%s %d", c, s.KillSwitchDrops[c]))
		}
		p.more("kill switch dropped (packets): %s", strings.Join(ks, ", "))
	}
	for _, u := range s.Units {
		if u.Held != "" {
			p.more("%s held: %s", u.Unit, u.Held)
		}
	}
}

func sinceText(t, now time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.Local().Format("2006-01-02 15:04:05") + " (" + durationText(now.Sub(t)) + " ago)"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
