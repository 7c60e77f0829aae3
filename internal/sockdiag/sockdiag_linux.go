//go:build linux

package sockdiag

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// TCP lists the TCP sockets (IPv4 and IPv6) of ns; nil means the caller's
// own namespace.
func TCP(ns *netns.NetNS) ([]Socket, error) {
	// The handle must be created for NETLINK_INET_DIAG explicitly: a
	// vishvananda handle without a socket of that family silently opens a
	// new one in the *calling* thread's namespace.
	var h *netlink.Handle
	var err error
	if ns == nil {
		h, err = netlink.NewHandle(unix.NETLINK_INET_DIAG)
	} else {
		h, err = netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()), unix.NETLINK_INET_DIAG)
	}
	if err != nil {
		return nil, fmt.Errorf("open sock_diag: %w", err)
	}
	defer h.Close()
	var out []Socket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ss, err := h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			if fam == unix.AF_INET6 && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)) {
				continue // no IPv6 in this kernel
			}
			return nil, fmt.Errorf("list TCP sockets: %w", err)
		}
		for _, s := range ss {
			out = append(out, Socket{State: s.State, V6: fam == unix.AF_INET6, Inode: s.INode, UID: s.UID,
				Local: addrPort(s.ID.Source, s.ID.SourcePort), Remote: addrPort(s.ID.Destination, s.ID.DestinationPort)})
		}
	}
	return out, nil
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// Holder is a process that has a socket open.
type Holder struct {
	PID  int    `json:"pid"`
	Comm string `json:"name"`
}

func (h Holder) String() string { return fmt.Sprintf("%s (PID %d)", h.Comm, h.PID) }

// Holders finds the processes below proc (/proc) that hold the sockets
// with the given inodes. Processes that vanish or cannot be read are
// skipped.
func Holders(proc string, inodes []uint32) map[uint32][]Holder {
	want := map[uint32]bool{}
	for _, i := range inodes {
		want[i] = true
	}
	out := map[uint32][]Holder{}
	if len(want) == 0 {
		return out
	}
	entries, _ := os.ReadDir(proc)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, e.Name(), "fd"))
		if err != nil {
			continue
		}
		var comm string
		seen := map[uint32]bool{}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(proc, e.Name(), "fd", fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := SocketInode(link)
			if !ok || !want[ino] || seen[ino] {
				continue
			}
			seen[ino] = true
			if comm == "" {
				b, _ := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
				comm = strings.TrimSpace(string(b))
			}
			out[ino] = append(out[ino], Holder{PID: pid, Comm: comm})
		}
	}
	for _, hs := range out {
		sort.Slice(hs, func(i, j int) bool { return hs[i].PID < hs[j].PID })
	}
	return out
}
