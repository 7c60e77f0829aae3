//go:build linux

package portfwd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// State is the lease helper's report, for vpn-confinement status and the
// metrics file. It holds no credential.
type State struct {
	Protocol string    `json:"protocol"`
	Port     uint16    `json:"port"`  // 0: none
	Since    time.Time `json:"since"` // when Port became what it is
	// Renewed is the last successful acquisition or renewal of the lease
	// (zero while there is none); Expires is when it runs out unrenewed.
	Renewed time.Time `json:"renewed,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	Lease   string    `json:"lease"`
	Apps    []string  `json:"apps,omitempty"`
	// Changes counts port changes (new, changed, lost) since the helper
	// started.
	Changes int       `json:"changes"`
	Updated time.Time `json:"updated"`
}

// MetricsPath is the lease helper's Prometheus textfile, next to the
// tunnel helper's NAME.prom in the same directory (node_exporter reads
// every *.prom there). "@" is not allowed in namespace names, so the name
// cannot be another namespace's file.
func MetricsPath(name string) string { return filepath.Join(plan.MetricsDir(), name+"@portfwd.prom") }

func (r *runner) writeState() {
	r.mu.Lock()
	st := State{Protocol: r.n.PortForwarding.Protocol, Port: r.port, Since: r.since, Changes: r.changes, Updated: time.Now()}
	r.mu.Unlock()
	if r.loop != nil {
		st.Lease = r.loop.Status()
		if ls := r.loop.State(); ls.Held && st.Port != 0 {
			st.Renewed, st.Expires = ls.Renewed, ls.Expires
		}
	}
	for _, s := range r.apps {
		st.Apps = append(st.Apps, s.Status())
	}
	if err := st.write(r.n.Name); err != nil {
		r.log.Debugf("write state: %v", err)
	}
}

// write replaces the state file and the metrics textfile.
func (st *State) write(name string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(StatePath(name), append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(plan.MetricsDir(), 0o755); err != nil {
		return err
	}
	return writeAtomic(MetricsPath(name), []byte(st.Metrics(name)), 0o644)
}

// Metrics renders st in the node_exporter textfile-collector format.
func (st *State) Metrics(name string) string {
	var b strings.Builder
	ns := fmt.Sprintf("namespace=%q", name)
	metric := func(m, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m, help, m, typ)
	}
	metric("vpnc_forwarded_port", "gauge", "The provider-forwarded port, open inbound on the tunnel; 0 while there is none.")
	fmt.Fprintf(&b, "vpnc_forwarded_port{%s,protocol=%q} %d\n", ns, st.Protocol, st.Port)
	metric("vpnc_forwarded_port_since_seconds", "gauge", "When the forwarded port became what it is (Unix time).")
	fmt.Fprintf(&b, "vpnc_forwarded_port_since_seconds{%s} %d\n", ns, st.Since.Unix())
	if !st.Renewed.IsZero() {
		metric("vpnc_forwarded_port_renewed_seconds", "gauge", "Last successful acquisition or renewal of the lease (Unix time).")
		fmt.Fprintf(&b, "vpnc_forwarded_port_renewed_seconds{%s} %d\n", ns, st.Renewed.Unix())
	}
	metric("vpnc_forwarded_port_changes_total", "counter", "Times the forwarded port was opened, changed or closed since the lease helper started.")
	fmt.Fprintf(&b, "vpnc_forwarded_port_changes_total{%s} %d\n", ns, st.Changes)
	return b.String()
}

// LoadState reads the lease helper's state of namespace name.
func LoadState(name string) (*State, error) { return LoadStateFile(StatePath(name)) }

// LoadStateFile reads a lease helper's state file.
func LoadStateFile(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	return &s, json.Unmarshal(b, &s)
}
