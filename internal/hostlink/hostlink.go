//go:build linux

// Package hostlink wires the optional veth pair between the host and a
// confinement namespace (research anchor §3.7, §6): HostIf with HostAddr/30
// in the host namespace, NsIf with NsAddr/30 in the confinement namespace,
// both up, only the connected /30 routes, no IPv6, no forwarding, no NAT.
//
// Ownership. Unlike the reference (anchor §8.10) a link is only ever deleted
// when it is a veth whose interface alias (IFLA_IFALIAS, `ip link show`
// prints it as "alias") is "vpn-confinement:NAME". A link of another kind or
// without our alias that happens to carry HostIf's name is left alone and Up
// fails naming it. The kernel ignores IFLA_IFALIAS in the create request, so
// the alias is set right after creation; if the helper dies in between, the
// untagged pair still dies with the namespace: its peer lives in a namespace
// that is not pinned yet and is referenced only by the dying helper.
//
// No link is moved between namespaces: the peer is created directly in the
// target namespace (IFLA_NET_NS_FD in the create request). A move waits for
// the kernel's rcu_barrier(), 10-50 ms each (research perf-limit.md).
//
// NetworkManager and systemd-networkd are told nothing: NetworkManager only
// shows a veth it did not create as externally managed and leaves its
// addresses alone, and networkd configures only links matched by a .network
// file. Hosts with a catch-all .network file (e.g. [Match] Name=*) must exclude
// "vh-*" (or the configured hostIf) themselves; writing udev or NetworkManager
// configuration would mean editing host configuration behind the admin's back.
package hostlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// AliasPrefix starts the interface alias that marks a host link as ours.
const AliasPrefix = "vpn-confinement:"

// Alias is the interface alias of namespace name's host link.
func Alias(name string) string { return AliasPrefix + name }

// maxDumpAttempts bounds retries of a link dump that the kernel reports as
// interrupted (NLM_F_DUMP_INTR: the link table changed during the dump).
const maxDumpAttempts = 5

// Up creates the host link of namespace name: the veth HostIf in the calling
// (host) namespace with its peer NsIf created directly in target. Links of
// ours left from an earlier run (any name) are deleted first; a foreign link
// named HostIf makes Up fail without touching it. On error nothing of the new
// pair is left behind.
func Up(target *netns.NetNS, name string, hl *plan.HostLink) error {
	if err := check(hl); err != nil {
		return err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	if err := deleteOurs(h, name); err != nil {
		return err
	}
	if l, err := h.LinkByName(hl.HostIf); err == nil {
		return foreignError(l)
	} else if !notFound(err) {
		return fmt.Errorf("look up host interface %s: %w", hl.HostIf, err)
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = hl.HostIf
	veth := netlink.NewVeth(attrs)
	veth.PeerName = hl.NsIf
	veth.PeerNamespace = netlink.NsFd(target.Fd())
	if err := h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// HostIf created by someone else since the look-up, or NsIf
			// already in the target namespace: neither is ours to remove.
			return fmt.Errorf("create veth %s/%s: %s exists on the host or %s in the namespace: %w", hl.HostIf, hl.NsIf, hl.HostIf, hl.NsIf, err)
		}
		return fmt.Errorf("create veth %s/%s: %w", hl.HostIf, hl.NsIf, err)
	}
	if err := configure(h, veth, target, name, hl); err != nil {
		// veth.Index is the link we just created, whatever its alias.
		if derr := h.LinkDel(veth); derr != nil && !errors.Is(derr, unix.ENODEV) {
			err = errors.Join(err, fmt.Errorf("delete veth %s: %w", hl.HostIf, derr))
		}
		return err
	}
	return nil
}

