package procfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// UnixSocket is an AF_UNIX socket bound to a file system path that others
// can reach: a listening stream or seqpacket socket, or a bound datagram
// socket (a receiver such as /run/systemd/notify).
type UnixSocket struct {
	Path  string `json:"path"`
	Inode uint64 `json:"inode"` // the socket's inode (sockfs), as in /proc/PID/fd
	Type  string `json:"type"`  // stream, dgram, seqpacket
	// Netns is the network namespace whose /proc/net/unix lists it.
	Netns ID `json:"-"`
	// Holders are the processes with an fd of it.
	Holders []Holder `json:"holders"`
}

// Holder is a process holding a socket.
type Holder struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
}

// unix(7) socket flags and types as /proc/net/unix prints them.
const (
	soAcceptCon = 0x10000 // __SO_ACCEPTCON: listening
	sockStream  = 1
	sockDgram   = 2
	sockSeq     = 5
)

// ParseNetUnix parses /proc/net/unix and keeps the reachable path sockets
// (see UnixSocket). Abstract sockets ("@...") belong to a network
// namespace, not to the file system, and are left out.
func ParseNetUnix(r io.Reader) ([]UnixSocket, error) {
	var out []UnixSocket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		// Num RefCount Protocol Flags Type St Inode [Path]
		if len(f) < 8 || !strings.HasPrefix(f[7], "/") {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		typ, err2 := strconv.ParseUint(f[4], 16, 16)
		ino, err3 := strconv.ParseUint(f[6], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("/proc/net/unix: bad line %q", sc.Text())
		}
		path := strings.Join(f[7:], " ")
		var t string
		switch {
		case typ == sockDgram:
			t = "dgram"
		case flags&soAcceptCon == 0:
			continue // a connection, not a listener
		case typ == sockStream:
			t = "stream"
		case typ == sockSeq:
			t = "seqpacket"
		default:
			continue
		}
		out = append(out, UnixSocket{Path: path, Inode: ino, Type: t})
	}
	return out, sc.Err()
}

// SocketHolders maps every socket inode that a process holds to the
// processes holding it (like ss -p), and returns one PID per network
// namespace (in /proc order) to read that namespace's /proc/PID/net from.
func SocketHolders(proc string) (map[uint64][]Holder, []int, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, nil, err
	}
	perNetns := map[ID]bool{}
	var netnsPIDs []int
	holders := map[uint64][]Holder{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		id, err := NetnsOf(proc, pid)
		if err != nil {
			continue // exited, or a kernel thread we cannot look into
		}
		if !perNetns[id] {
			perNetns[id] = true
			netnsPIDs = append(netnsPIDs, pid)
		}
		fds, err := os.ReadDir(filepath.Join(proc, e.Name(), "fd"))
		if err != nil {
			continue
		}
		name := ""
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(proc, e.Name(), "fd", fd.Name()))
			if err != nil {
				continue
			}
			s, ok := strings.CutPrefix(l, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
			if err != nil {
				continue
			}
			if name == "" {
				name = comm(proc, pid)
			}
			hs := holders[ino]
			if len(hs) == 0 || hs[len(hs)-1].PID != pid {
				holders[ino] = append(hs, Holder{PID: pid, Name: name})
			}
		}
	}
	return holders, netnsPIDs, nil
}

// HostUnixSockets lists the reachable path sockets of every network
// namespace that has a process (one /proc/PID/net/unix per namespace),
// with the processes that hold each. proc is /proc.
func HostUnixSockets(proc string) ([]UnixSocket, error) {
	holders, pids, err := SocketHolders(proc)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	var out []UnixSocket
	for _, pid := range pids {
		f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "net", "unix"))
		if err != nil {
			continue // exited meanwhile
		}
		socks, err := ParseNetUnix(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		id, _ := NetnsOf(proc, pid)
		for _, s := range socks {
			if seen[s.Inode] {
				continue
			}
			seen[s.Inode] = true
			s.Netns, s.Holders = id, holders[s.Inode]
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// SocketInodes lists the socket inodes the processes pids hold.
func SocketInodes(proc string, pids []int) map[uint64]bool {
	out := map[uint64]bool{}
	for _, pid := range pids {
		dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if s, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
				if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
					out[ino] = true
				}
			}
		}
	}
	return out
}

func comm(proc string, pid int) string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
