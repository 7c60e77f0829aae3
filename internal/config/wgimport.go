package config

import (
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// wgQuickImport is what a wg-quick provider file contributes to the plan.
type wgQuickImport struct {
	path       string
	addresses  []netip.Prefix
	dns        []netip.Addr
	dnsSearch  []string
	listenPort int
	mtu        int
	fwMark     uint32
	peers      []plan.Peer
}

// importWgQuick reads wireguard.configFile, a wg-quick(8) file exactly as
// VPN providers ship it. The file's PrivateKey is never copied: the plan
// points at the file and the tunnel helper reads the key at run time.
func (c *compiler) importWgQuick(n *plan.Namespace) *wgQuickImport {
	s := &c.d.schema.WireGuard
	if s.ConfigFile == nil {
		return nil
	}
	path := *s.ConfigFile
	if !c.absPath("wireguard.configFile", path) {
		return nil
	}
	conflicts := []struct {
		key string
		set bool
	}{
		{"wireguard.privateKey", s.PrivateKey != nil},
		{"wireguard.privateKeyFile", s.PrivateKeyFile != nil},
		{"wireguard.addresses", len(s.Addresses) > 0},
		{"wireguard.listenPort", s.ListenPort != nil},
		{"wireguard.mtu", s.MTU != nil},
		{"wireguard.fwMark", s.FwMark != nil},
		{"wireguard.peers", len(s.Peers) > 0},
	}
	for _, k := range conflicts {
		if k.set {
			c.errorf(k.key, "cannot be combined with wireguard.configFile: the wg-quick file defines it")
		}
	}
	data, err := c.env.readFile(path)
	if err != nil {
		c.errorf("wireguard.configFile", "cannot read %s: %v", path, err)
		return nil
	}
	return c.convertWgQuick(n, path, data)
}
