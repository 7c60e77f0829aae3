//go:build linux

package wireguard

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
)

// TestHelperProcess runs the real vpn-confinement-wireguard binary the way
// vpn-wg@.service does: READY=1 once the tunnel is routed,
// STATUS= without secrets, SIGTERM → exit 0 and nothing left; SIGKILL →
// the TUN dies with the process, down removes the stale socket, and the
// next run works.
func TestHelperProcess(t *testing.T) {
	tp := testnet.New(t)
	ns := tp.ConfinedNS()
	bin := testnet.Binary(t, "vpn-confinement-wireguard", "./helpers/wireguard")
	planPath := tp.WritePlan()
	iface := tp.Plan.WireGuard.Interface
	keyText, _ := os.ReadFile(tp.Plan.WireGuard.PrivateKey.File)

	run := func() (*testnet.Helper, *testnet.Notify, time.Duration) {
		t.Helper()
		n := testnet.NewNotify(t, t.TempDir())
		start := time.Now()
		// Exactly the capabilities vpn-wg@.service leaves it.
		h := testnet.StartHelper(t, tp.Dir, "setpriv", []string{"NOTIFY_SOCKET=" + n.Path},
			"--bounding-set", "-all,+net_admin,+sys_admin", "--", bin, "-plan", planPath, "-v", "run", tp.Name)
		if m := n.Wait("READY=1", 10*time.Second); m == "" {
			t.Fatalf("no READY=1; output:\n%s", h.Output())
		}
		return h, n, time.Since(start)
	}

	h, n, took := run()
	t.Logf("process start to READY=1: %s", took)
	// Ready means routed: traffic works at once, no wait.
	if out, err := testnet.Exec(tp.Name, "ping", "-c", "1", "-W", "2", "10.123.0.1"); err != nil {
		t.Errorf("ping right after READY: %v\n%s", err, out)
	}
	if m := n.Wait("STATUS=", 5*time.Second); m == "" {
		t.Error("no STATUS=")
	} else {
		t.Logf("%s", m)
	}
	if out, err := exec.Command("wg", "show", iface).CombinedOutput(); err != nil || !strings.Contains(string(out), "latest handshake") {
		t.Errorf("wg show %s: %v\n%s", iface, err, out)
	}
	if err := h.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := h.Wait(5 * time.Second); !ok || code != 0 {
		t.Fatalf("after SIGTERM: exited %v, code %d\n%s", ok, code, h.Output())
	}
	assertGone(t, tp, ns)
	if out := h.Output(); strings.Contains(out, strings.TrimSpace(string(keyText))[:20]) {
		t.Error("the private key appears in the helper's output")
	}

	// A crash: the TUN dies with the process, the socket file stays.
	h, _, _ = run()
	h.Signal(syscall.SIGKILL)
	h.Wait(5 * time.Second)
	if _, err := os.Stat(UAPISocket(iface)); err != nil {
		t.Logf("no stale socket after SIGKILL (%v)", err)
	}
	down := exec.Command(bin, "-plan", planPath, "down", tp.Name)
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	assertGone(t, tp, ns)
	h, _, _ = run()
	h.Signal(syscall.SIGTERM)
	h.Wait(5 * time.Second)
	assertGone(t, tp, ns)

	// The tunnel's link deleted under a running helper: the helper brings
	// it back at once and keeps running (the namespace is the boundary;
	// services do not depend on the tunnel's process).
	h, _, _ = run()
	if out, err := exec.Command("ip", "-n", tp.Name, "link", "del", iface).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v %s", err, out)
	}
	// Up to one WireGuard handshake retransmission (REKEY_TIMEOUT, 5 s):
	// an initiation within 20 ms of the dead device's own is dropped by the
	// peer's flood protection, and only the retry gets through.
	if !testnet.WaitFor(15*time.Second, func() bool {
		out, err := testnet.Exec(tp.Name, "ping", "-c", "1", "-W", "1", "10.123.0.1")
		return err == nil && strings.Contains(out, "1 received")
	}) {
		t.Errorf("the tunnel did not come back after its link was deleted:\n%s", h.Output())
	}
	if _, exited := h.Wait(100 * time.Millisecond); exited {
		t.Error("the helper exited after the link was deleted")
	}
	h.Signal(syscall.SIGTERM)
	if code, ok := h.Wait(5 * time.Second); !ok || code != 0 {
		t.Errorf("after SIGTERM: exited %v, code %d", ok, code)
	}
	assertGone(t, tp, ns)
}

// TestHelperUsage: bad invocations and a missing namespace fail cleanly.
func TestHelperUsage(t *testing.T) {
	tp := testnet.New(t)
	bin := testnet.Binary(t, "vpn-confinement-wireguard", "./helpers/wireguard")
	planPath := tp.WritePlan()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run"}, 2, "usage"},
		{[]string{"-plan", planPath, "run", "other"}, 1, "not \"other\""},
		{[]string{"-plan", planPath, "run", tp.Name}, 1, "is vpn-ns@" + tp.Name + " running?"},
		{[]string{"-plan", planPath, "down", tp.Name}, 0, ""},
	} {
		out, err := exec.Command(bin, c.args...).CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: code %d, output %q; want %d, %q", c.args, code, out, c.code, c.want)
		}
	}
}
