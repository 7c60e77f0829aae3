package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Resolver looks up hostname endpoints. *net.Resolver implements it; tests
// inject fakes. It is always called from the helper's own namespace (the
// socket birthplace), never from inside the confined one, so the lookup uses
// the host's resolver and is not subject to the confined firewall.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds one lookup so a dead resolver cannot stall the run
// loop (and with it the link watch).
const resolveTimeout = 10 * time.Second

// ResolveEndpoint returns the address of e: the literal, or the first IPv4
// answer for a hostname (the first IPv6 answer when there is no IPv4 one),
// which is what the kernel's outer socket most likely can reach.
func ResolveEndpoint(ctx context.Context, r Resolver, e plan.Endpoint) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(e.Host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), e.Port), nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", e.Host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve endpoint %s: %w", e.Host, err)
	}
	var v6 netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			return netip.AddrPortFrom(a, e.Port), nil
		}
		if !v6.IsValid() && a.Is6() {
			v6 = a
		}
	}
	if v6.IsValid() {
		return netip.AddrPortFrom(v6, e.Port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("resolve endpoint %s: no addresses", e.Host)
}

// ResolveEndpoints resolves every peer endpoint; the result is parallel to
// peers (invalid for a peer without endpoint). All must resolve: a tunnel
// that comes up without its endpoint would look ready but carry nothing.
func ResolveEndpoints(ctx context.Context, r Resolver, peers []plan.Peer) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, len(peers))
	var errs []error
	for i, p := range peers {
		if p.Endpoint == nil {
			continue
		}
		ap, err := ResolveEndpoint(ctx, r, *p.Endpoint)
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %d: %w", i, err))
			continue
		}
		out[i] = ap
	}
	return out, errors.Join(errs...)
}

// PinSet is the list of valid endpoints, the elements of the pin table.
func PinSet(endpoints []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range endpoints {
		if e.IsValid() {
			out = append(out, e)
		}
	}
	return out
}

// RefreshInterval is how often peer i's hostname endpoint is re-resolved:
// its own value, else the lowest value configured on any peer (the plan
// already copies the interface-wide value into peers without one). Zero
// means never: literal endpoints are never re-resolved.
func RefreshInterval(peers []plan.Peer, i int) time.Duration {
	p := peers[i]
	if p.Endpoint == nil || !p.Endpoint.IsHostname() {
		return 0
	}
	s := p.EndpointRefreshSeconds
	if s <= 0 {
		for _, q := range peers {
			if q.EndpointRefreshSeconds > 0 && (s <= 0 || q.EndpointRefreshSeconds < s) {
				s = q.EndpointRefreshSeconds
			}
		}
	}
	if s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}
