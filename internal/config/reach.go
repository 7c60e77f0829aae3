package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// PublishUnitPrefix starts the names of the generated socket and proxy
// units of publish entries: vpn-publish-NAME-PORT.{socket,service}.
const PublishUnitPrefix = "vpn-publish-"

// listenAddr is one parsed publish listen address.
type listenAddr struct {
	addr netip.Addr // invalid for a wildcard of both families
	port uint16
	any  bool // 0.0.0.0 or [::]
}

func (l listenAddr) stream() string {
	if l.addr.Is6() {
		return "[" + l.addr.String() + "]:" + strconv.Itoa(int(l.port))
	}
	return l.addr.String() + ":" + strconv.Itoa(int(l.port))
}

// parseListen parses a publish listen value: "PORT" (loopback, both
// families), "localhost:PORT" (the same), "ADDR:PORT" or "[V6]:PORT".
func parseListen(s string) ([]listenAddr, error) {
	if _, err := strconv.Atoi(s); err == nil {
		p, err := parsePort(s)
		if err != nil {
			return nil, err
		}
		return loopback(p), nil
	}
	host, portText, ok := cutHostPort(s)
	if !ok {
		return nil, fmt.Errorf("must be PORT, localhost:PORT, ADDRESS:PORT or [IPv6]:PORT (got %q)", s)
	}
	port, err := parsePort(portText)
	if err != nil {
		return nil, err
	}
	if host == "localhost" {
		return loopback(port), nil
	}
	a, ok := ParseIPLiteral(host)
	if !ok {
		return nil, fmt.Errorf("%q is not an IP address (host names other than localhost are not resolved; give the address, and bindToDevice to pin an interface)", host)
	}
	a = a.Unmap()
	if a.IsMulticast() || a.IsLinkLocalUnicast() && a.Is6() {
		return nil, fmt.Errorf("%s cannot be a listen address", a)
	}
	return []listenAddr{{addr: a, port: port, any: a.IsUnspecified()}}, nil
}

func loopback(p uint16) []listenAddr {
	return []listenAddr{{addr: netip.MustParseAddr("127.0.0.1"), port: p}, {addr: netip.IPv6Loopback(), port: p}}
}

func cutHostPort(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return "", "", false
		}
		return s[1:end], s[end+2:], true
	}
	i := strings.LastIndex(s, ":")
	if i <= 0 || strings.Count(s, ":") > 1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port must be between 1 and 65535 (got %d)", n)
	}
	return uint16(n), nil
}

