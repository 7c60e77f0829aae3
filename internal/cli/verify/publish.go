package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
)

// A published port's units are generated whole (not a drop-in on an
// admin's unit): the socket listens in the host's namespace and hands
// its connections to the proxy, which runs inside the namespace as a
// dynamic user with no capabilities and may reach loopback only; with
// publish[].unit the socket goes to a listed service instead.

// proxyAllow is the proxy's IPAddressAllow= as systemctl show prints it.
var proxyAllow = []string{"127.0.0.0/8", "::1/128"}

func publishChecks(p paths.Paths, f Facts) check.List {
	var l check.List
	n, pb := f.Plan, f.Publish
	pin := p.Netns(n.Name)
	socket := strings.HasSuffix(f.Unit, ".socket")
	role := "the proxy"
	if socket {
		role = "the host socket"
	}
	l.Add("plan", check.Pass, "%s of %s → port %d, published by %s (namespace %s)", role, strings.Join(pb.Listen, " "), pb.Port, n.Source, n.Name)
	if !checkGenerated(&l, p, f) {
		return l
	}
	if socket {
		checkSocket(&l, f, pin)
		return l
	}
	nnp := f.Props["NetworkNamespacePath"]
	target := fmt.Sprintf(" 127.0.0.1:%d ", pb.Port)
	switch {
	case nnp != pin:
		l.Add("unit-file", check.Fail, "effective NetworkNamespacePath=%q, not %s: the proxy would run in the host's namespace", nnp, pin)
	case !strings.Contains(f.Props["ExecStart"], target):
		l.Add("unit-file", check.Fail, "ExecStart does not forward to 127.0.0.1:%d: %s", pb.Port, f.Props["ExecStart"])
	default:
		l.Add("unit-file", check.Pass, "%s, NetworkNamespacePath=%s, forwards to 127.0.0.1:%d%s", f.Props["FragmentPath"], pin, pb.Port, dropInNote(f))
	}
	checkFirewall(&l, f, pin)
	checkLinks(&l, f, n)
	checkIPFilter(&l, f)
	state := f.Props["ActiveState"] + "/" + f.Props["SubState"]
	if f.Props["ActiveState"] != "active" || len(f.PIDs) == 0 {
		l.Add("running", check.Skip, "%s is not running (%s): it starts with the first connection to %s; connect once, then verify again", f.Unit, state, pb.Listen[0])
		return l
	}
	l.Add("running", check.Pass, "%s, %s, main PID %d", state, plural(len(f.PIDs), "process", "processes"), f.PIDs[0])
	checkNamespace(&l, p, f, pin)
	checkProxyProcesses(&l, p, f)
	checkHidden(&l, p, "keys", secretPaths(n), p.ProcRoot(f.PIDs[0], ""), "visible")
	return l
}

// checkGenerated: the unit systemd runs is the generator's file, not one
// of the same name elsewhere in the search path.
func checkGenerated(l *check.List, p paths.Paths, f Facts) bool {
	want := filepath.Join(p.GeneratorDir, f.Unit)
	switch frag := f.Props["FragmentPath"]; {
	case f.Props["LoadState"] == "not-found":
		l.Add("unit-file", check.Fail, "systemd knows no unit %s: run systemctl daemon-reload", f.Unit)
		return false
	case frag != want:
		l.Add("unit-file", check.Fail, "systemd runs %s from %q, not the generated %s (a unit of the same name shadows it)", f.Unit, frag, want)
		return false
	}
	return true
}

func dropInNote(f Facts) string {
	if d := strings.Fields(f.Props["DropInPaths"]); len(d) > 0 {
		return "; drop-ins: " + strings.Join(d, " ")
	}
	return ""
}

