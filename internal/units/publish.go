package units

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// SocketProxyd is systemd's TCP proxy (shipped with systemd since 209).
var SocketProxyd = "/lib/systemd/systemd-socket-proxyd"

// proxyIdle lets an idle proxy exit; the socket starts it again on the
// next connection.
const proxyIdle = "5min"

// PublishSocket renders the host-side socket unit of published port p of
// namespace n: it listens in the host's network namespace (no
// NetworkNamespacePath=) and exists only while the namespace does.
func PublishSocket(n *plan.Namespace, p plan.Publish) []byte {
	target := p.Unit + ".service"
	desc := fmt.Sprintf("vpn-confinement: %s → port %d in namespace %s", strings.Join(p.Listen, " "), p.Port, n.Name)
	if p.Activate != "" {
		target = p.Activate
		desc = fmt.Sprintf("vpn-confinement: %s handed to %s in namespace %s", strings.Join(p.Listen, " "), p.Activate, n.Name)
	}
	f := &file{comments: []string{fmt.Sprintf("Published port of namespace %s, compiled from %s.", n.Name, n.Source)}}
	f.add("Unit", "Description", Escape(desc))
	f.add("Unit", "Documentation", docs)
	f.add("Unit", "SourcePath", Escape(n.Source))
	ns := Instance(NsTemplate, n.Name)
	f.add("Unit", "BindsTo", ns)
	f.add("Unit", "After", ns)
	for _, l := range p.Listen {
		f.add("Socket", "ListenStream", l)
	}
	if p.BindToDevice != "" {
		f.add("Socket", "BindToDevice", p.BindToDevice)
	}
	// A LAN address may not exist yet when the socket starts at boot.
	f.add("Socket", "FreeBind", "yes")
	f.add("Socket", "NoDelay", "yes")
	f.add("Socket", "Service", target)
	return f.bytes()
}

// PublishProxy renders the proxy service of published port p: it runs
// inside the namespace, as a dynamic user with no capabilities, and may
// reach loopback only, where it hands each connection to the confined
// port. It dies with the namespace, not with the tunnel: a published web
// UI keeps answering while the VPN is down.
func PublishProxy(n *plan.Namespace, p plan.Publish) []byte {
	f := &file{comments: []string{fmt.Sprintf("Proxy of a published port of namespace %s, compiled from %s.", n.Name, n.Source)}}
	f.add("Unit", "Description", Escape(fmt.Sprintf("vpn-confinement: proxy %s → 127.0.0.1:%d in namespace %s", strings.Join(p.Listen, " "), p.Port, n.Name)))
	f.add("Unit", "Documentation", docs)
	f.add("Unit", "SourcePath", Escape(n.Source))
	ns := Instance(NsTemplate, n.Name)
	f.add("Unit", "BindsTo", ns)
	f.add("Unit", "After", ns)
	f.add("Service", "ExecStart", SocketProxyd+" --exit-idle-time="+proxyIdle+" 127.0.0.1:"+strconv.Itoa(int(p.Port)))
	f.add("Service", "NetworkNamespacePath", plan.NetnsPath(n.Name))
	f.add("Service", "DynamicUser", "yes")
	f.add("Service", "CapabilityBoundingSet", "")
	f.add("Service", "AmbientCapabilities", "")
	f.add("Service", "NoNewPrivileges", "yes")
	f.add("Service", "PrivateTmp", "yes")
	f.add("Service", "PrivateDevices", "yes")
	f.add("Service", "ProtectSystem", "strict")
	f.add("Service", "ProtectHome", "yes")
	f.add("Service", "ProtectControlGroups", "yes")
	f.add("Service", "ProtectKernelModules", "yes")
	f.add("Service", "ProtectKernelTunables", "yes")
	f.add("Service", "ProtectKernelLogs", "yes")
	f.add("Service", "ProtectClock", "yes")
	f.add("Service", "ProtectHostname", "yes")
	f.add("Service", "ProtectProc", "invisible")
	f.add("Service", "RestrictNamespaces", "yes")
	f.add("Service", "RestrictRealtime", "yes")
	f.add("Service", "RestrictSUIDSGID", "yes")
	f.add("Service", "LockPersonality", "yes")
	f.add("Service", "MemoryDenyWriteExecute", "yes")
	f.add("Service", "SystemCallArchitectures", "native")
	f.add("Service", "SystemCallFilter", "@system-service", "~@privileged @mount")
	f.add("Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")
	f.add("Service", "TemporaryFileSystem", "/run/systemd")
	f.add("Service", "BindReadOnlyPaths", strings.Join(hardening.SystemdKeep, " "))
	// This tool's runtime dir: the proxy needs nothing of it (confined
	// services see only their own namespace's dir).
	f.add("Service", "TemporaryFileSystem", plan.RuntimeDir+":ro")
	f.add("Service", "InaccessiblePaths", strings.Join(append(append(append([]string{}, hardening.ControlPlanes...), hardening.SystemBus...), hardening.ToolState...), " "))
	f.add("Service", "InaccessiblePaths", strings.Join(secretPaths(n), " "))
	// Loopback only: the proxy's own connections go to 127.0.0.1; the
	// connections it accepts belong to the host socket's unit, which this
	// filter does not touch.
	f.add("Service", "IPAddressDeny", "any")
	f.add("Service", "IPAddressAllow", "127.0.0.0/8 ::1/128")
	return f.bytes()
}
