// Package hardening holds what the drop-in of a confined service takes
// away and why: the profiles' capability sets, the capabilities no
// confined service may have, the address families, the control planes and
// tool state it must not reach, and the paths it must never be able to
// write. The compiler validates against it, the drop-in renderer emits it,
// and `vpn-confinement validate` explains it from the same tables.
//
// The facts behind it were measured under systemd 252, and what holds now
// is attacked by test/e2e/escape*_test.go and documented in
// vpn-confinement.d(5), CONTROL PLANES and WHAT A CONFINED ROOT SERVICE
// CAN STILL DO. Before: a root service with no
// capabilities at all could start units over /run/systemd/private and over
// the D-Bus system bus, and under ProtectSystem=full it could write /run
// and /var (unit dirs, udev rules, cron spools, dpkg's scripts).
package hardening

import (
	"sort"
	"strings"
)

// Families every confined service gets. AF_NETLINK: libtorrent (qBittorrent,
// Deluge) and aria2 enumerate interfaces with it and silently never open
// their ports without it; without CAP_NET_ADMIN it can only read. AF_INET6
// even with IPv6 off: nginx's default site listens on [::]:80 and refuses to
// start without the family, while the namespace (sysctl and firewall) lets
// no IPv6 packet in or out.
var Families = []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}

// RootBaseline is the capability bounding set of a root service (allowRoot)
// in the baseline profile: what daemons need to start as root and drop
// privileges (change owner, read and write their files regardless of mode,
// switch user and group, signal their workers, bind low ports, chroot),
// and nothing that changes or leaves the namespace.
var RootBaseline = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_CHROOT"}

// RootStrict is the strict profile's set for a root service: switching user
// and group only.
var RootStrict = []string{"CAP_SETGID", "CAP_SETUID"}

// Forbidden capabilities, with what they would allow. No profile and no
// extraCapabilities entry can give them; a drop-in that sorts after ours
// and gives one back makes the file invalid.
var Forbidden = map[string]string{
	"CAP_NET_ADMIN":          "change the namespace's network: flush the kill switch, add routes, links or addresses",
	"CAP_SYS_ADMIN":          "setns() out of the namespace, mount over the DNS files, and much more",
	"CAP_NET_RAW":            "raw and packet sockets, which bypass socket-level filters",
	"CAP_SYS_PTRACE":         "ptrace host processes and read their memory, or enter their namespaces through /proc",
	"CAP_SYS_MODULE":         "load kernel modules",
	"CAP_DAC_READ_SEARCH":    "open_by_handle_at(), which reaches files its mount namespace hides (key files)",
	"CAP_MKNOD":              "create device nodes (a raw disk)",
	"CAP_BPF":                "load BPF programs",
	"CAP_PERFMON":            "performance monitoring of the whole host",
	"CAP_SYS_RAWIO":          "raw I/O ports and memory",
	"CAP_SYS_BOOT":           "reboot the host or load a new kernel",
	"CAP_SYS_TIME":           "set the host's clock",
	"CAP_MAC_ADMIN":          "change the MAC policy",
	"CAP_MAC_OVERRIDE":       "override the MAC policy",
	"CAP_LINUX_IMMUTABLE":    "change immutable files",
	"CAP_SETFCAP":            "give files capabilities",
	"CAP_SETPCAP":            "change other capability sets",
	"CAP_SYSLOG":             "read kernel addresses, clear the kernel log",
	"CAP_AUDIT_CONTROL":      "change the audit rules",
	"CAP_CHECKPOINT_RESTORE": "checkpoint and restore other processes",
	"CAP_SYS_RESOURCE":       "exceed every resource limit",
	"CAP_IPC_OWNER":          "bypass permission checks on System V IPC of other users",
}

// Known is every capability name systemd accepts.
var Known = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range []string{"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_MAC_ADMIN",
		"CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW",
		"CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
		"CAP_SYS_CHROOT", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_WAKE_ALARM"} {
		m[c] = true
	}
	return m
}()

// Capabilities is the bounding set of a service: none for a non-root
// service (it cannot use any: NoNewPrivileges=yes stops setuid and file
// capabilities), the profile's root set for a root one, plus extras.
func Capabilities(root, strict bool, extra []string) []string {
	var caps []string
	if root {
		caps = append(caps, RootBaseline...)
		if strict {
			caps = append([]string{}, RootStrict...)
		}
	}
	caps = append(caps, extra...)
	sort.Strings(caps)
	out := caps[:0]
	for i, c := range caps {
		if i == 0 || c != caps[i-1] {
			out = append(out, c)
		}
	}
	return out
}

