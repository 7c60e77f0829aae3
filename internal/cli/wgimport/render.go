package wgimport

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// doc is the namespace file to write, with the decisions already taken;
// render turns it into commented YAML.
type doc struct {
	name, source, dir string
	keyPath           string

	dns       []item
	search    []item
	dnsFromCL bool // --dns replaced the provider's DNS =

	ipv6Tunnel bool
	has6       bool // the provider file configures IPv6 somewhere

	iface     string
	addresses []item
	mtu       int
	port      int
	fwMark    uint32
	hostnames bool
	natpmp    bool // the provider file says NAT-PMP (Port Forwarding) = on
	peers     []peer

	services []string
	publish  []string
}

// item is one list entry; a commented item is kept as a comment with note.
type item struct {
	v         string
	commented bool
	note      string
}

type peer struct {
	publicKey string
	pskPath   string
	endpoint  string
	allowed   []item
	keepalive int
	// commented: the whole peer is left out (it only carries IPv6).
	commented bool
}

// HostnameRefreshSeconds is how often hostname endpoints are re-resolved
// in imported files (providers rotate addresses rarely; 5 minutes keeps
// the tunnel following them without hammering the resolver).
const HostnameRefreshSeconds = 300

var plainRe = regexp.MustCompile(`^[A-Za-z0-9/][A-Za-z0-9_.:/@=+-]*$`)

