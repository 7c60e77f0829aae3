//go:build linux

package tripwire_test

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
	tt "github.com/vpn-confinement/vpn-confinement/internal/tripwire/tripwiretest"
)

// BenchmarkHostUDP measures what the tripwire costs the host's own
// traffic, which is all of what it ever sees in normal operation: one UDP
// datagram over loopback, sent and received by the benchmark (a cgroup
// that is not registered), so it passes the output and the input hook.
// In the output hook the packet carries its socket. In the input hook an
// unconnected receiver (a server) has to be looked up by every level rule
// (the worst case); a connected one is found by early demux before the
// hook, like an established TCP flow.
//
//	test/sandbox.sh go test -run '^$' -bench HostUDP -count 6 ./internal/tripwire/
func BenchmarkHostUDP(b *testing.B) {
	for _, c := range []struct {
		name                string
		withTable, connRecv bool
	}{
		{"unconnected/without", false, false}, {"unconnected/tripwire", true, false},
		{"connected/without", false, true}, {"connected/tripwire", true, true},
	} {
		withTable := c.withTable
		b.Run(c.name, func(b *testing.B) {
			m := tt.Mount(b)
			ns := tt.NewNS(b, "tw-bench")
			if withTable {
				h := &tripwire.Host{NS: ns.NetNS, Lock: filepath.Join(b.TempDir(), "lock"), Mount: m}
				for range 3 { // a few registered units, as on a real host
					cg := tt.NewCgroup(b, m, "/", "vpnc-tw-bench")
					if _, err := h.Add("bench", cg.Path); err != nil {
						b.Fatal(err)
					}
				}
			}
			var rx net.PacketConn
			var tx net.Conn
			err := ns.Do(func() (err error) {
				if rx, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
					return err
				}
				if tx, err = net.Dial("udp4", rx.LocalAddr().String()); err != nil || !c.connRecv {
					return err
				}
				// Connect the receiver too: replace it by a socket on the
				// same port connected to the sender.
				addr := rx.LocalAddr().String()
				rx.Close()
				d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))}
				rc, err := d.Dial("udp4", tx.LocalAddr().String())
				if err == nil {
					rx = rc.(*net.UDPConn)
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			defer tx.Close()
			msg, buf := make([]byte, 64), make([]byte, 2048)
			b.ResetTimer()
			for range b.N {
				if _, err := tx.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := rx.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
