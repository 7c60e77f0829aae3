//go:build linux

package verify

import (
	"fmt"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
	"os"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// Gather collects the facts about unit on the running system. Its error
// means verification is impossible (systemd unreachable); everything else
// is reported by the checks.
func Gather(p paths.Paths, m systemd.Manager, unit string) (Facts, error) {
	f := Facts{Unit: unit}
	plans, err := p.LoadPlans()
	if err != nil {
		return f, err
	}
	n, ok := paths.FindUnit(plans, unit)
	if !ok {
		if n, f.Publish, ok = paths.FindPublish(plans, unit); !ok {
			f.BlockedBy = blockedBy(p, unit)
			return f, nil
		}
	}
	f.Plan = n
	props, err := m.Show([]string{unit}, ShowProps...)
	if err != nil {
		return f, err
	}
	f.Props = props[0]
	main := f.Props.Int("MainPID")
	if pids, err := procfs.CgroupPIDs(p.Sys, f.Props["ControlGroup"]); err == nil && len(pids) > 0 {
		f.PIDs = mainFirst(main, pids)
	} else if main > 0 {
		f.PIDs = []int{main}
		f.PIDsNote = fmt.Sprintf("main PID only: %v", err)
	}
	if f.Publish != nil && strings.HasSuffix(unit, ".socket") {
		if hp, err := m.Show([]string{holderUnit(f)}, ShowProps...); err == nil {
			f.HolderProps = hp[0]
		}
		f.Listeners, f.ListenersErr = initListeners(p, f.Publish.Listen)
	}
	ns, err := netns.Open(p.Netns(n.Name))
	if err != nil {
		f.FirewallErr, f.LinksErr = err, err
		return f, nil
	}
	defer ns.Close()
	f.Firewall, f.FirewallErr = kstate.ReadFirewall(ns, FirewallTable)
	f.Links, f.LinksErr = kstate.Links(ns)
	return f, nil
}

func mainFirst(main int, pids []int) []int {
	out := []int{}
	if main > 0 {
		out = append(out, main)
	}
	for _, p := range pids {
		if p != main {
			out = append(out, p)
		}
	}
	return out
}

// initListeners reports, per listen address, whether PID 1 holds a
// listening socket there in its (the host's) namespace.
func initListeners(p paths.Paths, listen []string) (map[string]bool, error) {
	host, err := netns.Open(filepath.Join(p.Proc, "1", "ns", "net"))
	if err != nil {
		return nil, err
	}
	defer host.Close()
	socks, err := sockdiag.TCP(host)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range listen {
		ap, ok := sockdiag.ParseListen(l)
		if !ok {
			continue
		}
		var inodes []uint32
		for _, s := range sockdiag.Listeners(socks, ap) {
			inodes = append(inodes, s.Inode)
		}
		for _, hs := range sockdiag.Holders(p.Proc, inodes) {
			for _, h := range hs {
				out[l] = out[l] || h.PID == 1
			}
		}
	}
	return out, nil
}

// blockedBy reads the generator's drop-in of unit: for a unit of an
// invalid file it asserts a path that names the file (units.BlockDropIn).
func blockedBy(p paths.Paths, unit string) string {
	path := filepath.Join(p.GeneratorDir, unit+".d", config.DropInName)
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, s := range unitfile.Parse(path, b) {
		if s.Key == "AssertPathExists" {
			if src, ok := strings.CutPrefix(s.Value, blockPrefix); ok {
				return strings.ReplaceAll(src, "%%", "%")
			}
		}
	}
	return ""
}

// blockPrefix is the never-existing path prefix of units.BlockDropIn.
const blockPrefix = units.BlockPathPrefix