// yq renders s as a YAML scalar: plain when unambiguous, else
// double-quoted (a JSON string is a valid YAML double-quoted scalar).
func yq(s string) string {
	// IPv6 literals are always quoted: one ending in "::" would otherwise
	// end in a mapping indicator and no longer be YAML.
	if plainRe.MatchString(s) && !strings.Contains(s, ": ") && !strings.HasSuffix(s, ":") && strings.Count(s, ":") < 2 {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

type writer struct{ b strings.Builder }

func (w *writer) line(indent int, format string, args ...any) {
	w.b.WriteString(strings.Repeat(" ", indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *writer) comment(indent int, text string) {
	for _, l := range wrap(text, 76-indent) {
		w.line(indent, "# %s", l)
	}
}

func (w *writer) items(indent int, list []item) {
	for _, it := range list {
		if it.commented {
			w.line(indent, "# - %s   # %s", yq(it.v), it.note)
		} else {
			w.line(indent, "- %s", yq(it.v))
		}
	}
}

func wrap(text string, width int) []string {
	var out []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			out = append(out, line)
			line = word
			continue
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		out = append(out, line)
	}
	return out
}

func active(list []item) []item {
	var out []item
	for _, it := range list {
		if !it.commented {
			out = append(out, it)
		}
	}
	return out
}

func (d *doc) render() []byte {
	w := &writer{}
	w.comment(0, fmt.Sprintf("vpn-confinement namespace %q, imported from %s by vpn-confinement import-wg-quick. Reference for every key: man 5 vpn-confinement.d.", d.name, d.source))
	w.comment(0, fmt.Sprintf("The private key was moved to %s (mode 0600); keys are never copied into this file. Check the file with: vpn-confinement validate %s/%s.yaml", d.keyPath, d.dir, d.name))
	w.line(0, "")

	w.line(0, "dns:")
	if d.dnsFromCL {
		w.comment(2, "Given with --dns. In strict mode (the default) confined services resolve names only through these resolvers, through the tunnel.")
	} else {
		w.comment(2, "From the provider's DNS = line. In strict mode (the default) confined services resolve names only through these resolvers, through the tunnel.")
	}
	w.line(2, "servers:")
	w.items(4, d.dns)
	if len(d.search) > 0 {
		w.line(2, "search:")
		w.items(4, d.search)
	}
	w.line(0, "")

	w.line(0, "ipv6:")
	switch {
	case d.ipv6Tunnel:
		w.comment(2, "IPv6 goes through the tunnel, like IPv4 (chosen with --ipv6 tunnel).")
		w.line(2, "mode: tunnel")
	case d.has6:
		w.comment(2, `The provider file also configures IPv6. With "disable" (the default) IPv6 is switched off inside the namespace and dropped by its firewall, so the provider's IPv6 entries are kept below only as comments: nothing can leak over IPv6, and services use IPv4. To send IPv6 through the tunnel as well, set "mode: tunnel" and uncomment them.`)
		w.line(2, "mode: disable")
	default:
		w.comment(2, `The provider file has no IPv6: IPv6 is switched off inside the namespace and dropped by its firewall.`)
		w.line(2, "mode: disable")
	}
	w.line(0, "")

	w.line(0, "wireguard:")
	w.comment(2, "Interface name inside the namespace; must be unique across all namespace files.")
	w.line(2, "interface: %s", yq(d.iface))
	w.line(2, "privateKeyFile: %s", yq(d.keyPath))
	w.line(2, "addresses:")
	w.items(4, d.addresses)
	if d.mtu != 0 {
		w.line(2, "mtu: %d", d.mtu)
	}
	if d.port != 0 {
		w.line(2, "listenPort: %d", d.port)
	}
	if d.fwMark != 0 {
		w.line(2, "fwMark: %d", d.fwMark)
	}
	if d.hostnames {
		w.comment(2, fmt.Sprintf("The provider gives hostname endpoints. They are resolved by the tunnel helper on the host (never inside the namespace) with the host's resolver, and re-resolved every %d seconds. securityProfile: highAssurance needs literal addresses instead.", HostnameRefreshSeconds))
		w.line(2, "allowHostnameEndpoints: true")
		w.line(2, "endpointRefreshSeconds: %d", HostnameRefreshSeconds)
	}
	w.line(2, "peers:")
	for _, p := range d.peers {
		ind, pre := 4, ""
		if p.commented {
			w.comment(4, "This peer routes only IPv6, which is disabled; it is left out:")
			pre = "# "
		}
		w.line(ind, "%s- publicKey: %s", pre, yq(p.publicKey))
		if p.pskPath != "" {
			w.line(ind, "%s  presharedKeyFile: %s", pre, yq(p.pskPath))
		}
		if p.endpoint != "" {
			w.line(ind, "%s  endpoint: %s", pre, yq(p.endpoint))
		}
		w.line(ind, "%s  allowedIPs:", pre)
		for _, a := range p.allowed {
			switch {
			case p.commented:
				w.line(ind, "%s    - %s", pre, yq(a.v))
			case a.commented:
				w.line(ind+4, "# - %s   # %s", yq(a.v), a.note)
			default:
				w.line(ind+4, "- %s", yq(a.v))
			}
		}
		if p.keepalive != 0 {
			w.line(ind, "%s  persistentKeepalive: %d", pre, p.keepalive)
		}
	}
	w.line(0, "")

	if len(d.publish) > 0 {
		w.comment(0, "Confined ports served on the host (given with --publish): a socket on the host hands each connection to the port inside the namespace, e.g. a web UI on http://localhost:PORT.")
		w.line(0, "publish:")
		for _, l := range d.publish {
			w.line(2, "- listen: %s", yq(l))
		}
		w.line(0, "")
	}
	if d.natpmp {
		w.comment(0, "The provider file was made with NAT-PMP port forwarding on (ProtonVPN, P2P servers): lease a forwarded port, open it inbound on the tunnel only, and write it to /run/vpn-confinement/"+d.name+"/forwarded-port. Add your torrent client under apps (man 5 vpn-confinement.d).")
		w.line(0, "portForwarding:")
		w.line(2, "protocol: natpmp")
		w.line(0, "")
	}
	w.comment(0, "The existing services to confine. Starting one starts the namespace and the tunnel first. While the tunnel is down they keep running with no way out (onTunnelLoss: block); they never fall back to the host's network.")
	if len(d.services) == 0 {
		w.comment(0, "For example: - unit: qbittorrent-nox@alice.service (Debian's qBittorrent, run as user alice)")
		w.line(0, "services: []")
	} else {
		w.line(0, "services:")
		for _, s := range d.services {
			w.line(2, "- unit: %s", yq(s))
		}
	}
	return []byte(w.b.String())
}
