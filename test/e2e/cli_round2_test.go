package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/status"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/verify"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

const cliBin = "/usr/local/bin/vpn-confinement"

// statusJSON runs status --json and decodes it.
func statusJSON(t *testing.T, c *ct.Container, args ...string) (*status.Report, ct.Result) {
	t.Helper()
	r := c.Run(append([]string{cliBin, "status", "--json"}, args...)...)
	var rep status.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, r)
	}
	return &rep, r
}

func namespaceOf(t *testing.T, rep *status.Report, name string) status.Namespace {
	t.Helper()
	for _, n := range rep.Namespaces {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("status has no namespace %s", name)
	return status.Namespace{}
}

// waitStatus polls status until ok says yes (a generous deadline: the
// tunnel helper decides "blocked" after its 15 s first-handshake grace).
func waitStatus(t *testing.T, c *ct.Container, name string, d time.Duration, ok func(n status.Namespace) bool) status.Namespace {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		rep, _ := statusJSON(t, c, name)
		n := namespaceOf(t, rep, name)
		if ok(n) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func verifyJSON(t *testing.T, c *ct.Container, unit string) (verify.Report, ct.Result) {
	t.Helper()
	r := c.Run(cliBin, "verify", "--json", unit)
	var rep verify.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("verify --json %s is not JSON: %v\n%s", unit, err, r)
	}
	return rep, r
}

func checkOf(rep verify.Report, name string) (string, string) {
	for _, c := range rep.Checks {
		if c.Name == name {
			return string(c.Result), c.Detail
		}
	}
	return "", ""
}

// TestCLIRound2 runs the round-2 parts of status, verify, doctor and run
// against systemd 252 with real confined units: the tunnel helper's
// report, a pending plan and its reload, a blocked tunnel, the host-side
// tripwire's counter after a real escape, a namespace left running
// without its file; verify of services, the publish proxy and vpn-pf@,
// and of a unit that systemd loaded with a CAP_NET_ADMIN drop-in the
// generator never saw; doctor's freezer, tripwire and published-port
// checks; run with an extra address family, properties and the tripwire
// hooks.
func TestCLIRound2(t *testing.T) {
	c, w := boot(t, "cli2", "cli2a", "cli2b")
	pa, pb := w.Peers["cli2a"], w.Peers["cli2b"]
	unit(t, c, "app.service", sleeper)
	unit(t, c, "late.service", sleeper)
	unit(t, c, "rootapp.service", "[Service]\nExecStart=/bin/sleep infinity\n")
	unit(t, c, "web.service", "[Service]\nExecStart=/usr/local/bin/vpnc-testpeer -tcp-echo 127.0.0.1:8080\nDynamicUser=yes\n")
	unit(t, c, "orph.service", sleeper)
	extra := `publish:
  - listen: "127.0.0.1:8080"
portForwarding:
  protocol: static
  port: 51413
services:
  - unit: app.service
  - unit: late.service
  - unit: web.service
  - unit: rootapp.service
    allowRoot: true
`
	yamlA := w.NamespaceYAML(pa, "wgcli2a", extra)
	if err := w.InstallNamespace(pa, yamlA); err != nil {
		t.Fatal(err)
	}
	if err := w.InstallNamespace(pb, w.NamespaceYAML(pb, "wgcli2b", "services:\n  - unit: orph.service\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "app.service", "rootapp.service", "web.service", "orph.service")
	for _, u := range []string{"app.service", "rootapp.service", "web.service", "orph.service", "vpn-publish-cli2a-8080.socket"} {
		if !c.WaitActive(u, "active", 20*time.Second) {
			t.Fatalf("%s not active:\n%s", u, c.Run("systemctl", "--no-pager", "status", u, "vpn-ns@cli2a.service", "vpn-wg@cli2a.service").Stdout)
		}
	}
	c.Probe("app.service", "tcp", ct.SrvTunnel+":7") // a handshake
	// The proxy starts on the first connection.
	if r := c.Run("/usr/local/bin/vpnc-probe", "tcp", "127.0.0.1:8080"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "OPEN") {
		t.Errorf("published port from the host: %s", r)
	}

	t.Run("status", func(t *testing.T) {
		n := waitStatus(t, c, "cli2a", 30*time.Second, func(n status.Namespace) bool {
			return n.Supervisor != nil && n.Supervisor.State == "up" && n.Supervisor.Current
		})
		s := n.Supervisor
		if s == nil || !s.Present || !s.Current || s.State != "up" || !s.Up || s.OnTunnelLoss != "block" || len(s.Peers) != 1 ||
			s.Peers[0].EndpointIndex != 1 || s.Peers[0].Endpoints != 1 || s.Peers[0].HandshakeAge == nil {
			t.Errorf("supervisor: %+v", s)
		}
		if p := n.Pending; p == nil || p.Pending || p.AppliedHash == "" || p.AppliedHash != p.PlanHash || p.TunnelBehind {
			t.Errorf("pending plan of a fresh namespace: %+v", p)
		}
		if tw := n.Tripwire; tw == nil || tw.Packets != 0 || !strings.Contains(strings.Join(tw.Registered, " "), "app.service") || len(tw.Unregistered) != 0 {
			t.Errorf("tripwire: %+v", n.Tripwire)
		}
		if len(n.Published) != 1 || n.Published[0].Socket.ActiveState != "active" || n.Published[0].Service.Name != "vpn-publish-cli2a-8080.service" || n.Published[0].Port != 8080 {
			t.Errorf("published: %+v", n.Published)
		}
		if pf := n.PortForwarding; pf == nil || pf.Protocol != "static" || pf.StaticPort != 51413 || pf.Unit.Name != "vpn-pf@cli2a.service" {
			t.Errorf("port forwarding: %+v", n.PortForwarding)
		}
		if n.State != status.StateUp || len(n.Problems) != 0 {
			t.Errorf("state %s, problems %q", n.State, n.Problems)
		}
		rep, _ := statusJSON(t, c)
		if rep.Tripwire == nil || !rep.Tripwire.Table || rep.Tripwire.Unsupported != "" || rep.Tripwire.Registered < 4 {
			t.Errorf("host tripwire: %+v", rep.Tripwire)
		}
		human := c.Run(cliBin, "status", "cli2a")
		t.Logf("status cli2a:\n%s", human.Stdout)
		for _, want := range []string{"lifecycle  up since", "onTunnelLoss block, ", " recreations", "endpoint 1 of 1 " + ct.SrvUplink,
			"published  127.0.0.1:8080 → port 8080 in the namespace (proxy vpn-publish-cli2a-8080.service ", "port fwd   static port 51413; vpn-pf@cli2a.service",
			"tripwire   0 packets dropped in the host namespace; watching app.service"} {
			if !strings.Contains(human.Stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, human.Stdout)
			}
		}
		if human.Code != 0 {
			t.Errorf("status of a healthy namespace: %s", human)
		}
	})

	t.Run("verify-confined", func(t *testing.T) {
		for _, u := range []string{"app.service", "rootapp.service", "vpn-publish-cli2a-8080.service", "vpn-pf@cli2a.service"} {
			rep, r := verifyJSON(t, c, u)
			t.Logf("verify %s:\n%s", u, c.Run(cliBin, "verify", u).Stdout)
			if r.Code != 0 || !rep.OK {
				t.Errorf("verify %s:\n%s", u, c.Run(cliBin, "verify", u).Stdout)
			}
			if u == "app.service" {
				if res, d := checkOf(rep, "control-planes"); res != "PASS" || !strings.Contains(d, "/run/systemd/journal/") || strings.Contains(d, "/run/systemd/private") {
					t.Errorf("control-planes of app.service: %s %s", res, d)
				}
				if res, _ := checkOf(rep, "systemd-tmpfs"); res != "PASS" {
					t.Errorf("systemd-tmpfs: %s", res)
				}
			}
		}
		if rep, _ := verifyJSON(t, c, "vpn-publish-cli2a-8080.service"); rep.Kind != verify.KindProxy {
			t.Errorf("proxy kind %q", rep.Kind)
		}
	})

	t.Run("verify-late-cap-net-admin", func(t *testing.T) {
		// late.service is listed but not loaded (never started). A drop-in
		// appears after the generator ran; starting the unit loads it from
		// disk without running the generators, so nothing blocked it.
		if got := c.Run("systemctl", "show", "-P", "LoadState", "late.service").Stdout; strings.TrimSpace(got) == "loaded" {
			c.Run("systemctl", "stop", "late.service")
		}
		if err := c.WriteFile("/etc/systemd/system/late.service.d/90-late.conf", []byte("[Service]\nCapabilityBoundingSet=CAP_NET_ADMIN\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, c, "systemctl", "start", "late.service")
		if !strings.Contains(c.Run("systemctl", "show", "-P", "DropInPaths", "late.service").Stdout, "90-late.conf") {
			t.Fatalf("systemd did not load the new drop-in without a daemon-reload:\n%s", c.Run("systemctl", "cat", "late.service").Stdout)
		}
		rep, r := verifyJSON(t, c, "late.service")
		text := c.Run(cliBin, "verify", "late.service").Stdout
		t.Logf("verify late.service:\n%s", text)
		if r.Code != 1 || rep.OK {
			t.Errorf("verify passed a unit with a late CAP_NET_ADMIN drop-in:\n%s", text)
		}
		if res, d := checkOf(rep, "overrides"); res != "FAIL" || !strings.Contains(d, "CapabilityBoundingSet has CAP_NET_ADMIN (forbidden") ||
			!strings.Contains(d, "/etc/systemd/system/late.service.d/90-late.conf:2: CapabilityBoundingSet=CAP_NET_ADMIN") {
			t.Errorf("overrides: %s %s\n%s", res, d, text)
		}
		if res, d := checkOf(rep, "capabilities"); res != "FAIL" || !strings.Contains(d, "CAP_NET_ADMIN (bounding)") {
			t.Errorf("capabilities: %s %s", res, d)
		}
		c.Run("systemctl", "stop", "late.service")
		c.Run("rm", "-r", "/etc/systemd/system/late.service.d")
	})

	t.Run("run", func(t *testing.T) {
		// socket(AF_PACKET=17, SOCK_RAW=3): perl is in every Debian root.
		py := `socket(my $s, 17, 3, 0) or print "$!\n"`
		r := c.Run(cliBin, "run", "--pipe", "cli2a", "--", "perl", "-e", py)
		if !strings.Contains(r.Stdout, "Address family not supported") {
			t.Errorf("AF_PACKET without --family: %s", r)
		}
		// With the family the socket call reaches the kernel, which wants
		// CAP_NET_RAW for it: the family filter let it through.
		r = c.Run(cliBin, "run", "--pipe", "--family", "AF_PACKET", "cli2a", "--", "perl", "-e", py)
		if !strings.Contains(r.Stdout, "Operation not permitted") {
			t.Errorf("AF_PACKET with --family: %s", r)
		}
		r = c.Run(cliBin, "run", "--pipe", "-p", "Environment=VPNC_X=from-p", "cli2a", "--", "/bin/sh", "-c", "echo $VPNC_X")
		if strings.TrimSpace(r.Stdout) != "from-p" {
			t.Errorf("-p Environment: %s", r)
		}
		r = c.Run(cliBin, "run", "--pipe", "-p", "CapabilityBoundingSet=CAP_NET_ADMIN", "cli2a", "--", "/bin/true")
		if r.Code != 2 || !strings.Contains(r.Stderr, "not passed through") {
			t.Errorf("-p CapabilityBoundingSet: %s", r)
		}
		r = c.Run(cliBin, "run", "--pipe", "--root", "cli2a", "--", "/bin/sh", "-c", "grep CapBnd /proc/self/status; touch /run/vpnc-x && echo WROTE")
		if !strings.Contains(r.Stdout, "00000000000404fb") || strings.Contains(r.Stdout, "WROTE") {
			t.Errorf("run --root is not confined like an allowRoot service: %s", r)
		}
		// The tripwire hooks (ExecStartPre=+) register the transient unit.
		c.Sh(cliBin + " run --pipe cli2a -- /bin/sleep 60 >/dev/null 2>&1 &")
		var unitName, cg string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && cg == ""; time.Sleep(200 * time.Millisecond) {
			for _, l := range strings.Split(c.Run("systemctl", "list-units", "--no-legend", "--plain", "--state=active", "run-*.service").Stdout, "\n") {
				if f := strings.Fields(l); len(f) > 0 && strings.Contains(c.Run("systemctl", "show", "-P", "Description", f[0]).Stdout, "vpn-confinement run in cli2a: /bin/sleep 60") {
					unitName = f[0]
					cg = strings.TrimSpace(c.Run("systemctl", "show", "-P", "ControlGroup", f[0]).Stdout)
				}
			}
		}
		if cg == "" {
			t.Fatalf("the run unit did not start: %s", c.Run("systemctl", "list-units", "run-*").Stdout)
		}
		m := c.Run("nft", "list", "map", "inet", "vpnc_tripwire", "units").Stdout
		if !strings.Contains(m, strings.TrimPrefix(cg, "/")+`" : jump ns_cli2a`) {
			t.Errorf("the run unit's cgroup %s is not in the tripwire:\n%s", cg, m)
		}
		mustRun(t, c, "systemctl", "stop", unitName)
		if m := c.Run("nft", "list", "map", "inet", "vpnc_tripwire", "units").Stdout; strings.Contains(m, strings.TrimPrefix(cg, "/")) {
			t.Errorf("the stopped run unit is still in the tripwire:\n%s", m)
		}
	})

	t.Run("doctor", func(t *testing.T) {
		r := c.Run(cliBin, "doctor", "--json")
		var rep struct {
			Checks []struct{ Name, Result, Detail string }
		}
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, r)
		}
		got := map[string]string{}
		for _, ch := range rep.Checks {
			got[ch.Name] = ch.Result + " " + ch.Detail
		}
		for name, want := range map[string]string{
			"freezer":         "OK the cgroup freezer works here",
			"tripwire":        "OK host-side tripwire available",
			"published-ports": "OK 127.0.0.1:8080 (vpn-publish-cli2a-8080.socket)",
		} {
			if !strings.HasPrefix(got[name], want) {
				t.Errorf("doctor %s: %q, want %q", name, got[name], want)
			}
		}
		// Something else takes the published port while the socket unit and
		// its proxy (which holds the listening socket too) are stopped.
		mustRun(t, c, "systemctl", "stop", "vpn-publish-cli2a-8080.socket", "vpn-publish-cli2a-8080.service")
		mustRun(t, c, "systemd-run", "--quiet", "--unit=squatter", "/usr/local/bin/vpnc-testpeer", "-tcp-echo", "127.0.0.1:8080", "-ready", "/run/vpnc-test/squatter.ready")
		for i := 0; i < 100 && c.Run("test", "-e", "/run/vpnc-test/squatter.ready").Code != 0; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		r = c.Run(cliBin, "doctor")
		if r.Code != 1 || !strings.Contains(r.Stdout, "127.0.0.1:8080 (namespace cli2a) is already in use by vpnc-testpeer (PID") {
			t.Errorf("doctor with the published port taken:\n%s", r.Stdout)
		}
		c.Run("systemctl", "stop", "squatter")
		mustRun(t, c, "systemctl", "start", "vpn-publish-cli2a-8080.socket")
	})

	t.Run("pending-plan", func(t *testing.T) {
		// A live change (a second allowed egress port), compiled by a
		// daemon-reload: pending until systemctl reload.
		changed := strings.Replace(yamlA, "services:\n", "egress:\n  mode: allowList\n  allowedCidrs: [10.123.0.0/24]\nservices:\n", 1)
		if err := w.InstallNamespace(pa, changed); err != nil {
			t.Fatal(err)
		}
		reload(t, c)
		rep, r := statusJSON(t, c, "cli2a")
		n := namespaceOf(t, rep, "cli2a")
		if r.Code != 1 || n.Pending == nil || !n.Pending.Pending || n.Pending.Command != "systemctl reload vpn-ns@cli2a.service" || len(n.Pending.NotLive) != 0 {
			t.Errorf("pending plan after daemon-reload: %+v\n%s", n.Pending, r)
		}
		if human := c.Run(cliBin, "status", "cli2a").Stdout; !strings.Contains(human, "PROBLEM: pending plan: the namespace runs an older plan than the generator's; apply it: systemctl reload vpn-ns@cli2a.service") {
			t.Errorf("status text:\n%s", human)
		}
		pid := c.MainPID("app.service")
		mustRun(t, c, "systemctl", "reload", "vpn-ns@cli2a.service")
		n = waitStatus(t, c, "cli2a", 20*time.Second, func(n status.Namespace) bool {
			return n.Pending != nil && !n.Pending.Pending && !n.Pending.TunnelBehind
		})
		if n.Pending.Pending || n.Pending.TunnelBehind || c.MainPID("app.service") != pid {
			t.Errorf("after the reload: %+v (app PID %d, was %d)", n.Pending, c.MainPID("app.service"), pid)
		}
		// A change a reload cannot apply names the restart.
		if err := w.InstallNamespace(pa, strings.Replace(changed, "interface: wgcli2a", "interface: wgcli2x", 1)); err != nil {
			t.Fatal(err)
		}
		reload(t, c)
		rep, _ = statusJSON(t, c, "cli2a")
		n = namespaceOf(t, rep, "cli2a")
		if n.Pending == nil || !n.Pending.Pending || strings.Join(n.Pending.NotLive, ",") != "wireguard.interface" || !strings.HasPrefix(n.Pending.Command, "systemctl restart vpn-ns@cli2a.service") {
			t.Errorf("non-live pending plan: %+v", n.Pending)
		}
		if err := w.InstallNamespace(pa, changed); err != nil {
			t.Fatal(err)
		}
		reload(t, c)
	})

	t.Run("tripwire-escape", func(t *testing.T) {
		// A process of app.service's cgroup in the host's network namespace
		// (the test moves it there, as an escape would): its datagram is
		// dropped and counted by the host-side tripwire.
		cg := strings.TrimSpace(c.Run("systemctl", "show", "-P", "ControlGroup", "app.service").Stdout)
		r := c.Sh(fmt.Sprintf("echo $$ > /sys/fs/cgroup%s/cgroup.procs && exec /usr/local/bin/vpnc-probe -timeout 1s udp %s:7", cg, ct.HostUplink))
		if r.Code == 0 {
			t.Errorf("a datagram of a confined cgroup left from the host namespace: %s", r)
		}
		rep, res := statusJSON(t, c, "cli2a")
		n := namespaceOf(t, rep, "cli2a")
		if n.Tripwire == nil || n.Tripwire.Packets == 0 || n.State != status.StateUnsafe || res.Code != 1 {
			t.Errorf("tripwire after an escape: %+v, state %s", n.Tripwire, n.State)
		}
		if human := c.Run(cliBin, "status", "cli2a").Stdout; !strings.Contains(human, "PROBLEM: tripwire: ") || !strings.Contains(human, "were dropped in the host's network namespace") {
			t.Errorf("status text:\n%s", human)
		}
	})

	t.Run("orphan", func(t *testing.T) {
		c.Run("rm", "/etc/vpn-confinement.d/cli2b.yaml")
		reload(t, c)
		rep, r := statusJSON(t, c)
		var o *status.Orphan
		for i := range rep.Orphans {
			if rep.Orphans[i].Namespace == "cli2b" {
				o = &rep.Orphans[i]
			}
		}
		want := "namespace cli2b is running without a file (/etc/vpn-confinement.d/cli2b.yaml was removed): orph.service run unconfined after their next restart; orph.service still run inside it, without their drop-in; to keep them confined restore /etc/vpn-confinement.d/cli2b.yaml, to end the confinement on purpose: systemctl stop orph.service vpn-ns@cli2b.service"
		if o == nil || !o.Running || o.Problem != want || r.Code != 1 {
			t.Errorf("orphan: %+v\n%s", o, r.Stdout)
		}
		if human := c.Run(cliBin, "status").Stdout; !strings.Contains(human, "without a file:\n    PROBLEM: "+want) {
			t.Errorf("status text:\n%s", human)
		}
		// The command status gives.
		mustRun(t, c, "systemctl", "stop", "orph.service", "vpn-ns@cli2b.service")
		rep, _ = statusJSON(t, c)
		for _, o := range rep.Orphans {
			if o.Namespace == "cli2b" && (o.Running || o.Problem != "" || !strings.Contains(o.Note, "nothing of it runs; forget its record: rm /var/lib/vpn-confinement/cli2b.units")) {
				t.Errorf("stopped orphan: %+v", o)
			}
		}
	})

	t.Run("blocked", func(t *testing.T) {
		// The provider stops answering and the tunnel helper starts over:
		// connecting, then blocked after its first-handshake grace.
		mustRun(t, c, "ip", "-n", "vpnsrv", "link", "set", "srv0", "down")
		mustRun(t, c, "systemctl", "restart", "vpn-wg@cli2a.service")
		n := waitStatus(t, c, "cli2a", 60*time.Second, func(n status.Namespace) bool {
			return n.Supervisor != nil && n.Supervisor.Current && n.Supervisor.State == "blocked"
		})
		if n.Supervisor == nil || n.Supervisor.State != "blocked" || n.State != status.StateUnsafe && n.State != status.StateDegraded {
			t.Fatalf("no blocked state: %+v", n.Supervisor)
		}
		human := c.Run(cliBin, "status", "cli2a").Stdout
		if !strings.Contains(human, "PROBLEM: tunnel blocked since") || !strings.Contains(human, "confined services have no way out (onTunnelLoss block)") || !strings.Contains(human, "lifecycle  blocked since") {
			t.Errorf("status of a blocked tunnel:\n%s", human)
		}
		mustRun(t, c, "ip", "-n", "vpnsrv", "link", "set", "srv0", "up")
		n = waitStatus(t, c, "cli2a", 60*time.Second, func(n status.Namespace) bool { return n.Supervisor != nil && n.Supervisor.State == "up" })
		if n.Supervisor.State != "up" {
			t.Errorf("the tunnel did not come back: %+v", n.Supervisor)
		}
	})
}
