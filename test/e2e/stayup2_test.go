package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// deadEndpoint is an address on the provider's veth subnet that nothing
// answers: the host has a permanent neighbour entry for it (the provider
// end's MAC), so the tunnel's packets to it really go out on the uplink
// (the capture sees them), and the provider's kernel drops them (not its
// address).
const deadEndpoint = "10.213.0.9"

func (s *stayUp) deadNeighbour() {
	s.t.Helper()
	mac := strings.TrimSpace(s.c.Run("ip", "netns", "exec", "vpnsrv", "cat", "/sys/class/net/srv0/address").Stdout)
	mustRun(s.t, s.c, "ip", "neigh", "replace", deadEndpoint, "lladdr", mac, "dev", ct.UplinkIf, "nud", "permanent")
}

// journalTime finds the first line of unit's journal containing text and
// returns its time (journalctl -o short-unix).
func journalTime(c *ct.Container, unit, text string) (time.Time, bool) {
	for _, l := range strings.Split(c.Run("journalctl", "--no-pager", "-q", "-o", "short-unix", "-u", unit).Stdout, "\n") {
		if !strings.Contains(l, text) {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			return time.UnixMicro(int64(sec * 1e6)), true
		}
	}
	return time.Time{}, false
}

// TestStayUpFailover: a peer with endpoints [dead, alive] and endpoint
// pinning: the first never answers, the helper fails over to the second
// after the first-handshake grace, the pin set holds only the endpoint in
// use, and after the switch not one packet goes to the dead endpoint.
func TestStayUpFailover(t *testing.T) {
	t.Parallel()
	name := "sfo"
	c, w := boot(t, "stay-fo", name)
	s := &stayUp{t: t, c: c, w: w, mode: "block", name: name, iface: "wgfo"}
	s.deadNeighbour()
	unit(t, c, tickerUnit, ct.TickerUnit(ct.SrvTunnel+":7"))
	yaml := w.NamespaceYAML(w.Peers[name], s.iface, "services:\n  - unit: "+tickerUnit+"\n")
	yaml = strings.Replace(yaml, fmt.Sprintf("      endpoint: %s:%d\n", ct.SrvUplink, ct.WGPort),
		fmt.Sprintf("      endpoints: [%s:%d, %s:%d]\n", deadEndpoint, ct.WGPort, ct.SrvUplink2, ct.WGPort), 1)
	yaml = strings.Replace(yaml, "  peers:\n", "  endpointPinning:\n    enable: true\n  peers:\n", 1)
	if err := w.InstallNamespace(w.Peers[name], yaml); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of the chain:\n%s", chainJournal(c, s.wg(), s.ns(), "vpn-pin@"+name+".service", tickerUnit))
		}
	})
	leaks, err := c.StartCapture("fo-leaks")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := c.StartCaptureFilter("fo-dead", ct.UplinkIf, "dst host "+deadEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustRun(t, c, "systemctl", "start", tickerUnit)
	back, ok := c.WaitTickOK(tickerUnit, start, 90*time.Second)
	if !ok {
		t.Fatalf("no traffic through the second endpoint within 90 s: %s", s.tunnelState())
	}
	switched, ok := journalTime(c, s.wg(), "failed over to endpoint 2 of 2")
	if !ok {
		t.Fatalf("no failover in the journal:\n%s", chainJournal(c, s.wg()))
	}
	t.Logf("failover %s after the start, first ticker success %s after the failover", switched.Sub(start).Round(time.Millisecond), back.Sub(switched).Round(time.Millisecond))
	// Keep traffic flowing for a while: nothing may go to the dead one.
	time.Sleep(20 * time.Second)
	pkts := dead.StopTimed()
	var before, after []string
	for _, p := range pkts {
		if p.At.Before(switched) {
			before = append(before, p.Line)
		} else {
			after = append(after, p.Line)
		}
	}
	t.Logf("packets to the dead endpoint %s: %d before the failover (its handshake attempts), %d after", deadEndpoint, len(before), len(after))
	if len(before) == 0 {
		t.Errorf("the capture saw no handshake attempt to the dead endpoint: its zero count after the failover proves nothing")
	}
	if len(after) > 0 {
		t.Errorf("%d packets went to the dead endpoint after the failover:\n%s", len(after), strings.Join(after, "\n"))
	}
	pin := c.Run("nft", "list", "table", "inet", "vpnc_pin_"+name).Stdout
	if !strings.Contains(pin, ct.SrvUplink2) || strings.Contains(pin, deadEndpoint) {
		t.Errorf("the pin set must hold exactly the endpoint in use (%s):\n%s", ct.SrvUplink2, pin)
	}
	if st := c.Run("cat", "/run/vpn-confinement/_private/"+name+"/tunnel.json").Stdout; !strings.Contains(st, `"failovers": 1`) || !strings.Contains(st, `"endpointIndex": 1`) {
		t.Errorf("the state file does not show the failover:\n%s", st)
	}
	t.Logf("vpn-confinement status %s:\n%s", name, c.Run("vpn-confinement", "status", name).Stdout)
	noLeaks(t, leaks)
}