// ControlPlanes are the IPC endpoints through which a confined process
// could start, change or reload units or containers on the host, and so
// leave the namespace. They are hidden from every confined service:
//
//   - /run/systemd is replaced by an empty tmpfs (InaccessiblePaths= of it
//     fails under systemd 252), with only the journal, sd_notify and userdb
//     (DynamicUser name lookups) bound back read-only: this removes the
//     service manager's private socket and every present and future
//     socket and state directory of systemd (units, generator output,
//     transient units, credentials);
//   - the D-Bus system bus, which fronts systemd, logind, machined,
//     networkd, resolved and NetworkManager (root can StartUnit on it with
//     no capabilities at all), unless the service sets allowSystemBus;
//   - user managers and user buses (/run/user), udev's control socket
//     (the whole of /run/udev: a daemon re-creates its socket with unlink
//     and bind, and the kernel then drops a mount over the old one in
//     every namespace, so a hidden socket file comes back after a restart
//     of its daemon, while a hidden directory stays hidden);
//   - the container engines' sockets (docker, podman, containerd, CRI-O,
//     LXD/Incus, snapd, libvirt).
//
// Sockets directly in /run (docker.sock, snapd.socket) can only be hidden
// as files: they come back when their daemon re-creates them, and any
// socket that appears after the service started is not hidden at all
// (vpn-confinement verify reports both; vpn-confinement.d(5), CONTROL
// PLANES).
//
// Abstract UNIX sockets need no entry: they belong to a network namespace,
// and the confined one has none of the host's. /var/run is a symlink to
// /run on every systemd system, so the /run paths cover it.
var ControlPlanes = []string{
	"-/run/user", "-/run/udev",
	"-/run/docker.sock", "-/run/docker", "-/run/containerd", "-/run/podman", "-/run/crio", "-/run/libpod",
	"-/run/lxd", "-/var/snap/lxd/common/lxd", "-/var/lib/incus", "-/run/incus", "-/run/snapd.socket",
	"-/run/snapd-snap.socket", "-/run/libvirt",
}

// SystemBus is hidden unless a service opts in with allowSystemBus.
var SystemBus = []string{"-/run/dbus"}

// SystemdKeep are the parts of /run/systemd bound back into its tmpfs.
var SystemdKeep = []string{"/run/systemd/journal", "-/run/systemd/notify", "-/run/systemd/userdb"}

// ToolState is this tool's own state, hidden from confined services: the
// namespace pins, the userspace tunnels' UAPI sockets (which would let
// root reconfigure the tunnel), the records of good starts. Its runtime
// dir gets a tmpfs with only the service's own namespace dir bound back.
var ToolState = []string{"-/run/netns", "-/run/wireguard", "-/var/lib/vpn-confinement"}

// ProtectedPrefixes are directories a confined service must not be able to
// write, because a privileged host process loads what is in them later;
// readWritePaths may not point into them, and a drop-in after ours that
// makes one writable makes the file invalid.
var ProtectedPrefixes = []string{"/etc/systemd", "/run/systemd", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/boot",
	"/etc/vpn-confinement.d", "/var/lib/vpn-confinement", "/run/vpn-confinement", "/run/netns", "/run/wireguard",
	"/etc/cron.d", "/etc/cron.daily", "/etc/cron.hourly", "/etc/cron.weekly", "/etc/cron.monthly", "/var/spool/cron",
	"/etc/udev", "/run/udev", "/etc/sudoers.d", "/etc/pam.d", "/etc/security", "/etc/ld.so.conf.d", "/etc/modprobe.d",
	"/run/modprobe.d", "/etc/sysctl.d", "/run/sysctl.d", "/etc/tmpfiles.d", "/run/tmpfiles.d", "/etc/binfmt.d",
	"/run/binfmt.d", "/var/lib/dpkg", "/etc/apt", "/var/lib/systemd", "/run/user", "/run/dbus", "/run/credentials",
	"/run/initramfs", "/root"}

// ProtectedExact may not be made writable as a whole (their children can).
var ProtectedExact = []string{"/", "/etc", "/var", "/var/lib", "/var/log", "/run", "/home", "/srv", "/opt", "/tmp", "/var/tmp"}

// WriteRefusal says why a writable path p is refused, or "".
func WriteRefusal(p string) string {
	for _, x := range ProtectedExact {
		if p == x {
			return p + " as a whole is too much: name the service's own directory below it"
		}
	}
	for _, x := range ProtectedPrefixes {
		if p == x || strings.HasPrefix(p, x+"/") {
			return p + " is in " + x + ", which privileged host processes load or which holds the confinement itself"
		}
	}
	return ""
}
