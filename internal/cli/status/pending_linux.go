//go:build linux

package status

import (
	"errors"
	"io/fs"
	"os"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/namespace"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// collectPending compares the compiled plan with the applied one
// (namespace.AppliedPath) and the sources with the compiled plan.
func (c Collector) collectPending(n *Namespace, pf paths.PlanFile) {
	pp := &PendingPlan{Plan: pf.Path, PlanHash: hashFile(pf.Path), Applied: c.Paths.InRuntime(namespace.AppliedPath(n.Name)), ConfigChanged: []string{}}
	pp.AppliedHash = hashFile(pp.Applied)
	if _, err := os.Stat(pp.Applied); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Not root: the private dir is root's. Never taken as "nothing pending".
		n.Errors = append(n.Errors, "applied plan: "+err.Error())
	}
	var applied *plan.Namespace
	if pp.AppliedHash != "" && pp.AppliedHash != pp.PlanHash {
		applied, _ = plan.Load(pp.Applied)
	}
	pp.comparePlans(n.Name, pf.Plan, applied)
	if s := n.Supervisor; s != nil && s.Present && s.Current && s.PlanHash != "" {
		pp.TunnelPlanHash = s.PlanHash
		pp.TunnelBehind = pp.AppliedHash != "" && s.PlanHash != pp.AppliedHash
	}
	staleness(pp, pf)
	n.Pending = pp
}
