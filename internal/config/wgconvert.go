package config

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wgquick"
)

// convertWgQuick turns a parsed provider file into plan values. Problems
// are located in the provider file (path:line) so the admin can find them;
// keys are referenced, never copied.
func (c *compiler) convertWgQuick(n *plan.Namespace, path string, data []byte) *wgQuickImport {
	f, problems := wgquick.Parse(bytes.NewReader(data))
	at := func(sev Severity, line int, key, format string, args ...any) {
		c.d.diags = append(c.d.diags, Diag{Severity: sev, File: path, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
	}
	for _, p := range problems {
		at(SevError, p.Line, p.Key, "%s", p.Message)
	}
	for _, s := range f.Interface.Unsupported {
		at(SevWarning, s.Line, s.Key, "wg-quick-only key is ignored and never executed (vpn-confinement builds routes, DNS and the kill switch itself)")
	}
	if len(problems) > 0 {
		c.errorf("wireguard.configFile", "%s has %d problem(s), reported above", path, len(problems))
		return nil
	}
	w := &wgQuickImport{path: path}
	// With IPv6 switched off, the IPv6 half of a typical dual-stack provider
	// file is dropped (and said so) rather than making the namespace fail:
	// the admin cannot easily edit the provider's file, and dropping v6
	// only removes ways out.
	keep := func(a netip.Addr, shown string, line int, what string) bool {
		if a.Is6() && !a.Is4In6() && !n.IPv6 {
			at(SevWarning, line, what, "IPv6 %s dropped: ipv6.mode is \"disable\" (set ipv6.mode: tunnel to use it)", shown)
			return false
		}
		return true
	}
	for _, a := range f.Interface.Address {
		if keep(a.Value.Addr(), a.Value.String(), a.Line, "Address") {
			w.addresses = append(w.addresses, a.Value)
		}
	}
	for _, a := range f.Interface.DNS {
		if keep(a.Value, a.Value.String(), a.Line, "DNS") {
			w.dns = append(w.dns, a.Value)
		}
	}
	for _, s := range f.Interface.DNSSearch {
		if !ValidSearchDomain(s.Value) {
			at(SevError, s.Line, "DNS", "%q is neither an IP address nor a valid search domain", s.Value)
			continue
		}
		w.dnsSearch = append(w.dnsSearch, s.Value)
	}
	w.mtu = f.Interface.MTU.Value
	w.listenPort = int(f.Interface.ListenPort.Value)
	w.fwMark = f.Interface.FwMark.Value
	for i, fp := range f.Peers {
		p := plan.Peer{PublicKey: fp.PublicKey.Value, PersistentKeepalive: int(fp.PersistentKeepalive.Value)}
		if !fp.PresharedKey.Value.IsZero() {
			p.PresharedKey = &plan.KeySource{WgQuickFile: path, Credential: CredWgQuick}
		}
		if c.peerLines == nil {
			c.peerLines = map[int]srcLine{}
		}
		c.peerLines[i] = srcLine{path, fp.Line}
		if fp.Endpoint.IsSet() {
			c.peerLines[i] = srcLine{path, fp.Endpoint.Line}
			host, port, _, err := ParseEndpoint(fp.Endpoint.Value)
			if err != nil {
				at(SevError, fp.Endpoint.Line, "Endpoint", "must be IPv4:port, [IPv6]:port or hostname:port: %v", err)
			} else {
				p.Endpoint = &plan.Endpoint{Host: host, Port: port}
			}
		}
		for _, a := range fp.AllowedIPs {
			if keep(a.Value.Addr(), a.Value.String(), a.Line, "AllowedIPs") {
				p.AllowedIPs = append(p.AllowedIPs, a.Value.Masked())
			}
		}
		if len(p.AllowedIPs) == 0 {
			at(SevError, fp.Line, "AllowedIPs", "peer %d has no usable AllowedIPs", i+1)
		}
		w.peers = append(w.peers, p)
	}
	return w
}
