package status

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// PendingPlan compares three generations of a namespace's policy: its
// file, the plan the generator compiled from it at the last daemon-reload,
// and the plan the running namespace applied (vpn-ns@ up or reload copies
// the plan file to applied.json byte for byte). The generator does not
// reload by itself, so after a daemon-reload the last two differ until the
// admin runs the command in Command.
type PendingPlan struct {
	Plan     string `json:"plan"`
	PlanHash string `json:"planHash"`
	// Applied is the applied plan's file; AppliedHash is "" when there is
	// none (the namespace is not up).
	Applied     string `json:"applied"`
	AppliedHash string `json:"appliedHash,omitempty"`
	// Pending: the namespace runs another plan than the generator's.
	Pending bool `json:"pending"`
	// NotLive are the keys a reload cannot apply (plan.LiveDiff); then
	// Command is the restart that does.
	NotLive []string `json:"notLive,omitempty"`
	Command string   `json:"command,omitempty"`
	// TunnelPlanHash is the plan the tunnel helper runs (its state file);
	// TunnelBehind when it is not the applied one.
	TunnelPlanHash string `json:"tunnelPlanHash,omitempty"`
	TunnelBehind   bool   `json:"tunnelBehind,omitempty"`
	// ConfigChanged are source files newer than the compiled plan (edited
	// after the last daemon-reload); ConfigRemoved: the namespace file is
	// gone but its plan is still compiled.
	ConfigChanged []string `json:"configChanged"`
	ConfigRemoved string   `json:"configRemoved,omitempty"`
}

// hashFile is the SHA-256 of a file in hex, the form of the tunnel
// helper's PlanHash; "" when it cannot be read.
func hashFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// comparePlans fills in Pending, NotLive and Command from the two plans'
// hashes, and the applied plan when they differ (nil: unreadable).
func (pp *PendingPlan) comparePlans(name string, next, applied *plan.Namespace) {
	pp.Pending = pp.AppliedHash != "" && pp.PlanHash != "" && pp.AppliedHash != pp.PlanHash
	if !pp.Pending {
		return
	}
	pp.Command = "systemctl reload " + units.Instance(units.NsTemplate, name)
	if applied == nil || next == nil {
		return
	}
	diffs := plan.LiveDiff(applied, next)
	for _, d := range diffs {
		pp.NotLive = append(pp.NotLive, d.Key)
	}
	if len(diffs) > 0 {
		// The namespace restart also restarts the tunnel, so it covers
		// every diff; a tunnel restart alone covers only its own keys.
		cmd := diffs[0].Restart
		for _, d := range diffs {
			if strings.HasPrefix(d.Restart, "systemctl restart "+units.Instance(units.NsTemplate, name)) {
				cmd = d.Restart
			}
		}
		pp.Command = cmd
	}
}

// staleness lists source files newer than the compiled plan: what runs
// is not what the file says until the next daemon-reload.
func staleness(pp *PendingPlan, pf paths.PlanFile) {
	pfi, err := os.Stat(pf.Path)
	if err != nil {
		return
	}
	for _, src := range []string{pf.Plan.Source, pf.Plan.WireGuard.PrivateKey.WgQuickFile} {
		if src == "" {
			continue
		}
		fi, err := os.Stat(src)
		switch {
		case errors.Is(err, fs.ErrNotExist) && src == pf.Plan.Source:
			pp.ConfigRemoved = src
		case err == nil && fi.ModTime().After(pfi.ModTime()):
			pp.ConfigChanged = append(pp.ConfigChanged, src)
		}
	}
}

// pending: what runs is not what the files say. Problems without a state
// change: the namespace works, with an older policy.
func (a *assessor) pending() {
	pp := a.n.Pending
	if pp == nil {
		return
	}
	if pp.ConfigRemoved != "" {
		a.advice("%s was removed, but the namespace is still compiled: run systemctl daemon-reload", pp.ConfigRemoved)
	}
	for _, f := range pp.ConfigChanged {
		a.advice("%s changed after the last daemon-reload: what runs is the older plan; run vpn-confinement validate, then systemctl daemon-reload", f)
	}
	switch {
	case pp.Pending && len(pp.NotLive) > 0:
		a.advice("pending plan: %s changed, which a reload cannot apply; apply it: %s", strings.Join(pp.NotLive, ", "), pp.Command)
	case pp.Pending:
		a.advice("pending plan: the namespace runs an older plan than the generator's; apply it: %s", pp.Command)
	case pp.TunnelBehind:
		a.note("the tunnel helper runs another plan than the namespace (a reload that failed or is under way?): systemctl reload %s", units.Instance(units.NsTemplate, a.n.Name))
	}
}

// writePending is the "plan" row, shown only when something is pending.
func (n *Namespace) writePending(p printer) {
	pp := n.Pending
	if pp == nil || !pp.Pending {
		return
	}
	s := fmt.Sprintf("pending (applied %s, compiled %s): %s", short(pp.AppliedHash), short(pp.PlanHash), pp.Command)
	if len(pp.NotLive) > 0 {
		s += " (not live: " + strings.Join(pp.NotLive, ", ") + ")"
	}
	p.row("plan", "%s", s)
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
