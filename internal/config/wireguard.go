package config

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Credential names the generator passes with LoadCredential= so that the
// tunnel helper reads keys from systemd's private credential store.
const (
	CredPrivateKey = "wireguard-private-key"
	CredWgQuick    = "wireguard-wg-quick.conf"
)

// CredPresharedKey names the credential for peer i's preshared key.
func CredPresharedKey(i int) string { return fmt.Sprintf("wireguard-preshared-key-%d", i) }

// ValidKey reports whether s is a base64 WireGuard key (32 bytes).
func ValidKey(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// unsafePathChars are rejected in paths that end up in unit files: paths are
// joined into space-separated lists (InaccessiblePaths=), and control
// characters could inject unit lines.
func unsafePath(p string) bool {
	return strings.ContainsFunc(p, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
	})
}

func (c *compiler) absPath(key, p string) bool {
	if unsafePath(p) {
		c.errorf(key, "must not contain whitespace, quotes, backslashes or control characters (got %q)", p)
		return false
	}
	if !filepath.IsAbs(p) {
		c.errorf(key, "must be an absolute path (got %q)", p)
		return false
	}
	if filepath.Clean(p) != p {
		c.errorf(key, "must be a clean path without ./, ../ or trailing slashes (got %q)", p)
		return false
	}
	return true
}

// DefaultEndpointRefresh is how often hostname endpoints are re-resolved
// when wireguard.endpointRefreshSeconds is not set (seconds).
const DefaultEndpointRefresh = 300

// peerError reports a problem of peer i where the admin can see it: at the
// peer's line in the provider file when it came from wireguard.configFile,
// and at the YAML key otherwise.
func (c *compiler) peerError(i int, key, format string, args ...any) {
	if loc, ok := c.peerLines[i]; ok {
		c.d.diags = append(c.d.diags, Diag{File: loc.file, Line: loc.line, Key: "Endpoint", Message: fmt.Sprintf(format, args...)})
		return
	}
	c.errorf(key, format, args...)
}

