package natpmp

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// ProtonVPN's convention (its manual-setup loop, gluetun, vopono): the
// gateway is 10.2.0.1, and a forwarded port is obtained by asking for
// internal 0 → external 1 with a 60 s lifetime, once for UDP and once for
// TCP, renewed every 45 s. RFC 6886 gives internal port 0 a meaning only
// with lifetime 0 ("delete all my mappings"); Proton reads it as "any
// port". The application must listen on the external port number.
var ProtonGateway = netip.MustParseAddr("10.2.0.1")

// Proton's request values.
const (
	ProtonLifetime = 60 * time.Second
	ProtonRenew    = 45 * time.Second
)

// Pair is the UDP and TCP mapping of one forwarded port.
type Pair struct {
	UDP, TCP Mapping
}

// Port is the forwarded port (the same for both protocols).
func (p Pair) Port() uint16 { return p.UDP.External }

// Lifetime is the shorter of the two granted lifetimes.
func (p Pair) Lifetime() time.Duration { return min(p.UDP.Lifetime, p.TCP.Lifetime) }

// MapProton creates or renews the Proton port: UDP, then TCP, both
// 0 → 1 for ProtonLifetime. Both replies must carry the same external
// port, otherwise the error wraps ErrPortMismatch.
func (c *Client) MapProton(ctx context.Context) (Pair, error) {
	var p Pair
	var err error
	if p.UDP, err = c.Map(ctx, "udp", 0, 1, ProtonLifetime); err != nil {
		return Pair{}, err
	}
	if p.TCP, err = c.Map(ctx, "tcp", 0, 1, ProtonLifetime); err != nil {
		return Pair{}, err
	}
	if p.UDP.External != p.TCP.External {
		return Pair{}, fmt.Errorf("natpmp: %w: udp %d, tcp %d", ErrPortMismatch, p.UDP.External, p.TCP.External)
	}
	return p, nil
}

// UnmapProton asks the gateway to drop the Proton mappings: internal 0
// with lifetime 0, which RFC 6886 §3.4 defines as "delete all mappings of
// this client" for the protocol. Whether Proton honours it is not
// documented; the mappings expire after 60 s anyway.
func (c *Client) UnmapProton(ctx context.Context) error {
	for _, proto := range []string{"udp", "tcp"} {
		if _, err := c.Map(ctx, proto, 0, 0, 0); err != nil {
			return err
		}
	}
	return nil
}
