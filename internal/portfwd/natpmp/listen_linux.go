//go:build linux

package natpmp

import (
	"context"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens an unconnected UDPv4 socket on local (any address if
// invalid), port chosen by the kernel, with IP_RECVERR set: without it
// Linux reports ICMP errors only on connected sockets, and a gateway
// without NAT-PMP would look like a timeout after two minutes instead of
// "connection refused" at once.
func Listen(ctx context.Context, local netip.Addr) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addr := "0.0.0.0:0"
	if local.IsValid() {
		addr = netip.AddrPortFrom(local, 0).String()
	}
	return lc.ListenPacket(ctx, "udp4", addr)
}
