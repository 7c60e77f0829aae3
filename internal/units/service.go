package units

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// ServiceBody is everything of a service drop-in after the header: the
// same for every unit with the same BodyKey in a namespace. What each part
// takes away, and why, is in internal/hardening and vpn-confinement.d(5).
func ServiceBody(n *plan.Namespace, u plan.Unit, existing *unitfile.Unit) []byte {
	f := &file{}
	chainDeps(f, n)
	strict := u.HardeningProfile == plan.HardeningStrict

	f.add("Service", "NetworkNamespacePath", plan.NetnsPath(n.Name))
	// The host-side tripwire: the unit's cgroup is registered while it
	// runs, so a socket it opens in the host's namespace is dropped and
	// counted. "+": the hook needs privileges the unit does not have (it
	// opens the host's namespace); it is ours, not the unit's.
	tw := LibexecDir + "/vpn-confinement-tripwire"
	f.add("Service", "ExecStartPre", "+"+tw+" add "+n.Name)
	f.add("Service", "ExecStopPost", "+"+tw+" remove "+n.Name)
	f.add("Service", "RestrictAddressFamilies", "", strings.Join(Families(u), " "))

	// The host's control planes. /run/systemd is replaced by an empty
	// tmpfs, private to the service (InaccessiblePaths= of it fails under
	// systemd 252; writable so mount points such as the resolved stub the
	// DNS bind may follow can be made in it), with the
	// journal, sd_notify and userdb bound back read-only.
	f.add("Service", "TemporaryFileSystem", "/run/systemd")
	keep := append([]string{}, hardening.SystemdKeep...)
	if n.DNS.Mode == plan.DNSCompat {
		// compat uses the host's resolver, maybe systemd-resolved.
		keep = append(keep, "-/run/systemd/resolve")
	}
	f.add("Service", "BindReadOnlyPaths", strings.Join(keep, " "))

	// This tool's runtime dir: only the namespace's own public dir.
	rt := plan.RuntimePath(n.Name)
	f.add("Service", "TemporaryFileSystem", plan.RuntimeDir+":ro")
	f.add("Service", "BindReadOnlyPaths", rt)

	if n.DNS.Mode == plan.DNSStrict {
		f.add("Service", "BindReadOnlyPaths", rt+"/resolv.conf:/etc/resolv.conf", rt+"/nsswitch.conf:/etc/nsswitch.conf")
		// A tmpfs (not InaccessiblePaths=) over resolvconf's directory:
		// when /etc/resolv.conf is a symlink into it, the bind mount above
		// lands on a file inside the tmpfs and still works.
		f.add("Service", "TemporaryFileSystem", "/run/resolvconf:ro")
	}
	hidden := append([]string{}, hardening.ControlPlanes...)
	if !u.AllowSystemBus && !(n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC) {
		hidden = append(hidden, hardening.SystemBus...)
	}
	if n.DNS.Mode == plan.DNSStrict && !n.DNS.AllowHostResolverIPC {
		hidden = append(hidden, "-/run/nscd", "-/run/avahi-daemon") // directories: see hardening.ControlPlanes
	}
	f.add("Service", "InaccessiblePaths", strings.Join(hidden, " "))
	f.add("Service", "InaccessiblePaths", strings.Join(hardening.ToolState, " "))
	// Key material: a root service keeps file-owner access to root's 0600
	// key files, so hide the config dir, every key and credential file
	// and the credential stores of the tunnel and lease units.
	f.add("Service", "InaccessiblePaths", strings.Join(secretPaths(n), " "))

	// Capabilities: none for a non-root service (it could not use them);
	// the drop-privileges set for a root one; never one that could change
	// or leave the namespace.
	f.add("Service", "CapabilityBoundingSet", "")
	if len(u.Capabilities) > 0 {
		f.add("Service", "CapabilityBoundingSet", strings.Join(u.Capabilities, " "))
	}
	f.add("Service", "AmbientCapabilities", "")
	f.add("Service", "NoNewPrivileges", "yes")
	f.add("Service", "PrivateTmp", "yes")
	ps, ph := Protection(u, existing)
	f.add("Service", "ProtectSystem", ps)
	f.add("Service", "ProtectHome", ph)
	if strict || u.Root {
		// ProtectControlGroups= implies MountAPIVFS=, which leaves /run
		// writable under ProtectSystem=strict (measured, systemd 252).
		f.add("Service", "ReadOnlyPaths", "/run")
	}
	var rw []string
	for _, p := range u.ReadWritePaths {
		rw = append(rw, "-"+Escape(p))
	}
	if u.Home != "" {
		if strict && strings.HasPrefix(u.Home, "/home/") {
			f.add("Service", "BindPaths", "-"+Escape(u.Home))
		} else {
			rw = append(rw, "-"+Escape(u.Home))
		}
	}
	if len(rw) > 0 {
		f.add("Service", "ReadWritePaths", strings.Join(dedupe(rw), " "))
	}
	if len(u.RuntimeFiles) > 0 {
		// A root service's PID file under read-only /run: bound from a file
		// the namespace helper keeps, which systemd does not delete at
		// stop (it deletes PIDFile=, so PIDFile= is reset and systemd
		// finds the main process itself).
		var binds []string
		for _, rf := range u.RuntimeFiles {
			binds = append(binds, Escape(RuntimeFileSource(n.Name, u.Name, rf))+":"+Escape(rf))
		}
		f.add("Service", "BindPaths", strings.Join(binds, " "))
		f.add("Service", "PIDFile", "")
	}
	f.add("Service", "ProtectControlGroups", "yes")
	f.add("Service", "RestrictSUIDSGID", "yes")
	f.add("Service", "LockPersonality", "yes")
	if strict {
		for _, k := range []string{"PrivateDevices", "ProtectKernelModules", "ProtectKernelTunables", "ProtectKernelLogs",
			"RestrictNamespaces", "ProtectClock", "ProtectHostname", "RestrictRealtime", "MemoryDenyWriteExecute"} {
			if k == "MemoryDenyWriteExecute" && u.WriteExecute {
				continue // its app preset needs it (deluged exits at start)
			}
			f.add("Service", k, "yes")
		}
		f.add("Service", "ProtectProc", "invisible")
		f.add("Service", "SystemCallArchitectures", "native")
		f.add("Service", "SystemCallFilter", "@system-service", "~@mount")
		f.add("Service", "SystemCallErrorNumber", "EPERM")
	}

	// A second, independent layer in allowList mode: systemd's cgroup IP
	// filter (needs cgroup v2, not the BPF framework; see IPFiltered).
	if n.IPFiltered() {
		f.add("Service", "IPAddressDeny", "", "any")
		f.add("Service", "IPAddressAllow", "", strings.Join(ipAllow(n), " "))
	}

	if u.RestrictBind {
		f.comments = append(f.comments, "",
			"SocketBindAllow=/SocketBindDeny= are enforced only by a systemd built with",
			"+BPF_FRAMEWORK (see systemctl --version); elsewhere systemd ignores them",
			"silently and the namespace firewall is the layer that holds.")
		f.add("Service", "SocketBindDeny", "", "any")
		var allow []string
		for _, p := range append(append([]uint16{}, n.Ingress.FromHostTCP...), n.Ingress.FromTunnelTCP...) {
			allow = append(allow, fmt.Sprintf("tcp:%d", p))
		}
		for _, p := range n.Publish {
			allow = append(allow, fmt.Sprintf("tcp:%d", p.Port))
		}
		for _, p := range n.Ingress.FromTunnelUDP {
			allow = append(allow, fmt.Sprintf("udp:%d", p))
		}
		f.add("Service", "SocketBindAllow", append([]string{""}, dedupe(allow)...)...)
	}
	return f.body()
}

