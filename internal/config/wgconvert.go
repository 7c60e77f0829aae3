package config

import "github.com/vpn-confinement/vpn-confinement/internal/plan"

// convertWgQuick: placeholder until internal/wgquick lands (same session).
func (c *compiler) convertWgQuick(n *plan.Namespace, path string, data []byte) *wgQuickImport {
	c.errorf("wireguard.configFile", "wg-quick import is not available in this build")
	return nil
}
