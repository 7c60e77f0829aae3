//go:build linux

package portfwd

import (
	"encoding/json"
	"os"
	"time"
)

// State is the lease helper's report, for vpn-confinement status and the
// metrics file. It holds no credential.
type State struct {
	Protocol string    `json:"protocol"`
	Port     uint16    `json:"port"` // 0: none
	Since    time.Time `json:"since"`
	Lease    string    `json:"lease"`
	Apps     []string  `json:"apps,omitempty"`
	Updated  time.Time `json:"updated"`
}

func (r *runner) writeState() {
	r.mu.Lock()
	st := State{Protocol: r.n.PortForwarding.Protocol, Port: r.port, Since: r.since, Updated: time.Now()}
	r.mu.Unlock()
	if r.loop != nil {
		st.Lease = r.loop.Status()
	}
	for _, s := range r.apps {
		st.Apps = append(st.Apps, s.Status())
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeAtomic(StatePath(r.n.Name), append(b, '\n'), 0o600)
	}
	if err != nil {
		r.log.Debugf("write state: %v", err)
	}
}

// LoadState reads the lease helper's state of namespace name.
func LoadState(name string) (*State, error) {
	b, err := os.ReadFile(StatePath(name))
	if err != nil {
		return nil, err
	}
	var s State
	return &s, json.Unmarshal(b, &s)
}
