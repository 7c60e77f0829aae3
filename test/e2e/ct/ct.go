// Package ct drives a throwaway systemd container for the end-to-end tests
// and the demo: boot systemd 252 as PID 1 (ct-start.sh), install the built
// tool the way `make install` does, run commands inside with nsenter, and
// tear everything down (ct-stop.sh kills only the container's own processes
// and removes its cgroup and mounts).
//
// Run it only inside test/sandbox.sh: the container has its own network
// namespace, and the sandbox guarantees nothing outlives the run.
package ct

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Container is a running systemd container.
type Container struct {
	Name  string
	SPID  int    // host PID of the container's systemd
	Root  string // /proc/SPID/root: the container's file system from outside
	dir   string // directory of ct-start.sh
	Log   func(format string, args ...any)
	Trace bool
}

// Start boots a container. dir is the directory holding ct-start.sh.
func Start(dir, name string, logf func(string, ...any)) (*Container, error) {
	exec.Command(filepath.Join(dir, "ct-stop.sh"), name).Run() // leftovers of a killed run
	out, err := exec.Command(filepath.Join(dir, "ct-start.sh"), name).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("start container: %v\n%s", err, stderr)
	}
	spid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return nil, fmt.Errorf("start container: bad pid %q", out)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Container{Name: name, SPID: spid, Root: fmt.Sprintf("/proc/%d/root", spid), dir: dir, Log: logf}, nil
}

// Stop powers the container off and removes everything it left.
func (c *Container) Stop() error {
	return exec.Command(filepath.Join(c.dir, "ct-stop.sh"), c.Name).Run()
}

// Result of a command run in the container.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
}

// Run runs argv in all of the container's namespaces.
func (c *Container) Run(argv ...string) Result {
	return c.RunTimeout(60*time.Second, argv...)
}

// RunTimeout is Run with a deadline.
func (c *Container) RunTimeout(d time.Duration, argv ...string) Result {
	args := append([]string{"-t", strconv.Itoa(c.SPID), "-a", "--", "timeout", "-k", "2", strconv.Itoa(int(d.Seconds()))}, argv...)
	cmd := exec.Command("nsenter", args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		r.Code, r.Stderr = -1, err.Error()
	}
	if c.Trace {
		c.Log("$ %s → %d %s%s", strings.Join(argv, " "), r.Code, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
	}
	return r
}

// Sh runs a shell snippet in the container.
func (c *Container) Sh(script string) Result { return c.Run("/bin/sh", "-c", script) }

// WriteFile writes a file into the container's file system.
func (c *Container) WriteFile(path string, data []byte, mode os.FileMode) error {
	full := filepath.Join(c.Root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(full, data, mode); err != nil {
		return err
	}
	return os.Chmod(full, mode)
}

// ReadFile reads a file of the container.
func (c *Container) ReadFile(path string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.Root, path))
}

// Install installs a build directory (made by `make build B=DIR`) into the
// container with `make install-files`, exactly like `make install`, plus the
// test tools into /usr/local/bin.
func (c *Container) Install(repo, build string, tools ...string) error {
	cmd := exec.Command("make", "-s", "-C", repo, "install-files", "B="+build, "DESTDIR="+c.Root, "PREFIX=/usr/local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make install-files: %v\n%s", err, out)
	}
	for _, t := range tools {
		b, err := os.ReadFile(t)
		if err != nil {
			return err
		}
		if err := c.WriteFile("/usr/local/bin/"+filepath.Base(t), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Active reports `systemctl is-active` of unit.
func (c *Container) Active(unit string) string {
	return strings.TrimSpace(c.Run("systemctl", "is-active", unit).Stdout)
}

// WaitActive waits until unit reaches state (e.g. "active", "inactive").
func (c *Container) WaitActive(unit, state string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.Active(unit) == state {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c.Active(unit) == state
}

// MainPID returns the main PID of a unit inside the container, as a host
// PID is not needed: /proc of the container is reachable via Root.
func (c *Container) MainPID(unit string) int {
	r := c.Run("systemctl", "show", "-P", "MainPID", unit)
	pid, _ := strconv.Atoi(strings.TrimSpace(r.Stdout))
	return pid
}

// NetnsInode returns the inode of a path's network namespace inside the
// container (e.g. /run/netns/NAME or /proc/PID/ns/net).
func (c *Container) NetnsInode(path string) string {
	return strings.TrimSpace(c.Run("stat", "-L", "-c", "%i", path).Stdout)
}
