package tunnel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// State is what the supervisor reports about its namespace: written to
// StatePath for `vpn-confinement status`, and as a Prometheus textfile.
// It holds no key material.
type State struct {
	Namespace    string      `json:"namespace"`
	PID          int         `json:"pid"`
	State        string      `json:"state"` // see the State* constants
	Since        time.Time   `json:"since"`
	Reason       string      `json:"reason,omitempty"`
	Backend      string      `json:"backend,omitempty"`
	Interface    string      `json:"interface"`
	OnTunnelLoss string      `json:"onTunnelLoss"`
	PlanHash     string      `json:"planHash"`
	Peers        []PeerState `json:"peers"`
	RxBytes      int64       `json:"rxBytes"`
	TxBytes      int64       `json:"txBytes"`
	// KillSwitchDrops are the kill switch's drop counters (packets) by
	// chain ("input", "output").
	KillSwitchDrops map[string]uint64 `json:"killSwitchDrops"`
	// TripwireDrops is the host-side tripwire's counter for this
	// namespace, nil when not available.
	TripwireDrops *uint64    `json:"tripwireDrops,omitempty"`
	Units         []UnitInfo `json:"units"`
	Failovers     int        `json:"failovers"`
	Recreations   int        `json:"recreations"`
	Updated       time.Time  `json:"updated"`
}

// Tunnel states, as status shows them.
const (
	StateUp         = "up"
	StateConnecting = "connecting"
	StateStalled    = "stalled"
	// StateBlocked: the tunnel is down (no device, an endpoint that does
	// not resolve or answer): confined services have no way out.
	StateBlocked = "blocked"
)

// PeerState is one peer's part of State.
type PeerState struct {
	Endpoint      string    `json:"endpoint,omitempty"`
	EndpointIndex int       `json:"endpointIndex"`
	Endpoints     int       `json:"endpoints"`
	Health        string    `json:"health"`
	LastHandshake time.Time `json:"lastHandshake,omitempty"`
	RxBytes       int64     `json:"rxBytes"`
	TxBytes       int64     `json:"txBytes"`
}

// UnitInfo is a confined unit's state as the supervisor last saw it.
type UnitInfo struct {
	Unit   string `json:"unit"`
	Active string `json:"active"`
	// Held says why the supervisor holds it ("frozen", "stopped"), or "".
	Held string `json:"held,omitempty"`
}

// StatePath is the supervisor's state file of namespace name.
func StatePath(name string) string { return filepath.Join(plan.PrivatePath(name), "tunnel.json") }

// LoadState reads a state file.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &s, nil
}

// Write writes the state file (0600) and the metrics textfile (0644).
func (s *State) Write(statePath, metricsPath string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(statePath, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if metricsPath == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(metricsPath), 0o755); err != nil {
		return err
	}
	return writeAtomic(metricsPath, []byte(s.Metrics()), 0o644)
}

// Metrics renders s in the node_exporter textfile-collector format.
func (s *State) Metrics() string {
	var b strings.Builder
	ns := fmt.Sprintf("namespace=%q", s.Namespace)
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("vpnc_tunnel_up", "gauge", "1 when the tunnel is up (a fresh handshake on every peer), else 0.")
	fmt.Fprintf(&b, "vpnc_tunnel_up{%s} %d\n", ns, btoi(s.State == StateUp))
	metric("vpnc_tunnel_state", "gauge", "The tunnel's state (1 for the current one).")
	for _, st := range []string{StateUp, StateConnecting, StateStalled, StateBlocked} {
		fmt.Fprintf(&b, "vpnc_tunnel_state{%s,state=%q} %d\n", ns, st, btoi(s.State == st))
	}
	metric("vpnc_tunnel_state_since_seconds", "gauge", "When the tunnel entered its current state (Unix time).")
	fmt.Fprintf(&b, "vpnc_tunnel_state_since_seconds{%s} %d\n", ns, s.Since.Unix())
	metric("vpnc_handshake_age_seconds", "gauge", "Seconds since the latest handshake of each peer (absent before the first).")
	for i, p := range s.Peers {
		if !p.LastHandshake.IsZero() {
			fmt.Fprintf(&b, "vpnc_handshake_age_seconds{%s,peer=\"%d\"} %.0f\n", ns, i, s.Updated.Sub(p.LastHandshake).Seconds())
		}
	}
	metric("vpnc_rx_bytes_total", "counter", "Bytes received through the tunnel (since the device was created).")
	fmt.Fprintf(&b, "vpnc_rx_bytes_total{%s} %d\n", ns, s.RxBytes)
	metric("vpnc_tx_bytes_total", "counter", "Bytes sent through the tunnel (since the device was created).")
	fmt.Fprintf(&b, "vpnc_tx_bytes_total{%s} %d\n", ns, s.TxBytes)
	metric("vpnc_killswitch_dropped_packets_total", "counter", "Packets the namespace's kill switch dropped, by chain.")
	chains := make([]string, 0, len(s.KillSwitchDrops))
	for c := range s.KillSwitchDrops {
		chains = append(chains, c)
	}
	sort.Strings(chains)
	for _, c := range chains {
		fmt.Fprintf(&b, "vpnc_killswitch_dropped_packets_total{%s,chain=%q} %d\n", ns, c, s.KillSwitchDrops[c])
	}
	if s.TripwireDrops != nil {
		metric("vpnc_tripwire_dropped_packets_total", "counter", "Packets of a confined unit's sockets dropped in the host namespace (an escape attempt; should stay 0).")
		fmt.Fprintf(&b, "vpnc_tripwire_dropped_packets_total{%s} %d\n", ns, *s.TripwireDrops)
	}
	metric("vpnc_endpoint_failovers_total", "counter", "Endpoint failovers and re-resolutions since the tunnel helper started.")
	fmt.Fprintf(&b, "vpnc_endpoint_failovers_total{%s} %d\n", ns, s.Failovers)
	metric("vpnc_tunnel_recreations_total", "counter", "Times the tunnel was brought back after its link or device vanished.")
	fmt.Fprintf(&b, "vpnc_tunnel_recreations_total{%s} %d\n", ns, s.Recreations)
	metric("vpnc_confined_unit_active", "gauge", "1 for each confined unit that is active.")
	for _, u := range s.Units {
		fmt.Fprintf(&b, "vpnc_confined_unit_active{%s,unit=%q} %d\n", ns, u.Unit, btoi(u.Active == "active"))
	}
	metric("vpnc_confined_unit_held", "gauge", "1 for each confined unit the tunnel helper holds frozen or stopped while the tunnel is down.")
	for _, u := range s.Units {
		if u.Held != "" {
			fmt.Fprintf(&b, "vpnc_confined_unit_held{%s,unit=%q,held=%q} 1\n", ns, u.Unit, u.Held)
		}
	}
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
