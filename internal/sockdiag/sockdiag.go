// Package sockdiag lists TCP sockets of a network namespace (netlink
// sock_diag, the interface ss(8) uses) and matches them against published
// ports: which listener holds a published address, how many connections a
// published port or a host exception carries right now. The matching is
// pure; reading the kernel is in sockdiag_linux.go.
package sockdiag

import (
	"net/netip"
	"strconv"
	"strings"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	StateEstablished = 1
	StateListen      = 10
)

// Socket is one TCP socket.
type Socket struct {
	State  uint8
	Local  netip.AddrPort // IPv4-mapped addresses are unmapped
	Remote netip.AddrPort
	// V6 is set for an AF_INET6 socket (a [::] listener may also take
	// IPv4 connections).
	V6    bool
	Inode uint32
	UID   uint32
}

// ParseListen parses a ListenStream value of a published port
// ("127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080", "[::]:8080").
func ParseListen(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// Listeners returns the listening sockets bound exactly to l (the socket a
// systemd socket unit opens for that ListenStream value).
func Listeners(socks []Socket, l netip.AddrPort) []Socket {
	var out []Socket
	for _, s := range socks {
		if s.State == StateListen && s.Local == l && s.V6 == l.Addr().Is6() {
			out = append(out, s)
		}
	}
	return out
}

// Colliding returns the listening sockets that keep l from being bound:
// the same port on the same address, or a wildcard of either side ([::]
// is dual-stack unless IPV6_V6ONLY, which sock_diag does not report, so it
// is taken to collide with IPv4 addresses too).
func Colliding(socks []Socket, l netip.AddrPort) []Socket {
	var out []Socket
	for _, s := range socks {
		if s.State != StateListen || s.Local.Port() != l.Port() {
			continue
		}
		a, b := s.Local.Addr(), l.Addr()
		switch {
		case a == b && s.V6 == b.Is6():
		case a.IsUnspecified() && s.V6 && (b.Is6() || b.Is4()):
		case b.IsUnspecified() && b.Is6():
		case a.IsUnspecified() && !s.V6 && b.Is4():
		case b.IsUnspecified() && b.Is4() && !s.V6:
		default:
			continue
		}
		out = append(out, s)
	}
	return out
}

// Accepted counts the established connections accepted on listen address
// l: their local end is l's port on l's address (any address of the family
// for a wildcard; any address at all for [::]). Outgoing connections to
// the port have it as their remote end and are not counted.
func Accepted(socks []Socket, l netip.AddrPort) int {
	n := 0
	for _, s := range socks {
		if s.State != StateEstablished || s.Local.Port() != l.Port() {
			continue
		}
		a := l.Addr()
		switch {
		case a.IsUnspecified() && a.Is6():
		case a.IsUnspecified() && a.Is4() && s.Local.Addr().Is4():
		case s.Local.Addr() == a:
		default:
			continue
		}
		n++
	}
	return n
}

// Between counts established connections whose local end is local and
// whose remote end has address from (a host exception: the host's end of
// the host link serving the namespace's end).
func Between(socks []Socket, local netip.AddrPort, from netip.Addr) int {
	n := 0
	for _, s := range socks {
		if s.State == StateEstablished && s.Local == local && s.Remote.Addr() == from {
			n++
		}
	}
	return n
}

// SocketInode parses a /proc/PID/fd link target "socket:[INODE]".
func SocketInode(link string) (uint32, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
