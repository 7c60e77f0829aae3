package sockdiag

import (
	"net/netip"
	"testing"
)

func sock(state uint8, v6 bool, local, remote string) Socket {
	s := Socket{State: state, V6: v6, Local: netip.MustParseAddrPort(local)}
	if remote != "" {
		s.Remote = netip.MustParseAddrPort(remote)
	}
	return s
}

func TestMatching(t *testing.T) {
	socks := []Socket{
		sock(StateListen, false, "127.0.0.1:8080", ""),
		sock(StateListen, true, "[::1]:8080", ""),
		sock(StateListen, true, "[::]:9091", ""),
		sock(StateListen, false, "0.0.0.0:7", ""),
		// curl → the published port (both ends are in the host namespace)
		sock(StateEstablished, false, "127.0.0.1:41000", "127.0.0.1:8080"),
		sock(StateEstablished, false, "127.0.0.1:8080", "127.0.0.1:41000"),
		sock(StateEstablished, false, "127.0.0.1:8080", "127.0.0.1:41001"),
		// an IPv4 client of the dual-stack [::]:9091 (mapped, unmapped)
		sock(StateEstablished, true, "10.250.1.1:9091", "10.250.1.2:50000"),
		// host exception: namespace 169.254.10.2 → host 169.254.10.1:9000
		sock(StateEstablished, false, "169.254.10.1:9000", "169.254.10.2:33000"),
		sock(StateEstablished, false, "169.254.10.1:9000", "10.0.0.5:33000"),
	}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		listen         string
		exact, collide int
		accepted       int
	}{
		{"127.0.0.1:8080", 1, 1, 2},
		{"[::1]:8080", 1, 1, 0},
		{"0.0.0.0:8080", 0, 1, 2},
		{"[::]:8080", 0, 2, 2},
		{"[::]:9091", 1, 1, 1},
		{"10.250.1.1:9091", 0, 1, 1},
		{"127.0.0.1:7", 0, 1, 0},
		{"[::1]:7", 0, 0, 0},
		{"127.0.0.1:9", 0, 0, 0},
	} {
		l := ap(tc.listen)
		if got := len(Listeners(socks, l)); got != tc.exact {
			t.Errorf("Listeners(%s) = %d, want %d", tc.listen, got, tc.exact)
		}
		if got := len(Colliding(socks, l)); got != tc.collide {
			t.Errorf("Colliding(%s) = %d, want %d", tc.listen, got, tc.collide)
		}
		if got := Accepted(socks, l); got != tc.accepted {
			t.Errorf("Accepted(%s) = %d, want %d", tc.listen, got, tc.accepted)
		}
	}
	if got := Between(socks, ap("169.254.10.1:9000"), netip.MustParseAddr("169.254.10.2")); got != 1 {
		t.Errorf("Between = %d, want 1", got)
	}
}

func TestSocketInode(t *testing.T) {
	for in, want := range map[string]uint32{"socket:[12345]": 12345, "pipe:[1]": 0, "socket:[x]": 0, "/dev/null": 0} {
		got, ok := SocketInode(in)
		if got != want || ok != (want != 0) {
			t.Errorf("SocketInode(%q) = %d, %v", in, got, ok)
		}
	}
}
