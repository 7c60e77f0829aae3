package status

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Pending says that the generator compiled a plan the running namespace
// has not applied (the YAML was edited and systemctl daemon-reload ran).
type Pending struct {
	// AppliedHash and CompiledHash are the SHA-256 of the applied plan
	// (_private/NAME/applied.json) and of the generator's plan file.
	AppliedHash  string `json:"appliedSha256"`
	CompiledHash string `json:"compiledSha256"`
	// Live: systemctl reload applies it; otherwise Keys cannot change
	// while running and Command restarts what they need.
	Live    bool     `json:"live"`
	Keys    []string `json:"keys,omitempty"`
	Command string   `json:"command"`
}

// under places a path of the plan package's runtime layout below the
// collector's RuntimeDir (tests use a fake one).
func under(p paths.Paths, path string) string {
	return filepath.Join(p.RuntimeDir, strings.TrimPrefix(path, plan.RuntimeDir))
}

func sha256File(path string) (string, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b, nil
}

// helper reads the tunnel helper's report and compares the applied plan
// with the compiled one.
func (c Collector) helper(n *Namespace, pf paths.PlanFile) {
	name := pf.Name
	n.MetricsFile = under(c.Paths, plan.MetricsPath(name))
	if st, err := tunnel.LoadState(under(c.Paths, tunnel.StatePath(name))); err == nil {
		n.Helper = st
	} else if !errors.Is(err, fs.ErrNotExist) {
		n.Errors = append(n.Errors, fmt.Sprintf("tunnel helper state: %v", err))
	}
	appliedPath := filepath.Join(under(c.Paths, plan.PrivatePath(name)), "applied.json")
	ah, ab, err := sha256File(appliedPath)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			n.Errors = append(n.Errors, fmt.Sprintf("applied plan: %v", err))
		}
		return // not running (or started by an older version)
	}
	ch, cb, err := sha256File(pf.Path)
	if err != nil || bytes.Equal(ab, cb) {
		return
	}
	pd := &Pending{AppliedHash: ah, CompiledHash: ch, Live: true,
		Command: "systemctl reload " + units.Instance(units.NsTemplate, name)}
	applied, err := plan.Load(appliedPath)
	if err != nil {
		pd.Live = false
		pd.Command = "systemctl restart " + units.Instance(units.NsTemplate, name) + " (the applied plan is unreadable: " + err.Error() + ")"
	} else if diffs := plan.LiveDiff(applied, pf.Plan); len(diffs) > 0 {
		pd.Live = false
		var cmds []string
		seen := map[string]bool{}
		for _, d := range diffs {
			pd.Keys = append(pd.Keys, d.Key)
			if !seen[d.Restart] {
				seen[d.Restart] = true
				cmds = append(cmds, d.Restart)
			}
		}
		pd.Command = strings.Join(cmds, ", or ")
	}
	n.Pending = pd
}

// helperCurrent reports whether the state file was written by the running
// tunnel helper (an old file of a stopped one says nothing about now).
func (n *Namespace) helperCurrent() bool {
	wg := n.unit(units.WgTemplate)
	return n.Helper != nil && wg != nil && wg.ActiveState == "active" && wg.MainPID == n.Helper.PID
}

// helperText is the helper's state in one line: "blocked: tunnel down
// since …", "stalled since …", "failing over …", "up since …".
func helperText(h *tunnel.State) string {
	since := h.Since.Local().Format("2006-01-02 15:04:05")
	switch h.State {
	case tunnel.StateBlocked:
		return fmt.Sprintf("blocked: tunnel down since %s (%s): %s; confined services have no way out", since, durationText(h.Updated.Sub(h.Since)), h.Reason)
	case tunnel.StateStalled:
		return fmt.Sprintf("stalled since %s (%s): %s", since, durationText(h.Updated.Sub(h.Since)), h.Reason)
	case tunnel.StateConnecting:
		if strings.Contains(h.Reason, "failing over") || strings.Contains(h.Reason, "re-applied") {
			return fmt.Sprintf("failing over since %s: %s", since, h.Reason)
		}
		return fmt.Sprintf("connecting since %s: %s", since, h.Reason)
	}
	return fmt.Sprintf("%s since %s: %s", h.State, since, h.Reason)
}

// assessHelper turns the helper's report into problems: a tunnel that is
// blocked, stalled or failing over leaves the services without network.
func (a *assessor) assessHelper() {
	n := a.n
	if p := n.Pending; p != nil {
		if p.Live {
			a.note("pending plan: the generator's plan differs from the one this namespace applied; apply it live with: %s", p.Command)
		} else {
			a.note("pending plan: %s changed, which cannot be applied while running; apply it with: %s", strings.Join(p.Keys, ", "), p.Command)
		}
	}
	if !n.helperCurrent() {
		return
	}
	h := n.Helper
	switch h.State {
	case tunnel.StateBlocked, tunnel.StateStalled:
		a.problem(StateDegraded, "%s", helperText(h))
	case tunnel.StateConnecting:
		if t := helperText(h); strings.HasPrefix(t, "failing over") {
			a.problem(StateDegraded, "%s", t)
		}
	}
	for _, u := range h.Units {
		if u.Held != "" {
			a.note("%s is %s by onTunnelLoss %s until the tunnel is back", u.Unit, u.Held, h.OnTunnelLoss)
		}
	}
}
