//go:build linux

package status

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/namespace"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// fakeManager answers systemctl show from a table.
type fakeManager map[string]systemd.Props

func (f fakeManager) Show(units []string, _ ...string) ([]systemd.Props, error) {
	var out []systemd.Props
	for _, u := range units {
		p, ok := f[u]
		if !ok {
			p = systemd.Props{"Id": u, "LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead", "MainPID": "0"}
		}
		out = append(out, p)
	}
	return out, nil
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// sleeper starts `sleep` (inside namespace ns when given) and kills it at
// the end of the test.
func sleeper(t *testing.T, ns string) int {
	t.Helper()
	args := []string{"sleep", "60"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	// ip netns exec execs sleep: wait until the PID shows it.
	testnet.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "comm"))
		return strings.TrimSpace(string(b)) == "sleep"
	})
	return cmd.Process.Pid
}

// TestLiveNamespace builds a real namespace (internal/namespace: firewall,
// host link, resolv.conf) with a real userspace tunnel to the test peer,
// and checks what status reads back from the kernel, including a confined
// "service" that is inside and one that is not.
func TestLiveNamespace(t *testing.T) {
	tp := testnet.New(t)
	oldState := plan.StateDir
	plan.StateDir = t.TempDir()
	t.Cleanup(func() { plan.StateDir = oldState })
	log := journal.NewWriter(logWriter{t}, true)

	n := tp.Plan
	conf := filepath.Join(tp.Dir, "conf")
	os.MkdirAll(conf, 0o755)
	n.Source = filepath.Join(conf, n.Name+".yaml")
	os.WriteFile(n.Source, []byte("# stands in for the real file\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(n.Source, old, old)
	sfx := strings.TrimPrefix(n.Name, "vc")
	n.HostLink = &plan.HostLink{HostIf: "vh" + sfx, NsIf: "vn" + sfx, Subnet: netip.MustParsePrefix("169.254.77.0/30"),
		HostAddr: netip.MustParseAddr("169.254.77.1"), NsAddr: netip.MustParseAddr("169.254.77.2")}
	n.Ingress.FromHostTCP = []uint16{8080}
	n.WireGuard.Peers[0].PersistentKeepalive = 25
	n.Services = []plan.Unit{{Name: "app.service"}, {Name: "leak.service"}}

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
	ns.Do(func() error {
		c, err := net.Dial("udp", "10.123.0.1:7")
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
		return nil
	})
	if !testnet.WaitFor(10*time.Second, func() bool {
		w, err := kstate.ReadWireGuard(ns, n.WireGuard.Interface)
		return err == nil && w != nil && len(w.Peers) == 1 && !w.Peers[0].LastHandshake.IsZero()
	}) {
		t.Fatal("no handshake")
	}

	gen := t.TempDir()
	p := paths.Paths{ConfigDir: conf, GeneratorDir: gen, NetnsDir: plan.NetnsDir, RuntimeDir: plan.RuntimeDir,
		StateDir: plan.StateDir, Proc: "/proc", Sys: "/sys", Root: "/", UnitPath: []string{}}
	os.MkdirAll(p.PlanDir(), 0o755)
	b, _ := n.Marshal()
	os.WriteFile(p.Plan(n.Name), b, 0o644)

	inside, outside := sleeper(t, n.Name), sleeper(t, "")
	mgr := fakeManager{
		"vpn-ns@" + n.Name + ".service": {"LoadState": "loaded", "ActiveState": "active", "SubState": "exited", "MainPID": "0"},
		"vpn-wg@" + n.Name + ".service": {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(os.Getpid())},
		"app.service":                   {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(inside)},
		"leak.service":                  {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(outside)},
	}
	c := Collector{Paths: p, Systemd: mgr, Kernel: true, Now: time.Now()}
	rep, err := c.Collect("")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out, c.Now)
	t.Logf("status:\n%s", out.String())
	if len(rep.Namespaces) != 1 {
		t.Fatalf("%d namespaces", len(rep.Namespaces))
	}
	s := rep.Namespaces[0]
	if !s.Netns.Present || s.Netns.ID == "" {
		t.Errorf("netns: %+v", s.Netns)
	}
	tu := s.Tunnel
	if !tu.Present || !tu.Up || tu.Backend != "userspace" || len(tu.Peers) != 1 || !tu.Peers[0].OnDevice || tu.Peers[0].LatestHandshake == nil {
		t.Errorf("tunnel: %+v", tu)
	}
	if tu.Peers[0].Endpoint != "10.213.0.2:51820" || tu.Peers[0].TxBytes == 0 {
		t.Errorf("peer: %+v", tu.Peers[0])
	}
	if fw := s.Firewall; fw == nil || fw.Rules == 0 || len(fw.Chains) < 3 || fw.RuleCounters["output drop"].Packets != 0 && fw.DropPackets == 0 {
		t.Errorf("firewall: %+v", s.Firewall)
	}
	if !s.DNS.Current || strings.Join(s.DNS.Generated, ",") != "10.123.0.1" {
		t.Errorf("dns: %+v", s.DNS)
	}
	if h := s.HostLink; h == nil || !h.HostPresent || !h.HostUp || !h.NsPresent {
		t.Errorf("host link: %+v", s.HostLink)
	}
	hasRoute := false
	for _, r := range s.Routes {
		hasRoute = hasRoute || (r.Dst.Bits() == 0 && r.Dev == n.WireGuard.Interface)
	}
	if !hasRoute {
		t.Errorf("no default route via the tunnel: %v", s.Routes)
	}
	app, leak := s.Confined[0], s.Confined[1]
	if app.InNamespace == nil || !*app.InNamespace {
		t.Errorf("app: %+v", app)
	}
	if leak.InNamespace == nil || *leak.InNamespace {
		t.Errorf("leak: %+v", leak)
	}
	if s.State != StateUnsafe || !strings.Contains(strings.Join(s.Problems, "\n"), "leak.service (PID") {
		t.Errorf("state %s, problems %q", s.State, s.Problems)
	}
	if len(s.Errors) != 0 {
		t.Errorf("unread: %q", s.Errors)
	}

	// Without the leak and with the file edited after the plan was
	// written: up, but the stale configuration is a problem.
	delete(mgr, "leak.service")
	os.Chtimes(n.Source, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	rep, _ = c.Collect(n.Name)
	s = rep.Namespaces[0]
	if s.State != StateUp || len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "changed after the last daemon-reload") {
		t.Errorf("state %s, problems %q", s.State, s.Problems)
	}

	// The kill switch gone is the worst state there is.
	dev.Close()
	exec.Command("ip", "netns", "exec", n.Name, "nft", "delete", "table", "inet", "vpn_confinement").Run()
	rep, _ = c.Collect(n.Name)
	s = rep.Namespaces[0]
	if s.State != StateUnsafe || !strings.Contains(strings.Join(s.Problems, "\n"), "no kill switch") || s.Tunnel.Present {
		t.Errorf("state %s, problems %q", s.State, s.Problems)
	}
	if _, err := c.Collect("nope"); err == nil {
		t.Error("unknown namespace accepted")
	}
}

// TestLiveSections: the round-2 sections read from the files the helpers
// write (applied plan, tunnel state) and a namespace left without a plan.
func TestLiveSections(t *testing.T) {
	testutil.RequireSandbox(t)
	rt := t.TempDir()
	gen := t.TempDir()
	// The sandbox's /run/netns: a real pinned namespace for "media".
	if out, err := exec.Command("ip", "netns", "add", "media").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", "media").Run(); os.Remove("/run/netns/gone") })
	p := paths.Paths{ConfigDir: t.TempDir(), GeneratorDir: gen, NetnsDir: "/run/netns", RuntimeDir: rt,
		StateDir: t.TempDir(), Proc: "/proc", Sys: "/sys", Root: "/", UnitPath: []string{}}
	n := &plan.Namespace{Version: plan.Version, Name: "media", Source: filepath.Join(p.ConfigDir, "media.yaml"),
		DNS:       plan.DNS{Mode: plan.DNSCompat},
		WireGuard: plan.WireGuard{Interface: "wg0", Backend: "auto", PrivateKey: plan.KeySource{File: "/k"}},
		Services:  []plan.Unit{{Name: "app.service"}}}
	os.WriteFile(n.Source, []byte("#\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(n.Source, old, old)
	os.MkdirAll(p.PlanDir(), 0o755)
	b, _ := n.Marshal()
	os.WriteFile(p.Plan("media"), b, 0o644)
	priv := filepath.Join(rt, "_private", "media")
	os.MkdirAll(priv, 0o700)
	os.WriteFile(filepath.Join(priv, "applied.json"), b, 0o600)
	st := &tunnel.State{Namespace: "media", PID: os.Getpid(), State: tunnel.StateBlocked, Since: time.Now().Add(-time.Minute),
		Reason: "peer 0: unreachable at 198.51.100.7:51820", OnTunnelLoss: "block", Updated: time.Now()}
	if err := st.Write(filepath.Join(priv, "tunnel.json"), ""); err != nil {
		t.Fatal(err)
	}
	// A namespace that still runs (its unit active, its pin there) with
	// no plan: its file was removed.
	os.WriteFile(filepath.Join(p.NetnsDir, "gone"), nil, 0o644)
	os.WriteFile(filepath.Join(p.StateDir, "gone.units"), []byte("old.service\n"), 0o644)
	mgr := fakeManager{
		"vpn-ns@media.service": {"LoadState": "loaded", "ActiveState": "active", "SubState": "exited", "MainPID": "0"},
		"vpn-wg@media.service": {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(os.Getpid())},
		"vpn-ns@gone.service":  {"LoadState": "loaded", "ActiveState": "active", "SubState": "exited", "MainPID": "0"},
		"old.service":          {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "1"},
	}
	c := Collector{Paths: p, Systemd: mgr, Now: time.Now()}
	rep, err := c.Collect("")
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Namespaces[0]
	if sv := s.Supervisor; sv == nil || !sv.Present || !sv.Current || sv.State != tunnel.StateBlocked {
		t.Errorf("supervisor: %+v", s.Supervisor)
	}
	if pp := s.Pending; pp == nil || pp.Pending || pp.AppliedHash != pp.PlanHash || pp.AppliedHash == "" {
		t.Errorf("pending: %+v", s.Pending)
	}
	if !strings.Contains(strings.Join(s.Problems, "\n"), "tunnel blocked since") {
		t.Errorf("problems %q", s.Problems)
	}
	if len(rep.Orphans) != 1 || !strings.Contains(rep.Orphans[0].Problem, "namespace gone is running without a file ("+filepath.Join(p.ConfigDir, "gone.yaml")+" was removed): old.service run unconfined") {
		t.Errorf("orphans: %+v", rep.Orphans)
	}

	// A daemon-reload compiled a new plan: pending until reload.
	n.DNS.Servers = []netip.Addr{netip.MustParseAddr("10.64.0.1")}
	b, _ = n.Marshal()
	os.WriteFile(p.Plan("media"), b, 0o644)
	os.Chtimes(n.Source, old, old)
	rep, _ = c.Collect("media")
	s = rep.Namespaces[0]
	if pp := s.Pending; pp == nil || !pp.Pending || pp.Command != "systemctl reload vpn-ns@media.service" {
		t.Errorf("pending after a new plan: %+v", s.Pending)
	}
	if !strings.Contains(strings.Join(s.Problems, "\n"), "pending plan: the namespace runs an older plan than the generator's; apply it: systemctl reload vpn-ns@media.service") {
		t.Errorf("problems %q", s.Problems)
	}
}
