//go:build linux

package tripwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 means that this host (or this process's mount namespace) has
// no cgroup2 hierarchy: a cgroup v1-only host, where `socket cgroupv2` can
// never match anything.
var ErrNoCgroup2 = errors.New("no cgroup2 hierarchy is mounted (cgroup v1-only host)")

// ParseProcCgroup returns the cgroup2 path in the text of /proc/PID/cgroup
// (the "0::/path" line). The path is relative to the reader's cgroup
// namespace, like the cgroup2 mount of that namespace.
func ParseProcCgroup(text string) (string, error) {
	for line := range strings.Lines(text) {
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			if !strings.HasPrefix(p, "/") {
				return "", fmt.Errorf("cgroup2 path %q is not absolute", p)
			}
			return p, nil
		}
	}
	return "", ErrNoCgroup2
}

// UnitPath maps the cgroup of a unit's hook to the unit's cgroup. systemd
// runs the control processes (ExecStartPre=, ExecStopPost=, ...) of a unit
// with Delegate=yes in the unit's ".control" subgroup, because the
// delegated tree's root must hold no processes; the unit is its parent.
func UnitPath(p string) string {
	if parent, ok := strings.CutSuffix(p, "/.control"); ok && parent != "" {
		return parent
	}
	return p
}

// CheckPath refuses cgroups that must never be registered, because every
// packet of everything below them would be dropped: the root (all of the
// host), and slices, which group other units, among them the tunnel's own
// vpn-wg@ service. It also refuses cgroups deeper than MaxLevel (no rule
// would ever look there) and paths that are not clean.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return fmt.Errorf("cgroup path %q is not absolute and clean", p)
	}
	if p == "/" {
		return errors.New("refusing to register the root cgroup: it holds every process of the host")
	}
	if strings.HasSuffix(p, ".slice") {
		return fmt.Errorf("refusing to register slice %s: it holds other units, such as the tunnel", p)
	}
	if d := Depth(p); d > MaxLevel {
		return fmt.Errorf("cgroup %s is at level %d, deeper than the %d levels the tripwire looks at", p, d, MaxLevel)
	}
	return nil
}

// Depth is the level of cgroup path p below the root of its cgroup
// namespace. `socket cgroupv2 level N` counts from the root of the cgroup
// namespace of the process that loaded the rule (measured on Linux 6.18:
// a rule loaded inside a namespace rooted at level 1 matched level 1+N;
// older kernels count from the real root), so for the rules this package
// loads from its own namespace it is the level that matches p.
func Depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// Mount is a cgroup2 mount: where it is, and which cgroup it shows there.
type Mount struct {
	Dir  string // mount point, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified
	Root string // the cgroup at Dir, "/" unless a subtree was bind-mounted
}

// Cgroup2Mount finds the cgroup2 hierarchy in the text of
// /proc/PID/mountinfo: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified
// on hybrid ones (systemd's layout with v1 controllers), else the first
// cgroup2 mount that shows the namespace's root.
func Cgroup2Mount(mountinfo string) (Mount, error) {
	var found []Mount
	for line := range strings.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(strings.TrimRight(line, "\n"), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		found = append(found, Mount{Dir: unescapeMountinfo(f[4]), Root: unescapeMountinfo(f[3])})
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, m := range found {
			if m.Dir == want {
				return m, nil
			}
		}
	}
	for _, m := range found {
		if m.Root == "/" {
			return m, nil
		}
	}
	if len(found) > 0 {
		return found[0], nil
	}
	return Mount{}, ErrNoCgroup2
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FindMount returns the cgroup2 mount in the mount namespace of process
// proc ("/proc/1", or "/proc/self"), as seen from here: the mount point is
// reached through proc's root (/proc/1/root/sys/fs/cgroup/...), so a hook
// whose own mount namespace hides or replaces /sys (`ip netns exec`
// mounts a fresh sysfs) still finds the host's cgroups, as it opens the
// host's network namespace by path.
func FindMount(proc string) (Mount, error) {
	b, err := os.ReadFile(proc + "/mountinfo")
	if err != nil {
		return Mount{}, fmt.Errorf("read %s/mountinfo: %w", proc, err)
	}
	m, err := Cgroup2Mount(string(b))
	if err != nil {
		return Mount{}, err
	}
	if proc != "/proc/self" {
		m.Dir = proc + "/root" + m.Dir
	}
	return m, nil
}

// Cgroup is a resolved cgroup.
type Cgroup struct {
	Path string // as in /proc/PID/cgroup, e.g. /system.slice/foo.service
	Dir  string // its directory, e.g. /sys/fs/cgroup/system.slice/foo.service
	ID   uint64 // the inode number of Dir: what `socket cgroupv2` compares
}

// DirOf is the directory of cgroup path p under m.
func (m Mount) DirOf(p string) (string, error) {
	rel := p
	if m.Root != "/" {
		r, ok := strings.CutPrefix(p, m.Root)
		if !ok || r != "" && !strings.HasPrefix(r, "/") {
			return "", fmt.Errorf("cgroup %s is outside the cgroup2 mount at %s (root %s)", p, m.Dir, m.Root)
		}
		rel = r
	}
	return path.Join(m.Dir, rel), nil
}

// Resolve finds cgroup path p under m and reads its ID. The directory must
// be on cgroup2: on a hybrid host a v1 or tmpfs directory of the same name
// has an unrelated inode number.
func (m Mount) Resolve(p string) (Cgroup, error) {
	dir, err := m.DirOf(p)
	if err != nil {
		return Cgroup{}, err
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return Cgroup{}, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return Cgroup{}, fmt.Errorf("cgroup %s: not on a cgroup2 file system", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return Cgroup{}, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return Cgroup{Path: p, Dir: dir, ID: st.Ino}, nil
}

// Self resolves the unit cgroup of the calling process: /proc/self/cgroup,
// mapped to the unit (UnitPath) and checked (CheckPath).
func (m Mount) Self() (Cgroup, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return Cgroup{}, err
	}
	p, err := ParseProcCgroup(string(b))
	if err != nil {
		return Cgroup{}, err
	}
	p = UnitPath(p)
	if err := CheckPath(p); err != nil {
		return Cgroup{}, err
	}
	return m.Resolve(p)
}

// fileidKernfs is the file handle type of kernfs (include/linux/exportfs.h
// FILEID_KERNFS): the handle of a cgroup is its 64-bit ID, so a cgroup can
// be looked up by ID, as systemd's cg_cgroupid_open does.
const fileidKernfs = 0xfe

// Exists reports whether the cgroup with ID id still exists under m. A
// removed cgroup's handle is stale (ESTALE); cgroup IDs are never reused
// while the system runs, so a stale ID is gone for good. Needs
// CAP_DAC_READ_SEARCH (open_by_handle_at).
func (m Mount) Exists(id uint64) (bool, error) {
	mfd, err := unix.Open(m.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", m.Dir, err)
	}
	defer unix.Close(mfd)
	h := make([]byte, 8)
	binary.NativeEndian.PutUint64(h, id)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(fileidKernfs, h), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	switch {
	case err == nil:
		unix.Close(fd)
		return true, nil
	case errors.Is(err, unix.ESTALE), errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("look up cgroup %d: %w", id, err)
}
