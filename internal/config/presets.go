package config

import (
	"path"
	"strings"
)

// Preset is what one common self-hosted app needs to work confined, found
// by running its Debian package with its unmodified unit file (see
// docs/apps.md): paths it writes outside the defaults, and what to know
// about its web UI behind publish or the host link. Families and
// capabilities are not per app: AF_NETLINK and AF_INET6 are in every
// profile, and root services get the drop-privileges set.
type Preset struct {
	Name string
	// Units are the unit names (path.Match patterns) it applies to.
	Units []string
	// Writable are made writable in every profile; StrictWritable only
	// under ProtectSystem=strict (strict profile, root services), where
	// /var is read-only too.
	Writable, StrictWritable []string
	// Notes are printed by validate: settings the admin has to make in the
	// app itself.
	Notes []string
	// NeedsConfined lists units that must run in the same namespace.
	NeedsConfined []string
	// StrictCapabilities are what the app needs, as a root service, beyond
	// the strict profile's CAP_SETUID CAP_SETGID, and StrictWhy what fails
	// without them (measured): the compiler warns when they are missing.
	StrictCapabilities []string
	StrictWhy          string
	// StrictWriteExecute: the strict profile leaves out
	// MemoryDenyWriteExecute= for it (measured: the app fails without
	// writable executable memory).
	StrictWriteExecute bool
}

// Presets known to the compiler. Only apps whose Debian package was run
// confined are listed; the *arr apps are not packaged by Debian and get no
// preset (their upstream units keep their state under /var/lib, which the
// baseline leaves writable).
var Presets = []Preset{
	{
		Name:  "qbittorrent",
		Units: []string{"qbittorrent-nox@*.service", "qbittorrent-nox.service", "qbittorrent.service"},
		Notes: []string{
			"qBittorrent keeps everything in its user's home, which is made writable (the rest of /home stays read-only)",
			"its WebUI (port 8080) checks that the Host: header's port is its own: publish it on the same host port (listen: 127.0.0.1:8080), or set WebUI\\HostHeaderValidation=false",
			"through publish every client is 127.0.0.1: keep WebUI authentication on (\"Bypass authentication for clients on localhost\" off, the default)",
		},
	},
	{
		Name:           "transmission",
		Units:          []string{"transmission-daemon.service"},
		Writable:       []string{"/etc/transmission-daemon"},
		StrictWritable: []string{"/var/lib/transmission-daemon"},
		Notes: []string{
			"its settings live in /etc/transmission-daemon/settings.json, which is made writable so changes made in the web UI survive a restart",
			"through publish its RPC (port 9091) sees clients as 127.0.0.1, which the default rpc-whitelist admits; over the host link add the host-link address to rpc-whitelist (stop, edit, start: the daemon rewrites the file when it exits)",
		},
	},
	{
		Name:           "deluge",
		Units:          []string{"deluged.service"},
		StrictWritable: []string{"/var/lib/deluged", "/var/log/deluged"},
		NeedsConfined:  []string{"deluge-web.service"},
		Notes:          []string{"deluge-web must be confined in the same namespace: it reaches deluged on 127.0.0.1:58846 of the namespace"},
		// deluged (2.0.3, Python 3.11) exits with status 1 at start under
		// MemoryDenyWriteExecute=yes, every other strict setting kept
		// (test/e2e TestStrictProfile); deluge-web runs with it.
		StrictWriteExecute: true,
	},
	{
		Name:           "deluge-web",
		Units:          []string{"deluge-web.service"},
		StrictWritable: []string{"/var/lib/deluged"},
		NeedsConfined:  []string{"deluged.service"},
	},
	{
		Name:     "nginx",
		Units:    []string{"nginx.service"},
		Writable: []string{"/var/log/nginx", "/var/lib/nginx"},
		Notes:    []string{"nginx starts as root and drops to www-data: it needs allowRoot: true (it keeps CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_SETUID, CAP_SETGID)"},
		// Its ExecStartPre=nginx -t chowns /var/lib/nginx/* to www-data and
		// opens the www-data:adm 0640 logs as root.
		StrictCapabilities: []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE"},
		StrictWhy:          `nginx -t fails: chown("/var/lib/nginx/body", 33) failed (1: Operation not permitted)`,
	},
	{
		Name:     "lighttpd",
		Units:    []string{"lighttpd.service"},
		Writable: []string{"/var/log/lighttpd", "/var/cache/lighttpd"},
		Notes:    []string{"lighttpd starts as root and drops to www-data: it needs allowRoot: true (it keeps CAP_SETUID, CAP_SETGID, and CAP_KILL for systemctl reload)"},
		// ExecReload=/bin/kill -USR1 $MAINPID runs as root against the
		// www-data main process.
		StrictCapabilities: []string{"CAP_KILL"},
		StrictWhy:          "systemctl reload fails: /bin/kill: Operation not permitted",
	},
}

// presetFor returns the preset for unit u: explicit ("none" for no
// preset), else by unit name.
func presetFor(u, explicit string) (*Preset, bool) {
	if explicit == "none" {
		return nil, true
	}
	for i := range Presets {
		p := &Presets[i]
		if explicit != "" {
			if p.Name == explicit {
				return p, true
			}
			continue
		}
		for _, pat := range p.Units {
			if ok, _ := path.Match(pat, u); ok {
				return p, true
			}
		}
	}
	return nil, explicit == ""
}

// LookupPreset returns the preset called name.
func LookupPreset(name string) (*Preset, bool) {
	for i := range Presets {
		if Presets[i].Name == name {
			return &Presets[i], true
		}
	}
	return nil, false
}

// PresetNames lists the preset names (for messages and the schema).
func PresetNames() []string {
	var out []string
	for _, p := range Presets {
		out = append(out, p.Name)
	}
	return out
}

// instanceOf returns the instance of a unit name ("qbt" of
// "qbittorrent-nox@qbt.service"), or "".
func instanceOf(u string) string {
	at := strings.Index(u, "@")
	if at < 0 {
		return ""
	}
	return strings.TrimSuffix(u[at+1:], path.Ext(u))
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
