// Command vpnc-escape is the end-to-end tests' attack tool. It runs inside
// a confined unit (or, for positive controls and the tripwire, on the
// host) and tries one way out per invocation, printing one line per
// attempt with the exact errno, so a test can assert not only that an
// attempt failed but why:
//
//	vpnc-escape sockets                  list every UNIX socket reachable by path (lstat, not d_type)
//	vpnc-escape connect PATH...          connect() to UNIX sockets (stream, seqpacket, dgram)
//	vpnc-escape write PATH...            create or append to files (O_WRONLY|O_CREAT|O_APPEND)
//	vpnc-escape setns PATH               setns() into the network namespace at PATH
//	vpnc-escape socket packet|raw        AF_PACKET / AF_INET SOCK_RAW socket
//	vpnc-escape varlink PATH METHOD      one varlink call, prints the reply
//	vpnc-escape listen PATH...           serve UNIX sockets (stream; seqpacket for */udev/control) until killed
//	vpnc-escape cgroup-send DIR ADDR N   move itself into cgroup DIR, then send N UDP datagrams to ADDR
//
// Lines: "PATH: OK ..." or "PATH: ERRNO (message)". Exit status: 0 when
// every attempt failed, 3 when at least one succeeded (an escape), 2 on
// a usage error. cgroup-send and listen exit 0 when they ran.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	a := os.Args[1:]
	if len(a) < 1 {
		usage()
	}
	ok := false
	switch {
	case a[0] == "sockets" && len(a) == 1:
		sockets()
		return
	case a[0] == "connect" && len(a) > 1:
		for _, p := range a[1:] {
			ok = connect(p) || ok
		}
	case a[0] == "write" && len(a) > 1:
		for _, p := range a[1:] {
			ok = write(p) || ok
		}
	case a[0] == "setns" && len(a) == 2:
		ok = setns(a[1])
	case a[0] == "socket" && len(a) == 2:
		ok = rawSocket(a[1])
	case a[0] == "varlink" && len(a) == 3:
		ok = varlink(a[1], a[2])
	case a[0] == "listen" && len(a) > 1:
		listen(a[1:])
		return
	case a[0] == "cgroup-send" && len(a) == 4:
		n, err := strconv.Atoi(a[3])
		if err != nil {
			usage()
		}
		cgroupSend(a[1], a[2], n)
		return
	default:
		usage()
	}
	if ok {
		os.Exit(3)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vpnc-escape connect PATH... | write PATH... | setns PATH | socket packet|raw | varlink PATH METHOD | listen PATH... | cgroup-send DIR ADDR N")
	os.Exit(2)
}

// errno renders err as its errno name, so tests can match EACCES, EROFS...
func errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e) + " (" + e.Error() + ")"
	}
	return err.Error()
}

// sockets walks the file system as the caller sees it, skipping /proc and
// /sys. Entries are typed by readdir's d_type, which is right except on
// mount points: a socket bind-mounted over a file (what
// BindReadOnlyPaths= of a socket leaves in a tmpfs) has the d_type of the
// file below, which is why find -type s misses it. So every mount point
// of the caller's mount namespace is lstat()ed as well.
func sockets() {
	seen := map[string]bool{}
	report := func(p string) {
		if !seen[p] {
			seen[p] = true
			fmt.Println(p)
		}
	}
	skip := func(p string) bool {
		return p == "/proc" || p == "/sys" || strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/")
	}
	filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: not reachable either
		}
		if d.IsDir() && skip(p) {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSocket != 0 {
			report(p)
		}
		return nil
	})
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && !skip(f[4]) {
			p := unescapeMountinfo(f[4])
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
				report(p)
			}
		}
	}
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// connect tries every socket type: the attacker does not know which one
// the server listens with (udev's control socket is seqpacket, the
// journal's syslog socket dgram). EPROTOTYPE means "exists, other type".
func connect(path string) bool {
	var errs []string
	for _, t := range []struct {
		name string
		typ  int
	}{{"stream", unix.SOCK_STREAM}, {"seqpacket", unix.SOCK_SEQPACKET}, {"dgram", unix.SOCK_DGRAM}} {
		fd, err := unix.Socket(unix.AF_UNIX, t.typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errs = append(errs, t.name+" socket "+errno(err))
			continue
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		unix.Close(fd)
		if err == nil {
			fmt.Printf("%s: OK connected (%s)\n", path, t.name)
			return true
		}
		if errors.Is(err, unix.EPROTOTYPE) {
			continue
		}
		// Any other error is the same for every type (no such file,
		// permission denied, refused): report it once.
		fmt.Printf("%s: %s\n", path, errno(err))
		return false
	}
	fmt.Printf("%s: %s\n", path, strings.Join(append(errs, "EPROTOTYPE for every type"), "; "))
	return false
}

func write(path string) bool {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Printf("%s: %s\n", path, errno(err))
		return false
	}
	defer f.Close()
	if _, err := f.WriteString("# written from inside a confined unit by vpnc-escape\n"); err != nil {
		fmt.Printf("%s: opened, write %s\n", path, errno(err))
		return false
	}
	fmt.Printf("%s: OK written\n", path)
	return true
}

