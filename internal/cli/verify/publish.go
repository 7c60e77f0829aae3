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

// publishSocketChecks attests a published port's host socket: the
// generator's unit, in the host's namespace, handing its connections to a
// unit that joins the namespace, with PID 1 holding every listener.
func publishSocketChecks(p paths.Paths, f Facts) check.List {
	var l check.List
	n, pb := f.Plan, f.Publish
	l.Add("plan", check.Pass, "the host socket of %s → port %d, published by %s (namespace %s)", strings.Join(pb.Listen, " "), pb.Port, n.Source, n.Name)
	if checkGenerated(&l, p, f) {
		checkSocket(&l, f, p.Netns(n.Name))
	}
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

// checkProxyUser: every process of the proxy runs as an unprivileged
// (dynamic) user; its capabilities and no_new_privs are checkCaps'.
func checkProxyUser(l *check.List, p paths.Paths, f Facts) {
	var root []string
	uids := map[int]bool{}
	for _, pid := range f.PIDs {
		s, err := procfs.ReadStatus(p.Proc, pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			l.Add("user", check.Fail, "PID %d: %v", pid, err)
			return
		}
		if s.UID == 0 || s.EUID == 0 {
			root = append(root, fmt.Sprintf("PID %d (%s)", pid, s.Name))
		}
		uids[s.UID] = true
	}
	if len(uids) == 0 {
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
		return
	}
	l.Add("user", check.Pass, "UID %s (DynamicUser), not root", strings.Join(us, ", "))
}
