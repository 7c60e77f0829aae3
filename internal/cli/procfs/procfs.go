// Package procfs reads what the kernel says about processes from outside
// them: their network namespace, capability sets and cgroup members. All
// functions take the /proc (or /sys) root as an argument, so tests run the
// same code against fake trees.
package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Capabilities that would undo confinement: CAP_NET_ADMIN flushes the
// namespace firewall or adds links, CAP_SYS_ADMIN calls setns() out of it.
const (
	CapNetAdmin = 12
	CapSysAdmin = 21
)

// capNames are the kernel's capability numbers (include/uapi/linux/capability.h).
var capNames = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

// CapName names capability number c ("capability 41" for one newer
// than this table).
func CapName(c int) string {
	if c >= 0 && c < len(capNames) {
		return capNames[c]
	}
	return fmt.Sprintf("capability %d", c)
}

// Caps lists the capabilities in set, by number.
func Caps(set uint64) []int {
	var out []int
	for c := 0; c < 64; c++ {
		if Has(set, c) {
			out = append(out, c)
		}
	}
	return out
}

// ID identifies a file system object (a namespace: nsfs device + inode).
type ID struct {
	Dev uint64
	Ino uint64
}

// String renders a namespace the way /proc/PID/ns/net reads: net:[INODE].
func (i ID) String() string { return fmt.Sprintf("net:[%d]", i.Ino) }

// Stat returns the identity of path (following symlinks, so
// /proc/PID/ns/net gives the namespace itself).
func Stat(path string) (ID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ID{}, err
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// NetnsOf returns the network namespace of process pid.
func NetnsOf(proc string, pid int) (ID, error) {
	return Stat(filepath.Join(proc, strconv.Itoa(pid), "ns", "net"))
}

// Status is the part of /proc/PID/status that matters for confinement.
type Status struct {
	Name       string
	UID        int // real uid
	EUID       int
	CapInh     uint64
	CapBnd     uint64
	CapEff     uint64
	CapPrm     uint64
	CapAmb     uint64
	NoNewPrivs bool
}

// Has reports whether set contains capability c.
func Has(set uint64, c int) bool { return set&(1<<uint(c)) != 0 }

// ReadStatus parses /proc/PID/status.
func ReadStatus(proc string, pid int) (Status, error) {
	f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	return ParseStatus(f)
}

// ParseStatus parses the text of /proc/PID/status.
func ParseStatus(r io.Reader) (Status, error) {
	var s Status
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		hex := func() uint64 {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return ^uint64(0) // unreadable: assume everything
			}
			return n
		}
		seen[k] = true
		switch k {
		case "Name":
			s.Name = v
		case "Uid":
			if f := strings.Fields(v); len(f) > 1 {
				s.UID, _ = strconv.Atoi(f[0])
				s.EUID, _ = strconv.Atoi(f[1])
			}
		case "CapInh":
			s.CapInh = hex()
		case "CapBnd":
			s.CapBnd = hex()
		case "CapEff":
			s.CapEff = hex()
		case "CapPrm":
			s.CapPrm = hex()
		case "CapAmb":
			s.CapAmb = hex()
		case "NoNewPrivs":
			s.NoNewPrivs = v == "1"
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if !seen["CapBnd"] {
		return s, errors.New("no CapBnd line in status")
	}
	return s, nil
}

// CgroupPIDs lists the processes of a unit's control group (the
// ControlGroup property, e.g. /system.slice/x.service), recursively, in
// the unified hierarchy. Hybrid hosts mount it at /sys/fs/cgroup/unified;
// legacy-only hosts have systemd's own name=systemd hierarchy.
func CgroupPIDs(sys, cgroup string) ([]int, error) {
	if cgroup == "" {
		return nil, errors.New("unit has no control group")
	}
	var lastErr error
	for _, base := range []string{"fs/cgroup", "fs/cgroup/unified", "fs/cgroup/systemd"} {
		dir := filepath.Join(sys, base, cgroup)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			lastErr = err
			continue
		}
		var pids []int
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Ints(pids)
		return pids, nil
	}
	return nil, fmt.Errorf("cgroup %s not found: %w", cgroup, lastErr)
}

// Cred is what the kernel checks a process's file access with.
type Cred struct {
	FSUID, FSGID uint32
	Groups       []uint32
	CapEff       uint64
}

// CapDacOverride and CapDacReadSearch bypass file permission checks.
const (
	CapDacOverride   = 1
	CapDacReadSearch = 2
)

// ReadCred reads the file-access credentials of process pid.
func ReadCred(proc string, pid int) (Cred, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return Cred{}, err
	}
	return ParseCred(string(b))
}

// ParseCred parses the Uid, Gid, Groups and CapEff lines of
// /proc/PID/status (the fourth Uid/Gid field is the file-system one).
func ParseCred(status string) (Cred, error) {
	var c Cred
	seen := 0
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch k {
		case "Uid", "Gid":
			if len(f) < 4 {
				return c, fmt.Errorf("status: bad %s line %q", k, line)
			}
			n, err := strconv.ParseUint(f[3], 10, 32)
			if err != nil {
				return c, fmt.Errorf("status: bad %s line %q", k, line)
			}
			if k == "Uid" {
				c.FSUID = uint32(n)
			} else {
				c.FSGID = uint32(n)
			}
			seen++
		case "Groups":
			for _, g := range f {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					c.Groups = append(c.Groups, uint32(n))
				}
			}
		case "CapEff":
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return c, fmt.Errorf("status: bad CapEff line %q", line)
			}
			c.CapEff = n
			seen++
		}
	}
	if seen < 3 {
		return c, errors.New("status: no Uid, Gid or CapEff line")
	}
	return c, nil
}

// may reports whether c passes the permission check for want (a mode
// bit triplet: 4 read, 2 write, 1 search/execute) on an object with mode,
// uid and gid. ACLs and LSMs are not consulted: they can only refuse more.
func (c Cred) may(mode os.FileMode, uid, gid uint32, want uint32, dir bool) bool {
	if Has(c.CapEff, CapDacOverride) {
		return true
	}
	if dir && want&^5 == 0 && Has(c.CapEff, CapDacReadSearch) {
		return true
	}
	perm := uint32(mode.Perm())
	var bits uint32
	switch {
	case c.FSUID == uid:
		bits = perm >> 6
	case c.FSGID == gid || containsU32(c.Groups, gid):
		bits = perm >> 3
	default:
		bits = perm
	}
	return bits&want == want
}

func containsU32(l []uint32, v uint32) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// MayConnect reports whether a process with credentials c, whose root is
// root, may connect to the socket at path: search permission on every
// directory from the root down (symlinks resolved inside root), write
// permission on the socket file. Whether the server then accepts the
// peer is the server's business.
func MayConnect(root, path string, c Cred) (bool, error) {
	rel, err := ResolveInRoot(root, path)
	if err != nil {
		return false, err
	}
	parts := splitPath(rel)
	dir := ""
	for _, name := range append([]string{""}, parts[:len(parts)-1]...) {
		if name != "" {
			dir += "/" + name
		}
		var st syscall.Stat_t
		if err := syscall.Stat(root+dir+"/", &st); err != nil {
			return false, err
		}
		if !c.may(os.FileMode(st.Mode), st.Uid, st.Gid, 1, true) {
			return false, nil
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(root+rel, &st); err != nil {
		return false, err
	}
	return c.may(os.FileMode(st.Mode), st.Uid, st.Gid, 2, false), nil
}
