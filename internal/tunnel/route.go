//go:build linux

package tunnel

import (
	"errors"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// routes asks the socket birthplace (the helper's own namespace, opened
// at start, before any thread could be in another one) whether the
// tunnel's outer packets have a route to an endpoint. Without one (the
// uplink is down) nothing can reach the peer: the tunnel is blocked at
// once instead of after the watchdog's timers, and onTunnelLoss applies.
type routes struct {
	h    *netlink.Handle
	ns   *netns.NetNS
	mark uint32
}

func openRoutes(mark uint32) (*routes, error) {
	ns, err := netns.Current()
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		ns.Close()
		return nil, err
	}
	return &routes{h: h, ns: ns, mark: mark}, nil
}

func (r *routes) Close() {
	if r != nil {
		r.h.Close()
		r.ns.Close()
	}
}

// missing reports whether the birthplace has no route to ap. Errors other
// than "unreachable" say nothing about the route and report false.
func (r *routes) missing(ap netip.AddrPort) bool {
	if r == nil || !ap.IsValid() {
		return false
	}
	_, err := r.h.RouteGetWithOptions(net.IP(ap.Addr().Unmap().AsSlice()), &netlink.RouteGetOptions{Mark: r.mark})
	return errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.EACCES)
}
