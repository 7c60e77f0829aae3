//go:build linux

// Package netns is the only place in this project that switches a thread's
// network namespace. Everything else works through handles bound to a
// namespace file descriptor (netlink.NewHandleAt, nftables.WithNetNSFd).
//
// The rules follow cilium's pkg/netns and CNI's pkg/ns: namespace switches
// happen on a fresh goroutine locked to its OS thread; the thread is unlocked
// only if switching back succeeded, otherwise it stays locked and the Go
// runtime terminates it when the goroutine exits, so no other goroutine can
// ever run in a namespace it did not ask for. Code running inside Do must not
// call runtime.LockOSThread itself.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// NetNS is an open network namespace.
type NetNS struct {
	f *os.File
}

// Fd returns the namespace file descriptor (valid until Close).
func (n *NetNS) Fd() int { return int(n.f.Fd()) }

// Close releases the namespace reference.
func (n *NetNS) Close() error { return n.f.Close() }

// Open opens the namespace at path (a /run/netns pin or /proc/PID/ns/net).
func Open(path string) (*NetNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	if err := checkNsfs(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	return &NetNS{f: f}, nil
}

// Current opens the calling thread's network namespace.
func Current() (*NetNS, error) {
	return Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
}

func checkNsfs(f *os.File) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Type != unix.NSFS_MAGIC {
		return errors.New("not a namespace file")
	}
	return nil
}

// Inode identifies a namespace (what readlink /proc/PID/ns/net shows).
func (n *NetNS) Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(n.Fd(), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// New creates a new, unpinned network namespace. It lives as long as the
// returned handle (or anything else referencing it) is open.
func New() (*NetNS, error) {
	var ns *NetNS
	err := onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		var err error
		ns, err = Current()
		return err
	})
	return ns, err
}

// Do runs f on a locked OS thread that is inside n.
func (n *NetNS) Do(f func() error) error {
	return onLockedThread(func() error {
		if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return f()
	})
}

// onLockedThread runs f on a dedicated locked thread and restores the
// thread's original namespace afterwards; if that fails the thread is left
// locked so the runtime discards it.
func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w (terminating OS thread)", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Pin bind-mounts n at path (like `ip netns add`), making the parent a
// shared mount point first so that the pin propagates into the mount
// namespaces of services started later.
func (n *NetNS) Pin(path string) error {
	dir := filepath.Dir(path)
	if err := ensureSharedMount(dir); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create pin %s: %w", path, err)
	}
	f.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", n.Fd())
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin netns at %s: %w", path, err)
	}
	return nil
}

// ensureSharedMount makes dir a mount point with shared propagation, as
// iproute2 does for /run/netns.
func ensureSharedMount(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	// Not a mount point yet: bind it onto itself, then share it.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// IsPinned reports whether path is a mounted namespace pin.
func IsPinned(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Unpin removes the pin at path. It succeeds when there is nothing to
// remove. The namespace itself dies when its last reference goes away.
func Unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