// compilePublish turns publish entries into plan.Publish. Entries with the
// same host port form one socket (and one proxy) when they reach the same
// confined port; a host port cannot lead to two places.
func (c *compiler) compilePublish(n *plan.Namespace) {
	s := c.d.schema.Publish
	byPort := map[uint16]*plan.Publish{}
	var order []uint16
	seen := map[string]string{} // ListenStream value → key
	for i, e := range s {
		key := fmt.Sprintf("publish[%d]", i)
		if e.Listen == nil {
			c.errorf(key+".listen", "is required: the host address and port, e.g. 127.0.0.1:8080 (localhost only) or 0.0.0.0:8080 (the LAN)")
			continue
		}
		addrs, err := parseListen(*e.Listen)
		if err != nil {
			c.errorf(key+".listen", "%v", err)
			continue
		}
		hostPort := addrs[0].port
		lan := nonLoopback(addrs)
		target := hostPort
		if e.Port != nil {
			if *e.Port < 1 || *e.Port > 65535 {
				c.errorf(key+".port", "must be between 1 and 65535 (got %d)", *e.Port)
				continue
			}
			target = uint16(*e.Port)
		}
		if lan && c.ha && !boolean(e.AllowLAN, false) {
			c.errorf(key+".listen", "%s is reachable from other hosts; highAssurance publishes on loopback only unless the entry sets allowLAN: true", *e.Listen)
		}
		if !lan && e.AllowLAN != nil {
			c.warnf(key+".allowLAN", "has no effect: %s is a loopback address", *e.Listen)
		}
		activate := str(e.Unit, "")
		if activate != "" && !strings.HasSuffix(activate, ".service") {
			c.errorf(key+".unit", "must be a service listed under services (got %q)", activate)
		}
		dev := str(e.BindToDevice, "")
		if dev != "" && !ValidInterfaceName(dev) {
			c.errorf(key+".bindToDevice", "must be an interface name (got %q)", dev)
		}
		for _, a := range addrs {
			v := a.stream()
			if prev, dup := seen[v]; dup {
				c.errorf(key+".listen", "%s is already published by %s", v, prev)
				continue
			}
			seen[v] = key
		}
		p, ok := byPort[hostPort]
		if !ok {
			p = &plan.Publish{Unit: PublishUnitPrefix + c.name + "-" + strconv.Itoa(int(hostPort)), Port: target, Activate: activate, BindToDevice: dev}
			byPort[hostPort] = p
			order = append(order, hostPort)
		} else if p.Port != target || p.Activate != activate || p.BindToDevice != dev {
			c.errorf(key, "host port %d is published twice with different targets (port, unit or bindToDevice); one host port leads to one place", hostPort)
			continue
		}
		for _, a := range addrs {
			p.Listen = append(p.Listen, a.stream())
		}
		p.LAN = p.LAN || lan
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, hp := range order {
		p := byPort[hp]
		p.Listen = dedupeStrings(p.Listen)
		n.Publish = append(n.Publish, *p)
	}
	// A wildcard collides with every address of its family on that port.
	for _, p := range n.Publish {
		for _, l := range p.Listen {
			if l == "0.0.0.0:"+portOf(l) || l == "[::]:"+portOf(l) {
				if len(p.Listen) > 1 {
					c.errorf("publish", "%s already listens on every address; %s overlaps it", l, strings.Join(p.Listen, ", "))
				}
			}
		}
	}
}

func portOf(stream string) string {
	return stream[strings.LastIndex(stream, ":")+1:]
}

// checkPublishTargets runs after services are compiled: an activating
// entry must name a listed service.
func (c *compiler) checkPublishTargets(n *plan.Namespace) {
	listed := map[string]bool{}
	for _, u := range n.Services {
		listed[u.Name] = true
	}
	for i, e := range c.d.schema.Publish {
		u := str(e.Unit, "")
		if u != "" && strings.HasSuffix(u, ".service") && !listed[u] {
			c.errorf(fmt.Sprintf("publish[%d].unit", i), "%s must be listed under services: the socket is handed to it, so it must run confined in this namespace", u)
		}
		// Handed the host socket itself, the service answers other hosts
		// from its own cgroup: the IP filter of an allowList namespace
		// would drop every packet of theirs (through the proxy, clients
		// are 127.0.0.1).
		if u == "" || !n.IPFiltered() || e.Listen == nil {
			continue
		}
		if addrs, err := parseListen(*e.Listen); err == nil && nonLoopback(addrs) {
			c.errorf(fmt.Sprintf("publish[%d].unit", i), "%s would be unreachable from other hosts: it gets the host socket of %s itself, and the IP filter of this allowList namespace (egress.allowedCidrs) drops every packet from an address it does not list; remove publish[%d].unit to go through the proxy (clients then come from 127.0.0.1), or publish on loopback", u, *e.Listen, i)
		}
	}
}

// nonLoopback reports whether a listen value reaches other hosts.
func nonLoopback(addrs []listenAddr) bool {
	for _, a := range addrs {
		if !a.addr.IsLoopback() {
			return true
		}
	}
	return false
}

// compileToHost handles egress.toHost: host ports confined services may
// open over the host link, which it enables.
func (c *compiler) compileToHost(n *plan.Namespace) {
	s := &c.d.schema.Egress.ToHost
	n.Egress.ToHostTCP = c.ports("egress.toHost.tcp", s.TCP)
	n.Egress.ToHostUDP = c.ports("egress.toHost.udp", s.UDP)
	if n.DNS.Mode != plan.DNSCompat {
		for _, list := range []struct {
			key   string
			ports []uint16
		}{{"egress.toHost.tcp", n.Egress.ToHostTCP}, {"egress.toHost.udp", n.Egress.ToHostUDP}} {
			for _, p := range list.ports {
				switch p {
				case 53, 853, 5353, 5355:
					c.errorf(list.key, "port %d is DNS: strict DNS resolves names only through the tunnel, so a resolver on the host stays unreachable (use dns.mode: compat to use the host's resolver)", p)
				}
			}
		}
	}
	if len(n.Egress.ToHostTCP)+len(n.Egress.ToHostUDP) > 0 {
		c.warnf("egress.toHost", "confined services can open connections to the host on %s: a host service reachable from them is attack surface (see THREAT MODEL in vpn-confinement.d(5))", portList(n.Egress.ToHostTCP, n.Egress.ToHostUDP))
	}
}

func portList(tcp, udp []uint16) string {
	var parts []string
	for _, p := range tcp {
		parts = append(parts, fmt.Sprintf("tcp/%d", p))
	}
	for _, p := range udp {
		parts = append(parts, fmt.Sprintf("udp/%d", p))
	}
	return strings.Join(parts, ", ")
}

// publishCollisions invalidates every file that publishes the same host
// address and port as another (a wildcard collides with every address of
// its family on the port).
func publishCollisions(results []*Result) {
	type owner struct {
		r    *Result
		addr string
	}
	byPort := map[string][]owner{}
	for _, r := range results {
		if r.Plan == nil {
			continue
		}
		for _, p := range r.Plan.Publish {
			for _, l := range p.Listen {
				byPort[portOf(l)] = append(byPort[portOf(l)], owner{r, l})
			}
		}
	}
	for port, owners := range byPort {
		for i, a := range owners {
			for _, b := range owners[i+1:] {
				if a.r == b.r || !listenOverlap(a.addr, b.addr) {
					continue
				}
				a.r.addErr("publish", "%s is also published by %s (%s): a host address and port can be published once (port %s)", a.addr, b.r.File, b.addr, port)
				b.r.addErr("publish", "%s is also published by %s (%s): a host address and port can be published once (port %s)", b.addr, a.r.File, a.addr, port)
			}
		}
	}
}

func listenOverlap(a, b string) bool {
	if a == b {
		return true
	}
	v6 := func(s string) bool { return strings.HasPrefix(s, "[") }
	wild := func(s string) bool { return strings.HasPrefix(s, "0.0.0.0:") || strings.HasPrefix(s, "[::]:") }
	// [::] is dual-stack by default (IPV6_V6ONLY off), so it also takes
	// the IPv4 addresses of its port.
	return (wild(a) || wild(b)) && (v6(a) == v6(b) || strings.HasPrefix(a, "[::]:") || strings.HasPrefix(b, "[::]:"))
}