func configure(h *netlink.Handle, veth *netlink.Veth, target *netns.NetNS, name string, hl *plan.HostLink) error {
	if veth.Index == 0 {
		return fmt.Errorf("find veth %s: no index after creation", hl.HostIf)
	}
	if err := h.LinkSetAlias(veth, Alias(name)); err != nil {
		return fmt.Errorf("set alias of %s: %w", hl.HostIf, err)
	}
	if err := setUp(h, veth, netip.PrefixFrom(hl.HostAddr, hl.Subnet.Bits())); err != nil {
		return fmt.Errorf("configure %s: %w", hl.HostIf, err)
	}
	nh, err := netlink.NewHandleAt(vnetns.NsHandle(target.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in namespace: %w", err)
	}
	defer nh.Close()
	peer, err := nh.LinkByName(hl.NsIf)
	if err != nil {
		return fmt.Errorf("find peer %s in namespace: %w", hl.NsIf, err)
	}
	if err := setUp(nh, peer, netip.PrefixFrom(hl.NsAddr, hl.Subnet.Bits())); err != nil {
		return fmt.Errorf("configure %s: %w", hl.NsIf, err)
	}
	return nil
}

// setUp gives l its address and brings it up. IPv6 address generation is
// switched off first so that no link-local IPv6 address (and no IPv6 path
// between host and namespace) ever appears on the link.
func setUp(h *netlink.Handle, l netlink.Link, addr netip.Prefix) error {
	// EAFNOSUPPORT: IPv6 is not available at all, which is what we want.
	if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("disable IPv6 address generation: %w", err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add address %s: %w", addr, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	return nil
}

// Down deletes the host link of namespace name: HostIf if it is a veth with
// our alias, and any other veth of ours for name (left when hl.HostIf was
// renamed, or when hl is nil because the plan is gone). Deleting the host
// side deletes the peer too, wherever it lives, so a process lingering in an
// unpinned namespace loses the host link at once. A foreign HostIf is left
// alone. Down succeeds when there is nothing to delete.
func Down(name string, hl *plan.HostLink) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	if hl != nil && hl.HostIf != "" {
		l, err := h.LinkByName(hl.HostIf)
		switch {
		case err == nil && Owned(l, name):
			if err := deleteLink(h, l); err != nil {
				return err
			}
		case err != nil && !notFound(err):
			return fmt.Errorf("look up host interface %s: %w", hl.HostIf, err)
		}
	}
	return deleteOurs(h, name)
}

// Owned reports whether l is the host side of namespace name's host link.
func Owned(l netlink.Link, name string) bool {
	_, veth := l.(*netlink.Veth)
	return veth && l.Attrs().Alias == Alias(name)
}

// deleteOurs deletes every veth in h's namespace that carries name's alias.
func deleteOurs(h *netlink.Handle, name string) error {
	links, err := listLinks(h)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		if Owned(l, name) {
			errs = append(errs, deleteLink(h, l))
		}
	}
	return errors.Join(errs...)
}

func deleteLink(h *netlink.Handle, l netlink.Link) error {
	// ENODEV: gone meanwhile, e.g. with its namespace.
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// listLinks dumps the links, retrying a dump the kernel marked interrupted:
// its result may be inconsistent and could miss one of our links.
func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	var err error
	for range maxDumpAttempts {
		var links []netlink.Link
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return nil, fmt.Errorf("list links: %w", err)
			}
			return links, nil
		}
	}
	return nil, fmt.Errorf("list links: %w (%d attempts)", err, maxDumpAttempts)
}

func foreignError(l netlink.Link) error {
	a := l.Attrs()
	return fmt.Errorf("host interface %s already exists and is not ours (type %s, alias %q): refusing to touch it; "+
		"remove it or choose another hostLink.hostIf", a.Name, l.Type(), a.Alias)
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func check(hl *plan.HostLink) error {
	switch {
	case hl == nil:
		return errors.New("check host link: none configured")
	case hl.HostIf == "" || hl.NsIf == "" || len(hl.HostIf) > unix.IFNAMSIZ-1 || len(hl.NsIf) > unix.IFNAMSIZ-1:
		return fmt.Errorf("check host link: bad interface names %q/%q", hl.HostIf, hl.NsIf)
	case !hl.Subnet.IsValid() || !hl.Subnet.Addr().Is4() || !hl.Subnet.Contains(hl.HostAddr) || !hl.Subnet.Contains(hl.NsAddr) || hl.HostAddr == hl.NsAddr:
		return fmt.Errorf("check host link: addresses %s and %s do not fit subnet %s", hl.HostAddr, hl.NsAddr, hl.Subnet)
	}
	return nil
}
