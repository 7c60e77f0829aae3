//go:build linux

package testnet

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
)

// Notify is a fake systemd notification socket ($NOTIFY_SOCKET) that
// collects what a Type=notify helper sends.
type Notify struct {
	Path string
	msgs chan string
}

// NewNotify listens on a datagram socket in dir; closed at the end of the test.
func NewNotify(t testing.TB, dir string) *Notify {
	t.Helper()
	n := &Notify{Path: filepath.Join(dir, "notify.sock"), msgs: make(chan string, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.Path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			for _, l := range strings.Split(string(buf[:k]), "\n") {
				if l != "" {
					select {
					case n.msgs <- l:
					default:
					}
				}
			}
		}
	}()
	return n
}

// Wait returns the first message with prefix (e.g. "READY=1", "STATUS=")
// within timeout; "" if none came.
func (n *Notify) Wait(prefix string, timeout time.Duration) string {
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				return ""
			}
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			return ""
		}
	}
}

// Helper is a running helper process (e.g. vpn-confinement-wireguard run).
type Helper struct {
	Cmd  *exec.Cmd
	Out  string // file with its stderr/stdout
	done chan struct{}
	err  error
}

// StartHelper runs bin args... with env added, in the test's (the
// sandbox's) namespace; killed at the end of the test if still running.
func StartHelper(t testing.TB, dir, bin string, env []string, args ...string) *Helper {
	t.Helper()
	out, err := os.CreateTemp(dir, filepath.Base(bin)+"-*.out")
	if err != nil {
		t.Fatal(err)
	}
	h := &Helper{Cmd: exec.Command(bin, args...), Out: out.Name(), done: make(chan struct{})}
	h.Cmd.Env = append(os.Environ(), env...)
	h.Cmd.Stdout, h.Cmd.Stderr = out, out
	if err := h.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	out.Close()
	go func() { h.err = h.Cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.Cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			b, _ := os.ReadFile(h.Out)
			t.Logf("output of %s:\n%s", filepath.Base(bin), b)
		}
	})
	return h
}

// Signal sends sig to the helper.
func (h *Helper) Signal(sig syscall.Signal) error { return h.Cmd.Process.Signal(sig) }

// Wait waits up to timeout for the exit; ok is false on timeout.
func (h *Helper) Wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-h.done:
		return h.Cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Output returns what the helper printed so far.
func (h *Helper) Output() string {
	b, _ := os.ReadFile(h.Out)
	return string(b)
}

// Capture is a running tcpdump.
type Capture struct {
	t    testing.TB
	cmd  *exec.Cmd
	file string
	done chan struct{}
}

// StartCapture runs tcpdump on iface in namespace ns ("" = the sandbox's
// own) with a pcap filter, and returns once it listens.
func StartCapture(t testing.TB, dir, ns, iface, filter string) *Capture {
	t.Helper()
	f, err := os.CreateTemp(dir, "capture-*.pcap")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// --immediate-mode: otherwise packets wait in the capture ring for up
	// to a second and are lost when tcpdump is stopped; -Z root: tcpdump
	// would drop to its own user and fail to write our root-owned file.
	args := []string{"tcpdump", "--immediate-mode", "-Z", "root", "-i", iface, "-n", "-U", "-w", f.Name(), filter}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	c := &Capture{t: t, cmd: exec.Command(args[0], args[1:]...), file: f.Name(), done: make(chan struct{})}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	listening := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		var seen strings.Builder
		signalled := false
		for {
			n, err := stderr.Read(buf)
			seen.Write(buf[:n])
			if !signalled && strings.Contains(seen.String(), "listening on") {
				close(listening)
				signalled = true
			}
			if err != nil {
				break
			}
		}
		c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	select {
	case <-listening:
	case <-c.done:
		t.Fatal("tcpdump exited before listening")
	case <-time.After(5 * time.Second):
		t.Fatal("tcpdump did not start listening")
	}
	return c
}

// Stop ends the capture and returns one line per packet.
func (c *Capture) Stop() []string {
	c.t.Helper()
	time.Sleep(200 * time.Millisecond) // let in-flight packets land
	c.cmd.Process.Signal(syscall.SIGINT)
	<-c.done
	out, err := exec.Command("tcpdump", "-n", "-r", c.file).Output()
	if err != nil {
		c.t.Fatalf("read capture: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// LogBuffer holds a test's helper log (written from many goroutines).
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Log returns a verbose logger for code under test; its output is shown
// only when t fails.
func Log(t testing.TB) (*journal.Logger, *LogBuffer) {
	buf := &LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("helper log:\n%s", buf.String())
		}
	})
	return journal.NewWriter(buf, true), buf
}
