//go:build linux

package wireguard

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// pinnedInode is the inode of our namespace if /run/netns/NAME pins it
// (always, under systemd), else 0: the pin is then not watched.
func (d *Device) pinnedInode() uint64 {
	ino, err := d.target.Inode()
	if err != nil {
		return 0
	}
	pin, err := netns.Open(plan.NetnsPath(d.n.Name))
	if err != nil {
		return 0
	}
	defer pin.Close()
	if p, err := pin.Inode(); err != nil || p != ino {
		return 0
	}
	return ino
}

// Down removes what a tunnel of n may have left: the link in
// /run/netns/NAME, but only if it has the configured name and is a
// WireGuard or TUN link (a user's link of another kind is never touched),
// and a stale UAPI socket. It succeeds when there is nothing to remove.
func Down(n *plan.Namespace, log *journal.Logger) error {
	iface := n.WireGuard.Interface
	var errs []error
	if path := plan.NetnsPath(n.Name); netns.IsPinned(path) {
		if err := deleteLink(path, iface, log); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeStaleSocket(UAPISocket(iface)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func deleteLink(path, iface string, log *journal.Logger) error {
	ns, err := netns.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", path, err)
	}
	defer h.Close()
	l, err := h.LinkByName(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", iface, err)
	}
	if !ownLink(l) {
		log.Warnf("not deleting %s in %s: it is a %s link, not WireGuard or TUN", iface, path, l.Type())
		return nil
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", iface, err)
	}
	log.Infof("deleted link %s in %s", iface, path)
	return nil
}

// ownLink: only the kinds a tunnel of ours creates.
func ownLink(l netlink.Link) bool {
	switch t := l.(type) {
	case *netlink.Wireguard:
		return true
	case *netlink.Tuntap:
		return t.Mode == netlink.TUNTAP_MODE_TUN
	}
	return l.Type() == "wireguard"
}

// removeStaleSocket removes a UAPI socket nobody listens on. A live one may
// belong to a running device (ours still stopping, or another namespace's
// device of the same name) and is left alone.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket; not removing it", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	unix.Close(fd)
	if err == nil {
		return nil // live
	}
	if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
