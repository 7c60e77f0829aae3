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

// CapName names the capabilities this package reports.
func CapName(c int) string {
	switch c {
	case CapNetAdmin:
		return "CAP_NET_ADMIN"
	case CapSysAdmin:
		return "CAP_SYS_ADMIN"
	}
	return fmt.Sprintf("capability %d", c)
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