func (c *compiler) compileWireGuard(n *plan.Namespace, wgq *wgQuickImport) {
	s := &c.d.schema.WireGuard
	wg := &n.WireGuard
	wg.Interface = str(s.Interface, "wg0")
	if !ValidInterfaceName(wg.Interface) {
		c.errorf("wireguard.interface", "must be 1-15 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit (got %q)", wg.Interface)
	}
	wg.Backend = c.enum("wireguard.backend", s.Backend, plan.BackendAuto, plan.BackendAuto, plan.BackendKernel, plan.BackendUserspace)
	wg.AllowedIPsAsRoutes = boolean(s.AllowedIPsAsRoutes, true)
	if !wg.AllowedIPsAsRoutes {
		if c.ha {
			c.errorf("wireguard.allowedIPsAsRoutes", "highAssurance requires allowedIPsAsRoutes: true so peer routes are installed inside the namespace")
		} else {
			c.warnf("wireguard.allowedIPsAsRoutes", "routes are not installed from allowedIPs; the namespace has no route out unless you add one")
		}
	}

	// Key material: exactly one source. The generator never reads key files.
	switch {
	case wgq != nil:
		wg.PrivateKey = plan.KeySource{WgQuickFile: wgq.path, Credential: CredWgQuick}
	case s.PrivateKey != nil:
		if c.ha {
			c.errorf("wireguard.privateKey", "highAssurance rejects an inline private key; use privateKeyFile (mode 0600) or generatePrivateKeyFile")
		} else {
			c.warnf("wireguard.privateKey", "inline private key: anyone who can read this file has the key; prefer privateKeyFile (mode 0600)")
		}
		if s.PrivateKeyFile != nil {
			c.errorf("wireguard.privateKey", "set either privateKey or privateKeyFile, not both")
		}
		if !ValidKey(*s.PrivateKey) {
			c.errorf("wireguard.privateKey", "is not a base64 WireGuard key (32 bytes)")
		}
		wg.PrivateKey = plan.KeySource{InlineYAML: true}
	case s.PrivateKeyFile != nil:
		if c.absPath("wireguard.privateKeyFile", *s.PrivateKeyFile) {
			wg.PrivateKey = plan.KeySource{File: *s.PrivateKeyFile, Generate: boolean(s.GeneratePrivateKeyFile, false)}
			if !wg.PrivateKey.Generate {
				// LoadCredential= needs the file to exist at start; a key that
				// is generated on first start is read directly instead.
				wg.PrivateKey.Credential = CredPrivateKey
			}
		}
	case c.configFileFailed:
		// The key was to come from the provider file: its error says why not.
	default:
		if boolean(s.GeneratePrivateKeyFile, false) {
			c.errorf("wireguard.generatePrivateKeyFile", "needs wireguard.privateKeyFile: the path where the key is created")
		} else {
			c.errorf("wireguard", "needs a private key: set privateKeyFile (or configFile, a wg-quick file)")
		}
	}
	if wgq != nil && s.GeneratePrivateKeyFile != nil {
		c.errorf("wireguard.generatePrivateKeyFile", "cannot be combined with configFile (the key comes from the file)")
	}

	if wgq != nil {
		wg.Addresses = wgq.addresses
		wg.ListenPort = wgq.listenPort
		wg.MTU = wgq.mtu
		wg.FwMark = wgq.fwMark
		wg.Peers = wgq.peers
	} else {
		for i, a := range s.Addresses {
			key := fmt.Sprintf("wireguard.addresses[%d]", i)
			p, ok := ParseCIDR(a)
			if !ok {
				c.errorf(key, "must be an address with prefix length, e.g. 10.64.0.2/32 (got %q)", a)
				continue
			}
			if p.Addr().Is6() && !n.IPv6 {
				c.errorf(key, "IPv6 address %s cannot be configured while ipv6.mode is \"disable\" (IPv6 is switched off inside the namespace); set ipv6.mode: tunnel or remove it", a)
				continue
			}
			wg.Addresses = append(wg.Addresses, p)
		}
		if s.ListenPort != nil {
			if *s.ListenPort < 1 || *s.ListenPort > 65535 {
				c.errorf("wireguard.listenPort", "must be between 1 and 65535 (got %d)", *s.ListenPort)
			}
			wg.ListenPort = *s.ListenPort
		}
		if s.MTU != nil {
			wg.MTU = *s.MTU
		}
		if s.FwMark != nil {
			if *s.FwMark < 0 || *s.FwMark > 0xffffffff {
				c.errorf("wireguard.fwMark", "must be between 0 and 4294967295")
			}
			wg.FwMark = uint32(*s.FwMark)
		}
		c.compilePeers(n, s)
	}
	if len(wg.Addresses) == 0 && len(s.Addresses) == 0 && wgq == nil && !c.configFileFailed {
		c.errorf("wireguard.addresses", "must list at least one tunnel address")
	}
	if wg.MTU != 0 {
		// IPv6 needs 1280 on every link; IPv4 alone works down to 576.
		lo := 576
		if n.IPv6 {
			lo = 1280
		}
		if wg.MTU < lo || wg.MTU > 65535 {
			c.errorf("wireguard.mtu", "must be between %d and 65535 (got %d)", lo, wg.MTU)
		}
	}
	if len(wg.Peers) == 0 && !c.configFileFailed {
		c.errorf("wireguard.peers", "must list at least one peer")
	}

	c.compileEndpointsAndPinning(n, s)

	if s.SocketNamespace != nil {
		sn := *s.SocketNamespace
		switch {
		case sn == "init":
			// same as unset
		case !ValidNamespaceName(sn):
			c.errorf("wireguard.socketNamespace", "must be \"init\" or a valid namespace name (got %q)", sn)
		case sn == c.name:
			c.errorf("wireguard.socketNamespace", "must not be the confinement namespace itself: the encrypted UDP socket needs a namespace with an uplink")
		default:
			wg.SocketNamespace = sn
		}
	}

	if n.IPv6 {
		has6 := false
		for _, a := range wg.Addresses {
			has6 = has6 || a.Addr().Is6()
		}
		for _, p := range wg.Peers {
			for _, a := range p.AllowedIPs {
				has6 = has6 || a.Addr().Is6()
			}
		}
		if !has6 {
			c.errorf("ipv6.mode", "\"tunnel\" requires an IPv6 tunnel address and IPv6 allowedIPs on a peer")
		}
	}
}