// checkSocket: the socket stays in the host's namespace, listens where the
// plan says (PID 1 holding each listener), and activates a unit that joins
// the namespace.
func checkSocket(l *check.List, f Facts, pin string) {
	pb := f.Publish
	if nnp := f.Props["NetworkNamespacePath"]; nnp != "" {
		l.Add("unit-file", check.Fail, "NetworkNamespacePath=%s: the published socket must listen in the host's namespace", nnp)
	} else {
		l.Add("unit-file", check.Pass, "%s, listening in the host's namespace%s", f.Props["FragmentPath"], dropInNote(f))
	}
	want := holderUnit(f)
	hp := f.HolderProps
	switch {
	case strings.TrimSpace(f.Props["Triggers"]) != want:
		l.Add("activates", check.Fail, "triggers %q, not %s", f.Props["Triggers"], want)
	case hp == nil || hp["LoadState"] == "not-found":
		l.Add("activates", check.Fail, "it activates %s, which systemd does not know", want)
	case hp["NetworkNamespacePath"] != pin:
		l.Add("activates", check.Fail, "it activates %s, whose NetworkNamespacePath=%q is not %s: that service would run on the host's network", want, hp["NetworkNamespacePath"], pin)
	default:
		l.Add("activates", check.Pass, "%s, which joins %s", want, pin)
	}
	switch {
	case f.ListenersErr != nil:
		l.Add("listening", check.Fail, "cannot read the host's sockets: %v", f.ListenersErr)
	case f.Props["ActiveState"] != "active":
		l.Add("listening", check.Fail, "%s is %s: nothing listens on %s", f.Unit, f.Props["ActiveState"], strings.Join(pb.Listen, " "))
	default:
		var missing []string
		for _, a := range pb.Listen {
			if !f.Listeners[a] {
				missing = append(missing, a)
			}
		}
		if len(missing) > 0 {
			l.Add("listening", check.Fail, "systemd holds no listener on %s (its unit file was gone at a daemon-reload?): systemctl reload vpn-ns@%s", strings.Join(missing, " "), f.Plan.Name)
		} else {
			l.Add("listening", check.Pass, "systemd listens on %s", strings.Join(pb.Listen, " "))
		}
	}
}

func holderUnit(f Facts) string {
	if f.Publish.Activate != "" {
		return f.Publish.Activate
	}
	return f.Publish.Unit + ".service"
}

// checkIPFilter: the proxy's own connections reach loopback only.
func checkIPFilter(l *check.List, f Facts) {
	deny := strings.Fields(f.Props["IPAddressDeny"])
	allow := strings.Fields(f.Props["IPAddressAllow"])
	sort.Strings(deny)
	sort.Strings(allow)
	anyDeny := strings.Join(deny, " ") == "0.0.0.0/0 ::/0" || strings.Join(deny, " ") == "any"
	if !anyDeny || strings.Join(allow, " ") != strings.Join(proxyAllow, " ") {
		l.Add("ip-filter", check.Fail, "IPAddressDeny=%q IPAddressAllow=%q: the proxy may reach more than loopback", f.Props["IPAddressDeny"], f.Props["IPAddressAllow"])
		return
	}
	l.Add("ip-filter", check.Pass, "IPAddressDeny=any, IPAddressAllow=%s", strings.Join(proxyAllow, " "))
}

// checkProxyProcesses: every process of the proxy runs as an
// unprivileged user with no capability in any set and no_new_privs.
func checkProxyProcesses(l *check.List, p paths.Paths, f Facts) {
	var root, caps, nnp []string
	uids := map[int]bool{}
	seen := 0
	for _, pid := range f.PIDs {
		s, err := procfs.ReadStatus(p.Proc, pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			caps = append(caps, fmt.Sprintf("PID %d: %v", pid, err))
			continue
		}
		seen++
		who := fmt.Sprintf("PID %d (%s)", pid, s.Name)
		if s.UID == 0 || s.EUID == 0 {
			root = append(root, who)
		}
		uids[s.UID] = true
		if s.CapInh|s.CapPrm|s.CapEff|s.CapBnd|s.CapAmb != 0 {
			caps = append(caps, fmt.Sprintf("%s: CapBnd=%016x CapEff=%016x CapPrm=%016x CapAmb=%016x", who, s.CapBnd, s.CapEff, s.CapPrm, s.CapAmb))
		}
		if !s.NoNewPrivs {
			nnp = append(nnp, who)
		}
	}
	if seen == 0 && len(caps) == 0 {
		l.Add("user", check.Fail, "the processes exited during the check")
		return
	}
	var us []string
	for u := range uids {
		us = append(us, fmt.Sprint(u))
	}
	sort.Strings(us)
	if len(root) > 0 {
		l.Add("user", check.Fail, "runs as root: %s", strings.Join(root, ", "))
	} else {
		l.Add("user", check.Pass, "UID %s (DynamicUser), not root", strings.Join(us, ", "))
	}
	if len(caps) > 0 {
		l.Add("capabilities", check.Fail, "has capabilities: %s", strings.Join(caps, "; "))
	} else {
		l.Add("capabilities", check.Pass, "none in any set (CapBnd=CapEff=CapPrm=CapAmb=0)")
	}
	if len(nnp) > 0 {
		l.Add("no-new-privs", check.Fail, "not set for %s", strings.Join(nnp, ", "))
	} else {
		l.Add("no-new-privs", check.Pass, "set for %s", plural(seen, "process", "all processes"))
	}
}
