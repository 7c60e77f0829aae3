package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// DefaultMTU is wg-quick's default for an IPv4 or IPv6 underlay.
const DefaultMTU = 1420

// FwMark is the mark the tunnel's outer packets carry: the pinning mark
// when pinning is on (the pin table matches on it), else the configured one.
func FwMark(wg *plan.WireGuard) uint32 {
	if wg.Pinning != nil {
		return wg.Pinning.FwMark
	}
	return wg.FwMark
}

// MTU is the configured MTU or the default.
func MTU(wg *plan.WireGuard) int {
	if wg.MTU > 0 {
		return wg.MTU
	}
	return DefaultMTU
}

// BuildConfig turns a plan, its loaded keys and the resolved endpoints
// (parallel to wg.Peers; an invalid AddrPort means "no endpoint") into the
// complete device configuration. It is pure. The result replaces all peers,
// so applying it twice yields the same device. The returned Config holds
// keys: never print it.
func BuildConfig(wg *plan.WireGuard, keys *Keys, endpoints []netip.AddrPort) (wgtypes.Config, error) {
	if keys == nil {
		return wgtypes.Config{}, fmt.Errorf("build config: no keys")
	}
	priv := keys.Private.k
	mark := int(FwMark(wg))
	cfg := wgtypes.Config{
		PrivateKey:   &priv,
		FirewallMark: &mark,
		ReplacePeers: true,
	}
	if wg.ListenPort != 0 {
		port := wg.ListenPort
		cfg.ListenPort = &port
	}
	for i, p := range wg.Peers {
		pub, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return wgtypes.Config{}, fmt.Errorf("build config: peer %d public key: %w", i, err)
		}
		keepalive := time.Duration(p.PersistentKeepalive) * time.Second
		pc := wgtypes.PeerConfig{
			PublicKey:                   pub,
			PersistentKeepaliveInterval: &keepalive,
			ReplaceAllowedIPs:           true,
		}
		if i < len(keys.Preshared) && keys.Preshared[i] != nil {
			psk := keys.Preshared[i].k
			pc.PresharedKey = &psk
		}
		if i < len(endpoints) && endpoints[i].IsValid() {
			pc.Endpoint = udpAddr(endpoints[i])
		}
		for _, a := range p.AllowedIPs {
			pc.AllowedIPs = append(pc.AllowedIPs, ipNet(a.Masked()))
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	return cfg, nil
}

// EndpointUpdate is the configuration that moves peer pub to ep and changes
// nothing else (no keys inside).
func EndpointUpdate(pub wgtypes.Key, ep netip.AddrPort) wgtypes.Config {
	return wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey:  pub,
		UpdateOnly: true,
		Endpoint:   udpAddr(ep),
	}}}
}

func udpAddr(ep netip.AddrPort) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port()))
}

func ipNet(p netip.Prefix) net.IPNet {
	a := p.Addr()
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Routes are the destinations routed into the tunnel: every peer's allowed
// IPs when allowedIPsAsRoutes, deduplicated, in plan order. IPv6 ones are
// left out when IPv6 is off in the namespace: the kernel refuses them there
// ("IPv6 is disabled on nexthop device"), which would fail the whole tunnel
// for a provider file that merely lists ::/0 (reference defect §8.4).
func Routes(n *plan.Namespace) []netip.Prefix {
	if !n.WireGuard.AllowedIPsAsRoutes {
		return nil
	}
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range n.WireGuard.Peers {
		for _, a := range p.AllowedIPs {
			a = a.Masked()
			if (a.Addr().Is6() && !n.IPv6) || seen[a] {
				continue
			}
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// Addresses are the tunnel addresses to configure (IPv6 ones only when
// IPv6 is tunnelled, for the same reason as Routes).
func Addresses(n *plan.Namespace) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range n.WireGuard.Addresses {
		if a.Addr().Is6() && !n.IPv6 {
			continue
		}
		out = append(out, a)
	}
	return out
}
