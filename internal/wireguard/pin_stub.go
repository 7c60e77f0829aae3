//go:build linux

package wireguard

import (
	"errors"
	"net/netip"
)

// TEMPORARY until internal/firewall lands.
func updatePinsHere(table string, eps []netip.AddrPort) error {
	return errors.New("pinning: firewall package not available yet")
}
