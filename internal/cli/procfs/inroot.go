package procfs

import (
	"errors"

	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Reading a service's files through /proc/PID/root has a trap: an absolute
// symlink inside (/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf)
// is resolved against the reader's root, so a naive open shows the host's
// file, not the service's. These helpers resolve every symlink inside
// root: openat2(RESOLVE_IN_ROOT) where the kernel has it (5.6+), else a
// component-by-component walk that re-roots absolute targets.

// maxSymlinks matches the kernel's limit (ELOOP after 40).
const maxSymlinks = 40

// StatInRoot returns the identity and mode of path as seen by a process
// whose root directory is root, without following a final symlink's
// target outside root. O_PATH needs no permission on the object, so it
// works for sockets and mode-000 files (systemd's InaccessiblePaths nodes).
func StatInRoot(root, path string) (ID, os.FileMode, error) {
	fd, err := openInRoot(root, path, unix.O_PATH)
	if err != nil {
		return ID{}, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return ID{}, 0, err
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, fileMode(st.Mode), nil
}

// OwnerInRoot is StatInRoot with the object's owner.
func OwnerInRoot(root, path string) (ID, os.FileMode, uint32, error) {
	fd, err := openInRoot(root, path, unix.O_PATH)
	if err != nil {
		return ID{}, 0, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return ID{}, 0, 0, err
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, fileMode(st.Mode), st.Uid, nil
}

// ReadInRoot reads up to max bytes of path as seen inside root.
func ReadInRoot(root, path string, max int64) ([]byte, error) {
	fd, err := openInRoot(root, path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

func openInRoot(root, path string, flags int) (int, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(dir, strings.TrimPrefix(path, "/"), how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // openat2 may ask to retry when a rename races the walk
		}
		if errors.Is(err, unix.ENOSYS) {
			break
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: filepath.Join(root, path), Err: err}
		}
		return fd, nil
	}
	p, err := ResolveInRoot(root, path)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Open(filepath.Join(root, p), flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: filepath.Join(root, p), Err: err}
	}
	return fd, nil
}

// ResolveInRoot resolves every symlink of path as a process chrooted at
// root would, and returns the resulting path relative to root (absolute,
// starting with "/"). ".." never climbs above root. It is the fallback for
// kernels without openat2.
func ResolveInRoot(root, path string) (string, error) {
	rest := splitPath(path)
	cur := "/"
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &os.PathError{Op: "resolve", Path: path, Err: unix.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return cur, nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	}
	return mode
}