func (c *compiler) compilePeers(n *plan.Namespace, s *wireguardSchema) {
	for i, ps := range s.Peers {
		key := fmt.Sprintf("wireguard.peers[%d]", i)
		var p plan.Peer
		if ps.PublicKey == nil {
			c.errorf(key+".publicKey", "is required")
		} else if !ValidKey(*ps.PublicKey) {
			c.errorf(key+".publicKey", "is not a base64 WireGuard key (32 bytes)")
		} else {
			p.PublicKey = *ps.PublicKey
		}
		if ps.PresharedKey != nil {
			if c.ha {
				c.errorf(key+".presharedKey", "highAssurance rejects an inline preshared key; use presharedKeyFile")
			} else {
				c.warnf(key+".presharedKey", "inline preshared key; prefer presharedKeyFile (mode 0600)")
			}
			if ps.PresharedKeyFile != nil {
				c.errorf(key+".presharedKey", "set either presharedKey or presharedKeyFile, not both")
			}
			if !ValidKey(*ps.PresharedKey) {
				c.errorf(key+".presharedKey", "is not a base64 WireGuard key (32 bytes)")
			}
			p.PresharedKey = &plan.KeySource{InlineYAML: true}
		} else if ps.PresharedKeyFile != nil && c.absPath(key+".presharedKeyFile", *ps.PresharedKeyFile) {
			p.PresharedKey = &plan.KeySource{File: *ps.PresharedKeyFile, Credential: CredPresharedKey(i)}
		}
		if ps.Endpoint != nil {
			host, port, _, err := ParseEndpoint(*ps.Endpoint)
			if err != nil {
				c.errorf(key+".endpoint", "must be IPv4:port, [IPv6]:port or hostname:port: %v", err)
			} else {
				p.Endpoint = &plan.Endpoint{Host: host, Port: port}
			}
		}
		for j, a := range ps.AllowedIPs {
			k := fmt.Sprintf("%s.allowedIPs[%d]", key, j)
			pfx, ok := ParseCIDR(a)
			if !ok {
				c.errorf(k, "must be a CIDR such as 0.0.0.0/0 (got %q)", a)
				continue
			}
			if pfx.Addr().Is6() && !n.IPv6 {
				c.errorf(k, "IPv6 route %s cannot be installed while ipv6.mode is \"disable\"; set ipv6.mode: tunnel or remove it", a)
				continue
			}
			p.AllowedIPs = append(p.AllowedIPs, pfx.Masked())
		}
		if len(ps.AllowedIPs) == 0 {
			c.errorf(key+".allowedIPs", "must list the networks reached through this peer, e.g. 0.0.0.0/0")
		}
		if ps.PersistentKeepalive != nil {
			if *ps.PersistentKeepalive < 0 || *ps.PersistentKeepalive > 65535 {
				c.errorf(key+".persistentKeepalive", "must be between 0 and 65535 seconds")
			}
			p.PersistentKeepalive = *ps.PersistentKeepalive
		}
		if ps.EndpointRefreshSeconds != nil {
			if *ps.EndpointRefreshSeconds < 0 {
				c.errorf(key+".endpointRefreshSeconds", "must not be negative")
			}
			p.EndpointRefreshSeconds = *ps.EndpointRefreshSeconds
		}
		c.compileFailover(key, &ps, &p)
		n.WireGuard.Peers = append(n.WireGuard.Peers, p)
	}
}