// TestStayUpBoot: the chain starts with the uplink down and a hostname
// endpoint that does not resolve for 20 s (it appears in /etc/hosts then):
// the service comes up blocked (block), and its traffic flows by itself
// once both are there.
func TestStayUpBoot(t *testing.T) {
	t.Parallel()
	name := "sboot"
	c, w := boot(t, "stay-boot", name)
	s := &stayUp{t: t, c: c, w: w, mode: "block", name: name, iface: "wgboot"}
	unit(t, c, tickerUnit, ct.TickerUnit(ct.SrvTunnel+":7"))
	const host = "vpn.provider.test"
	yaml := w.NamespaceYAML(w.Peers[name], s.iface, "services:\n  - unit: "+tickerUnit+"\n")
	yaml = strings.Replace(yaml, fmt.Sprintf("      endpoint: %s:%d\n", ct.SrvUplink, ct.WGPort), fmt.Sprintf("      endpoint: %s:%d\n", host, ct.WGPort), 1)
	yaml = strings.Replace(yaml, "  peers:\n", "  allowHostnameEndpoints: true\n  peers:\n", 1)
	if err := w.InstallNamespace(w.Peers[name], yaml); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of the chain:\n%s", chainJournal(c, s.wg(), s.ns(), tickerUnit))
		}
	})
	if r := c.Run("getent", "hosts", host); r.Code == 0 {
		t.Fatalf("%s resolves before the test adds it: %s", host, r.Stdout)
	}
	leaks, err := c.StartCapture("boot-leaks")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Uplink(false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Reboot-like: nothing of the chain runs; starting the service pulls
	// in the namespace and the tunnel, with no uplink and no name.
	mustRun(t, c, "systemctl", "start", tickerUnit)
	up := time.Now()
	if !c.WaitActive(tickerUnit, "active", 30*time.Second) {
		t.Fatalf("the service did not come up blocked: %s", c.Run("systemctl", "status", "--no-pager", tickerUnit, s.wg()).Stdout)
	}
	time.Sleep(3 * time.Second)
	st := s.tunnelState()
	t.Logf("service active %s after the start, with the uplink down and %s unresolvable; tunnel: %s", up.Sub(start).Round(time.Millisecond), host, st)
	if !strings.HasPrefix(st, "blocked") {
		t.Errorf("the tunnel is not reported blocked: %s", st)
	}
	if _, ok := ct.FirstOK(c.Ticks(tickerUnit), start); ok {
		t.Errorf("the service got through without an uplink")
	}
	time.Sleep(time.Until(start.Add(10 * time.Second)))
	if err := c.Uplink(true); err != nil {
		t.Fatal(err)
	}
	uplinkAt := time.Now()
	time.Sleep(time.Until(start.Add(20 * time.Second)))
	t.Logf("uplink up at +%s; tunnel: %s", uplinkAt.Sub(start).Round(time.Millisecond), s.tunnelState())
	mustRun(t, c, "sh", "-c", fmt.Sprintf("echo '%s %s' >> /etc/hosts", ct.SrvUplink, host))
	named := time.Now()
	back, ok := c.WaitTickOK(tickerUnit, start, 60*time.Second)
	if !ok {
		t.Fatalf("no traffic within 60 s of the name appearing: %s", s.tunnelState())
	}
	t.Logf("name resolvable at +%s; first traffic %s later; the service's PID %d was never restarted: %v",
		named.Sub(start).Round(time.Millisecond), back.Sub(named).Round(time.Millisecond), c.MainPID(tickerUnit), c.Prop(tickerUnit, "NRestarts") == "0")
	if c.Prop(tickerUnit, "NRestarts") != "0" {
		t.Errorf("the service was restarted")
	}
	noLeaks(t, leaks)
}

