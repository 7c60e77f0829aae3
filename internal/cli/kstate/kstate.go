//go:build linux

// Package kstate reads kernel state of a network namespace for the CLI:
// links and addresses, routes, the WireGuard device and nftables tables.
// It only reads. Everything goes through handles bound to a namespace file
// descriptor (netlink.NewHandleAt, nftables.WithNetNSFd); the WireGuard
// client is created inside internal/netns.Do, the only place allowed to
// switch namespaces, because wgctrl has no namespace option. Nothing here
// shells out to ip, nft or wg.
package kstate

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// ErrPermission is returned (wrapped) when reading needs root.
var ErrPermission = errors.New("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")

func wrapPerm(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w", what, ErrPermission)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Link is one interface in a namespace.
type Link struct {
	Name  string         `json:"name"`
	Kind  string         `json:"kind"` // "wireguard", "tun", "veth", "loopback", ...
	Up    bool           `json:"up"`
	MTU   int            `json:"mtu"`
	Alias string         `json:"alias,omitempty"`
	Addrs []netip.Prefix `json:"addresses"`
}

// handle opens a netlink handle in ns; nil means the caller's own
// namespace, which needs no privilege to read (the others need setns).
func handle(ns *netns.NetNS) (*netlink.Handle, error) {
	if ns == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, wrapPerm("open netlink", err)
		}
		return h, nil
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		return nil, wrapPerm("open netlink in namespace", err)
	}
	return h, nil
}

// Links lists the interfaces of ns (nil: the caller's) with their addresses.
func Links(ns *netns.NetNS) ([]Link, error) {
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, wrapPerm("list links", err)
	}
	var out []Link
	for _, l := range links {
		a := l.Attrs()
		lk := Link{Name: a.Name, Kind: kind(l), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, Alias: a.Alias, Addrs: []netip.Prefix{}}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, wrapPerm("list addresses of "+a.Name, err)
		}
		for _, ad := range addrs {
			if p, ok := prefixOf(ad.IPNet); ok {
				lk.Addrs = append(lk.Addrs, p)
			}
		}
		out = append(out, lk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// kind is the rtnetlink link kind; a userspace WireGuard device
// (wireguard-go) is a plain TUN, which vishvananda calls "tuntap".
func kind(l netlink.Link) string {
	switch t := l.Type(); t {
	case "tuntap":
		if tt, ok := l.(*netlink.Tuntap); ok && tt.Mode == netlink.TUNTAP_MODE_TAP {
			return "tap"
		}
		return "tun"
	case "device":
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			return "loopback"
		}
		return "device"
	default:
		return t
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Route is a route of the main table.
type Route struct {
	Dst     netip.Prefix `json:"dst"`
	Dev     string       `json:"dev,omitempty"`
	Gateway string       `json:"gateway,omitempty"`
}

// String renders the route like ip route does.
func (r Route) String() string {
	s := r.Dst.String()
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// Routes lists the IPv4 and IPv6 routes of ns's main table (local and
// multicast routes, which every interface has, are left out).
func Routes(ns *netns.NetNS) ([]Route, error) {
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	names := map[int]string{}
	if links, err := h.LinkList(); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, wrapPerm("list routes", err)
		}
		for _, r := range rs {
			if r.Type != unix.RTN_UNICAST {
				continue
			}
			out = append(out, convRoute(r, fam, names))
		}
	}
	return out, nil
}

func convRoute(r netlink.Route, fam int, names map[int]string) Route {
	rt := Route{Dev: names[r.LinkIndex]}
	if p, ok := prefixOf(r.Dst); ok {
		rt.Dst = p
	} else if fam == netlink.FAMILY_V6 {
		rt.Dst = netip.MustParsePrefix("::/0")
	} else {
		rt.Dst = netip.MustParsePrefix("0.0.0.0/0")
	}
	if r.Gw != nil {
		rt.Gateway = r.Gw.String()
	}
	return rt
}

// RouteTo returns the route ns would use for dst ("ip route get"), or an
// error when dst is unreachable.
func RouteTo(ns *netns.NetNS, dst netip.Addr) (Route, error) {
	h, err := handle(ns)
	if err != nil {
		return Route{}, err
	}
	defer h.Close()
	rs, err := h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return Route{}, err
	}
	if len(rs) == 0 {
		return Route{}, fmt.Errorf("no route to %s", dst)
	}
	name := ""
	if l, err := h.LinkByIndex(rs[0].LinkIndex); err == nil {
		name = l.Attrs().Name
	}
	rt := Route{Dst: netip.PrefixFrom(dst, dst.BitLen()), Dev: name}
	if rs[0].Gw != nil {
		rt.Gateway = rs[0].Gw.String()
	}
	return rt, nil
}

// WireGuard is the secret-free state of a WireGuard device. The private
// key wgctrl returns is never copied out of this package.
type WireGuard struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"` // "kernel" or "userspace"
	PublicKey  string   `json:"publicKey"`
	ListenPort int      `json:"listenPort"`
	FwMark     int      `json:"fwMark,omitempty"`
	Peers      []WGPeer `json:"peers"`
}

// WGPeer is one peer of a device.
type WGPeer struct {
	PublicKey     string         `json:"publicKey"`
	Endpoint      string         `json:"endpoint,omitempty"`
	LastHandshake time.Time      `json:"latestHandshake"`
	RxBytes       int64          `json:"rxBytes"`
	TxBytes       int64          `json:"txBytes"`
	AllowedIPs    []netip.Prefix `json:"allowedIPs"`
	Keepalive     int            `json:"persistentKeepalive,omitempty"` // seconds
	HasPSK        bool           `json:"presharedKey"`
}

// ReadWireGuard reads device iface as seen from inside ns: a kernel device
// over generic netlink in ns, a userspace (wireguard-go) device over its
// UAPI socket in /var/run/wireguard. (nil, nil) means there is no such
// device.
func ReadWireGuard(ns *netns.NetNS, iface string) (*WireGuard, error) {
	var dev *wgtypes.Device
	err := ns.Do(func() error {
		c, err := wgctrl.New()
		if err != nil {
			return err
		}
		defer c.Close()
		dev, err = c.Device(iface)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil, nil // wgctrl's "no such device", kernel or userspace
	}
	if err != nil {
		return nil, wrapPerm("read WireGuard device "+iface, err)
	}
	w := &WireGuard{Name: dev.Name, Type: dev.Type.String(), PublicKey: dev.PublicKey.String(), ListenPort: dev.ListenPort, FwMark: dev.FirewallMark, Peers: []WGPeer{}}
	switch dev.Type {
	case wgtypes.LinuxKernel:
		w.Type = "kernel"
	case wgtypes.Userspace:
		w.Type = "userspace"
	}
	for _, p := range dev.Peers {
		wp := WGPeer{
			PublicKey:     p.PublicKey.String(),
			LastHandshake: p.LastHandshakeTime,
			RxBytes:       p.ReceiveBytes,
			TxBytes:       p.TransmitBytes,
			Keepalive:     int(p.PersistentKeepaliveInterval / time.Second),
			HasPSK:        p.PresharedKey != (wgtypes.Key{}),
			AllowedIPs:    []netip.Prefix{},
		}
		if p.Endpoint != nil {
			ap := p.Endpoint.AddrPort()
			wp.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
		for _, a := range p.AllowedIPs {
			if pf, ok := prefixOf(&a); ok {
				wp.AllowedIPs = append(wp.AllowedIPs, pf)
			}
		}
		w.Peers = append(w.Peers, wp)
	}
	return w, nil
}
