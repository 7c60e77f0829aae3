//go:build linux

package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
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
	n, svc, kind := findUnit(plans, unit)
	if n == nil {
		f.BlockedBy = blockedBy(p, unit)
		return f, nil
	}
	f.Plan, f.Service, f.Kind = n, svc, kind
	if kind == KindProxy || kind == KindPublishSocket {
		_, f.Publish, _ = paths.FindPublish(plans, unit)
	}
	props, err := m.Show([]string{unit}, ShowProps...)
	if err != nil {
		return f, err
	}
	f.Props = props[0]
	f.ReferenceFile, f.Reference, f.Later = unitFiles(p, f)
	main := f.Props.Int("MainPID")
	for deadline := time.Now().Add(execWait); ; time.Sleep(20 * time.Millisecond) {
		f.PIDs, f.PIDsNote = nil, ""
		if pids, err := procfs.CgroupPIDs(p.Sys, f.Props["ControlGroup"]); err == nil && len(pids) > 0 {
			f.PIDs = mainFirst(main, pids)
		} else if main > 0 {
			f.PIDs = []int{main}
			f.PIDsNote = fmt.Sprintf("main PID only: %v", err)
		}
		// Right after a start, a Type=simple unit is active while its
		// process is still systemd's forked child, setting up the
		// sandbox (full capabilities, the host's mounts): what it will
		// be is only there after its exec.
		if f.Unexecd = unexecd(p, f.PIDs); len(f.Unexecd) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if kind == KindService || kind == KindProxy {
		f.Sockets, f.SocketsErr = procfs.HostUnixSockets(p.Proc)
		f.Own = procfs.SocketInodes(p.Proc, f.PIDs)
	}
	if kind == KindPublishSocket {
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

// unitFiles reads the generated file that confines the unit and the
// drop-ins systemd applies after it (below p.Root: DropInPaths are host
// paths).
func unitFiles(p paths.Paths, f Facts) (string, []unitfile.Setting, []unitfile.Setting) {
	ref := ourDropIn(p, f)
	if f.Kind == KindProxy {
		ref = filepath.Join(p.GeneratorDir, f.Unit)
	}
	var refSettings []unitfile.Setting
	if b, err := os.ReadFile(ref); err == nil {
		refSettings = unitfile.Parse(ref, b)
	}
	var later []unitfile.Setting
	for _, d := range strings.Fields(f.Props["DropInPaths"]) {
		// Drop-ins apply in file-name order, whatever their directory.
		if d == ref || filepath.Base(d) <= config.DropInName && f.Kind != KindProxy && f.Kind != KindPortFwd {
			continue
		}
		b, err := os.ReadFile(p.Host(d))
		if err != nil {
			continue
		}
		later = append(later, unitfile.Parse(d, b)...)
	}
	return ref, refSettings, later
}

// execWait bounds how long Gather waits for a unit's processes to exec.
const execWait = 3 * time.Second

// unexecd lists the PIDs that still run PID 1's program: forked by
// systemd, not yet exec'd into the unit's command.
func unexecd(p paths.Paths, pids []int) []int {
	pid1, err := os.Stat(filepath.Join(p.Proc, "1", "exe"))
	if err != nil {
		return nil
	}
	var out []int
	for _, pid := range pids {
		if fi, err := os.Stat(filepath.Join(p.Proc, strconv.Itoa(pid), "exe")); err == nil && os.SameFile(fi, pid1) {
			out = append(out, pid)
		}
	}
	return out
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
