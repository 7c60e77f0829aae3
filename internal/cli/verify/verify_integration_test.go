//go:build linux

package verify

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/namespace"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

type fakeManager map[string]systemd.Props

func (f fakeManager) Show(units []string, _ ...string) ([]systemd.Props, error) {
	var out []systemd.Props
	for _, u := range units {
		out = append(out, f[u])
	}
	return out, nil
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// start runs a shell script that ends in exec sleep; it is killed at the
// end of the test.
func start(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	pid := cmd.Process.Pid
	ok := testnet.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		return strings.TrimSpace(string(b)) == "sleep"
	})
	if !ok {
		t.Fatalf("%s did not reach sleep: %s", script, stderr.String())
	}
	return pid
}

// TestLiveAttestation builds a real namespace and tunnel, then attests two
// processes: one confined the way the drop-in confines a service (joined
// namespace, generated resolver files bound, key directory and tool state
// hidden, empty
// bounding set, no_new_privs), and a plain root process in the same
// namespace, which verify must catch.
func TestLiveAttestation(t *testing.T) {
	tp := testnet.New(t)
	oldState := plan.StateDir
	plan.StateDir = t.TempDir()
	t.Cleanup(func() { plan.StateDir = oldState })
	log := journal.NewWriter(logWriter{t}, false)
	n := tp.Plan
	conf := filepath.Join(tp.Dir, "conf")
	os.MkdirAll(conf, 0o755)
	n.Source = filepath.Join(conf, n.Name+".yaml")
	os.WriteFile(n.Source, []byte("#\n"), 0o644)
	n.Services = []plan.Unit{{Name: "app.service"}, {Name: "rooty.service"}}
	if err := namespace.Up(n, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Down(n, log) })
	ns, err := netns.Open(plan.NetnsPath(n.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	dev, err := wireguard.Create(context.Background(), n, ns, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()

	p := paths.Paths{ConfigDir: conf, GeneratorDir: t.TempDir(), NetnsDir: plan.NetnsDir, RuntimeDir: plan.RuntimeDir,
		Proc: "/proc", Sys: "/sys", Root: "/", UnitPath: []string{}}
	os.MkdirAll(p.PlanDir(), 0o755)
	b, _ := n.Marshal()
	os.WriteFile(p.Plan(n.Name), b, 0o644)

	// A root-owned control socket on the host (in the sandbox's /run),
	// held by this test: the confined process must not reach it, the
	// plain root process does.
	ctl, err := net.Listen("unix", "/run/vpnc-verify-ctl.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	rt := plan.RuntimePath(n.Name)
	confined := start(t, fmt.Sprintf(`exec ip netns exec %s unshare --mount --propagation private sh -c '
		mount --bind %s/resolv.conf /etc/resolv.conf &&
		mount --bind %s/nsswitch.conf /etc/nsswitch.conf &&
		mount -t tmpfs -o mode=000 none %s &&
		mount -t tmpfs none /run &&
		exec setpriv --reuid 65534 --regid 65534 --clear-groups --bounding-set -all --inh-caps -all --no-new-privs sleep 60'`, n.Name, rt, rt, tp.Dir))
	rooty := start(t, fmt.Sprintf("exec ip netns exec %s sleep 60", n.Name))

	props := func(pid int, unit string) systemd.Props {
		return systemd.Props{"Id": unit, "LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(pid),
			"NetworkNamespacePath": p.Netns(n.Name), "DropInPaths": filepath.Join(p.GeneratorDir, unit+".d", "50-vpn-confinement.conf"),
			"DynamicUser": "yes", "NoNewPrivileges": "yes"}
	}
	mgr := fakeManager{"app.service": props(confined, "app.service"), "rooty.service": props(rooty, "rooty.service")}

	f, err := Gather(p, mgr, "app.service")
	if err != nil {
		t.Fatal(err)
	}
	l := Checks(p, f)
	var out bytes.Buffer
	l.WriteText(&out)
	t.Logf("confined:\n%s", out.String())
	if l.Failed() {
		t.Errorf("a process confined like a service must pass:\n%s", out.String())
	}

	f, err = Gather(p, mgr, "rooty.service")
	if err != nil {
		t.Fatal(err)
	}
	l = Checks(p, f)
	out.Reset()
	l.WriteText(&out)
	t.Logf("root process:\n%s", out.String())
	r := results(l)
	for _, name := range []string{"resolv.conf", "nsswitch.conf", "keys", "capabilities", "no-new-privs", "control-planes"} {
		if r[name] != check.Fail {
			t.Errorf("%s must FAIL for a plain root process:\n%s", name, out.String())
		}
	}
	if r["namespace"] != check.Pass || r["firewall"] != check.Pass || r["interfaces"] != check.Pass {
		t.Errorf("the namespace itself is fine:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "visible to the service: "+filepath.Join(tp.Dir, "client.key")) {
		t.Errorf("the key file must be reported:\n%s", out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("root-owned sockets reachable from the service: /run/vpnc-verify-ctl.sock (verify.test PID %d)", os.Getpid())) {
		t.Errorf("the control socket must be reported with its holder:\n%s", out.String())
	}
}
