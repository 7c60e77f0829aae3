package procfs

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TCPListener is a listening TCP socket of a network namespace.
type TCPListener struct {
	Addr    netip.AddrPort
	Inode   uint64
	Holders []Holder
}

// tcpListen is TCP_LISTEN as /proc/net/tcp prints the state.
const tcpListen = "0A"

// ParseNetTCP parses /proc/net/tcp or /proc/net/tcp6 and keeps the
// listening sockets.
func ParseNetTCP(r io.Reader) ([]TCPListener, error) {
	var out []TCPListener
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		ap, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp: %w", err)
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp: bad inode %q", f[9])
		}
		out = append(out, TCPListener{Addr: ap, Inode: ino})
	}
	return out, sc.Err()
}

// parseHexAddrPort parses "0100007F:1F90": the address as the kernel's
// 32-bit words in host (little-endian) order, the port in hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// TCPListeners lists the listening TCP sockets of process pid's network
// namespace (IPv4 and IPv6), with their holders (a SocketHolders map; nil
// leaves them out).
func TCPListeners(proc string, pid int, holders map[uint64][]Holder) ([]TCPListener, error) {
	var out []TCPListener
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "net", f))
		if os.IsNotExist(err) && f == "tcp6" {
			continue // IPv6 disabled
		}
		if err != nil {
			return nil, err
		}
		ls, err := ParseNetTCP(fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			l.Holders = holders[l.Inode]
			out = append(out, l)
		}
	}
	return out, nil
}