// TestStayUpCycles: 200 kills of the tunnel process, each waited out; then
// nothing has leaked (links, processes, fds of PID 1 and of the helper,
// nft objects) and no unit failed; the service kept its PID (block).
func TestStayUpCycles(t *testing.T) {
	t.Parallel()
	s := bootStayUp(t, "stay-cyc", "block", "")
	c := s.c
	snapshot := func() map[string]string {
		wgPID := c.MainPID(s.wg())
		return map[string]string{
			"links":        c.Run("ip", "-n", s.name, "-br", "link").Stdout,
			"host links":   c.Run("ip", "-br", "link").Stdout,
			"processes":    c.Sh("pgrep -c -f vpn-confinement-wireguard; pgrep -c -f 'vpnc-probe .*tick'; pgrep -c wireguard-go").Stdout,
			"pid1 fds":     c.Sh("ls /proc/1/fd | wc -l").Stdout,
			"helper fds":   c.Sh(fmt.Sprintf("ls /proc/%d/fd | wc -l", wgPID)).Stdout,
			"ns ruleset":   c.Run("ip", "netns", "exec", s.name, "nft", "-s", "list", "ruleset").Stdout,
			"host ruleset": c.Run("nft", "-s", "list", "ruleset").Stdout,
			"failed units": c.Run("systemctl", "--failed", "--no-legend").Stdout,
		}
	}
	// One cycle first, so both snapshots are of a restarted helper.
	cycle := func() time.Duration {
		pid := c.MainPID(s.wg())
		start := time.Now()
		mustRun(t, c, "systemctl", "kill", "-s", "KILL", s.wg())
		for time.Since(start) < 30*time.Second {
			if p := c.MainPID(s.wg()); p != 0 && p != pid && c.Active(s.wg()) == "active" {
				return time.Since(start)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("the tunnel did not come back within 30 s: %s", c.Run("systemctl", "status", "--no-pager", s.wg()).Stdout)
		return 0
	}
	cycle()
	c.WaitTickOK(tickerUnit, time.Now(), 30*time.Second)
	time.Sleep(2 * time.Second)
	pid0 := c.MainPID(tickerUnit)
	before := snapshot()
	var total time.Duration
	for i := 0; i < 200; i++ {
		total += cycle()
	}
	back, ok := c.WaitTickOK(tickerUnit, time.Now(), 30*time.Second)
	if !ok {
		t.Fatalf("no traffic after 200 cycles: %s", s.tunnelState())
	}
	time.Sleep(2 * time.Second)
	after := snapshot()
	t.Logf("200 kill/return cycles, %s per cycle on average (systemctl kill → a new active helper, polled); traffic at %s", (total / 200).Round(time.Millisecond), back.Format("15:04:05.000"))
	for _, k := range []string{"links", "host links", "processes", "pid1 fds", "helper fds", "ns ruleset", "host ruleset", "failed units"} {
		if before[k] != after[k] {
			t.Errorf("%s changed over 200 cycles:\nbefore:\n%s\nafter:\n%s", k, before[k], after[k])
		} else {
			t.Logf("%s unchanged: %s", k, strings.Join(strings.Fields(before[k]), " ")[:min(120, len(strings.Join(strings.Fields(before[k]), " ")))])
		}
	}
	if p := c.MainPID(tickerUnit); p != pid0 {
		t.Errorf("the service's PID changed from %d to %d (block keeps it)", pid0, p)
	}
	if n := c.Prop(s.wg(), "NRestarts"); n != "" {
		t.Logf("vpn-wg@ NRestarts=%s", n)
	}
}

// TestStayUpCrashLoopBrake: the tunnel unit restarts its helper at once
// (RestartSec=0), so a helper that dies before its device works must brake
// itself. The namespace's pin is removed behind vpn-ns@'s back: every new
// helper fails to open it and exits. Without the brake systemd would start
// one every few milliseconds; with it the delays double from 250 ms, and
// the confined service, still in its (now unnamed) namespace, stays
// without a way out.
func TestStayUpCrashLoopBrake(t *testing.T) {
	t.Parallel()
	s := bootStayUp(t, "stay-brake", "block", "")
	c := s.c
	before, _ := strconv.Atoi(strings.TrimSpace(c.Run("systemctl", "show", "-P", "NRestarts", s.wg()).Stdout))
	mustRun(t, c, "ip", "netns", "delete", s.name)
	mustRun(t, c, "systemctl", "kill", "-s", "KILL", s.wg())
	time.Sleep(6 * time.Second)
	after, _ := strconv.Atoi(strings.TrimSpace(c.Run("systemctl", "show", "-P", "NRestarts", s.wg()).Stdout))
	j := c.Run("journalctl", "--no-pager", "-q", "-o", "cat", "-u", s.wg()).Stdout
	t.Logf("%d restarts in 6 s after the pin was removed (%d before)", after-before, before)
	// 0 + 250 + 500 + 1000 + 2000 ms (±10 %) plus process starts: about 6
	// restarts fit in 6 s; an unbraked loop would have hundreds.
	if n := after - before; n < 2 || n > 10 {
		t.Errorf("%d restarts in 6 s, want 2..10 (the brake doubles from 250 ms):\n%s", n, j)
	}
	if !strings.Contains(j, "exited before its tunnel was up (3 in a row)") {
		t.Errorf("no escalating brake in the journal:\n%s", j)
	}
	// The service kept running and has no way out: its namespace lost only
	// its name, the kill switch is still in it.
	if c.Active(tickerUnit) != "active" {
		t.Errorf("the ticker stopped: %s", c.Active(tickerUnit))
	}
	if _, ok := c.WaitTickOK(tickerUnit, time.Now(), 2*time.Second); ok {
		t.Error("the ticker got through without a tunnel")
	}
}