func (c *compiler) compileEndpointsAndPinning(n *plan.Namespace, s *wireguardSchema) {
	wg := &n.WireGuard
	allowHost := boolean(s.AllowHostnameEndpoints, false)
	// Hostname endpoints are re-resolved every DefaultEndpointRefresh
	// seconds unless set: requiring the key (as the reference does) only
	// made admins discover one more error after the first.
	ifaceRefresh := 0
	if allowHost {
		ifaceRefresh = DefaultEndpointRefresh
	}
	if s.EndpointRefreshSeconds != nil {
		if *s.EndpointRefreshSeconds < 0 {
			c.errorf("wireguard.endpointRefreshSeconds", "must not be negative")
		}
		ifaceRefresh = *s.EndpointRefreshSeconds
	}
	if allowHost && c.ha {
		c.errorf("wireguard.allowHostnameEndpoints", "highAssurance rejects hostname endpoints; use literal peer endpoint addresses")
	}
	endpoints, hostnames := 0, 0
	for i := range wg.Peers {
		p := &wg.Peers[i]
		if p.Endpoint == nil {
			continue
		}
		endpoints++
		if p.EndpointRefreshSeconds == 0 {
			p.EndpointRefreshSeconds = ifaceRefresh
		}
		if p.Endpoint.IsHostname() {
			hostnames++
			key := fmt.Sprintf("wireguard.peers[%d].endpoint", i)
			if !allowHost {
				c.peerError(i, key, "%q is a hostname; hostname endpoints need wireguard.allowHostnameEndpoints: true in %s (they are then resolved on the host and re-resolved every %d s, see wireguard.endpointRefreshSeconds), or use the server's literal IP address", p.Endpoint.Host, filepath.Base(c.file), DefaultEndpointRefresh)
			} else if p.EndpointRefreshSeconds <= 0 {
				c.errorf("wireguard.endpointRefreshSeconds", "is 0 (never), but peer %d has the hostname endpoint %q: set it > 0 (default %d) so address changes are picked up", i, p.Endpoint.Host, DefaultEndpointRefresh)
			}
		}
	}
	if hostnames > 0 && allowHost && !c.ha {
		c.warnf("wireguard.allowHostnameEndpoints", "hostname endpoints are resolved by the tunnel helper in the host namespace (never inside the confined one), using the host's resolver")
	}
	pin := boolean(s.EndpointPinning.Enable, false)
	if !pin {
		if s.EndpointPinning.FwMark != nil {
			c.warnf("wireguard.endpointPinning.fwMark", "has no effect while endpointPinning.enable is false")
		}
		return
	}
	if endpoints == 0 {
		c.errorf("wireguard.endpointPinning.enable", "needs at least one peer with an endpoint")
	}
	mark := int64(DeriveFwMark(wg.Interface))
	if s.EndpointPinning.FwMark != nil {
		mark = *s.EndpointPinning.FwMark
		if mark < 1 || mark > 0xffffffff {
			c.errorf("wireguard.endpointPinning.fwMark", "must be between 1 and 4294967295 (got %d)", mark)
			return
		}
	}
	if wg.FwMark != 0 && int64(wg.FwMark) != mark {
		c.errorf("wireguard.fwMark", "is %d but endpoint pinning marks the tunnel's packets with %d; leave wireguard.fwMark unset or make them equal", wg.FwMark, mark)
	}
	wg.FwMark = uint32(mark)
	wg.Pinning = &plan.Pinning{FwMark: uint32(mark), Table: "vpnc_pin_" + c.name}
}

// addrAdd returns a + off (host addresses inside a host-link /30).
func addrAdd(a netip.Addr, off int) netip.Addr {
	for ; off > 0; off-- {
		a = a.Next()
	}
	return a
}