func setns(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Printf("%s: open %s\n", path, errno(err))
		return false
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		fmt.Printf("%s: setns %s\n", path, errno(err))
		return false
	}
	fmt.Printf("%s: OK setns\n", path)
	return true
}

func rawSocket(kind string) bool {
	var fd int
	var err error
	switch kind {
	case "packet":
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	case "raw":
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
	default:
		usage()
	}
	if err != nil {
		fmt.Printf("%s: %s\n", kind, errno(err))
		return false
	}
	unix.Close(fd)
	fmt.Printf("%s: OK socket\n", kind)
	return true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// varlink sends one call and prints the reply (varlink frames end in NUL).
func varlink(path, method string) bool {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		fmt.Printf("%s: %s\n", path, errno(err))
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, `{"method":%q,"parameters":{}}`+"\x00", method); err != nil {
		fmt.Printf("%s: send %s\n", path, errno(err))
		return false
	}
	buf := make([]byte, 4096)
	var reply []byte
	for {
		n, err := c.Read(buf)
		reply = append(reply, buf[:n]...)
		if i := strings.IndexByte(string(reply), 0); i >= 0 {
			reply = reply[:i]
			break
		}
		if err != nil {
			fmt.Printf("%s: read %s\n", path, errno(err))
			return false
		}
	}
	if strings.Contains(string(reply), `"error"`) {
		fmt.Printf("%s: refused %s\n", path, reply)
		return false
	}
	fmt.Printf("%s: OK reply %s\n", path, reply)
	return true
}

// listen serves decoy control sockets: a connect that succeeds proves the
// path is reachable. Connections are accepted and closed at once.
func listen(paths []string) {
	for _, p := range paths {
		typ := unix.SOCK_STREAM
		if filepath.Base(p) == "control" && strings.Contains(p, "udev") {
			typ = unix.SOCK_SEQPACKET // as systemd-udevd's
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Remove(p)
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: p})
		}
		if err == nil {
			os.Chmod(p, 0o666) // reachable by anyone who can reach the path
			err = unix.Listen(fd, 16)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "listen %s: %v\n", p, err)
			os.Exit(1)
		}
		go func(fd int) {
			for {
				nfd, _, err := unix.Accept(fd)
				if err != nil {
					return
				}
				unix.Close(nfd)
			}
		}(fd)
	}
	fmt.Println("listening")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGTERM, unix.SIGINT)
	<-sig
	for _, p := range paths {
		os.Remove(p)
	}
}

// cgroupSend is the tripwire's test escapee: a process in the host's
// network namespace that joins a confined unit's cgroup and only then
// opens its socket (a socket takes the cgroup of the task creating it).
// Packets dropped in the output hook fail sendto() with EPERM.
func cgroupSend(dir, addr string, n int) {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Printf("join %s: %s\n", dir, errno(err))
		os.Exit(1)
	}
	own, _ := os.ReadFile("/proc/self/cgroup")
	fmt.Printf("cgroup %s", own)
	// Unconnected (sendto): ICMP port unreachable from the target must
	// not turn later datagrams into ECONNREFUSED.
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		fmt.Printf("resolve %s: %v\n", addr, err)
		os.Exit(1)
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		fmt.Printf("socket: %s\n", errno(err))
		os.Exit(1)
	}
	defer c.Close()
	sent, failed := 0, map[string]int{}
	for i := 0; i < n; i++ {
		time.Sleep(5 * time.Millisecond) // paced: no loss to a full queue
		if _, err := c.WriteToUDP([]byte("tripwire escapee\n"), to); err != nil {
			failed[errno(err)]++
			continue
		}
		sent++
	}
	fmt.Printf("sent %d failed %v\n", sent, failed)
}