// Families is the RestrictAddressFamilies= list of service u.
func Families(u plan.Unit) []string {
	return dedupe(append(append([]string{}, hardening.Families...), u.ExtraAddressFamilies...))
}

// Protection is the ProtectSystem= and ProtectHome= of service u's drop-in:
// the profile's values, or the unit's own (existing) where stronger.
func Protection(u plan.Unit, existing *unitfile.Unit) (system, home string) {
	cur := func(k string) string {
		if existing != nil {
			if s, ok := existing.Last("Service", k); ok {
				return s.Value
			}
		}
		return ""
	}
	strict := u.HardeningProfile == plan.HardeningStrict
	ps, ph := "full", "read-only"
	if strict || u.Root {
		ps = "strict"
	}
	if strict {
		ph = "yes"
		if u.Home != "" && strings.HasPrefix(u.Home, "/home/") {
			// ProtectHome=yes cannot be reopened for one home (measured);
			// an empty /home with the home bound back can.
			ph = "tmpfs"
		}
	}
	return stronger("ProtectSystem", ps, cur("ProtectSystem")), stronger("ProtectHome", ph, cur("ProtectHome"))
}

// RuntimeFileSource is the file in the namespace's private runtime dir
// that is bound over runtime file rf (a PID file) of root service unit.
func RuntimeFileSource(ns, unit, rf string) string {
	return filepath.Join(plan.PrivatePath(ns), "run", unit, strings.ReplaceAll(strings.TrimPrefix(rf, "/run/"), "/", "_"))
}
