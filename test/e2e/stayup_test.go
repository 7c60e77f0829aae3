package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// The lifecycle of issue 13 under systemd 252: a confined ticker service
// (a TCP echo through the tunnel every 100 ms) in each onTunnelLoss mode,
// through the tunnel process killed, its link deleted, the provider
// silent for 60 s, the uplink down for 10 s, and the admin's restart of
// the tunnel and stop of the namespace. Recovery times are logged, never
// asserted (they belong to make bench).

const tickerUnit = "ticker.service"

// stayUp is one mode's container with its ticker running.
type stayUp struct {
	t     *testing.T
	c     *ct.Container
	w     *ct.World
	mode  string
	name  string // namespace
	iface string
}

func bootStayUp(t *testing.T, ctName, mode, yamlExtra string) *stayUp {
	name := "s" + mode
	c, w := boot(t, ctName, name)
	s := &stayUp{t: t, c: c, w: w, mode: mode, name: name, iface: "wg" + mode}
	unit(t, c, tickerUnit, ct.TickerUnit(ct.SrvTunnel+":7"))
	yaml := w.NamespaceYAML(w.Peers[name], s.iface, "onTunnelLoss: "+mode+"\n"+yamlExtra+"services:\n  - unit: "+tickerUnit+"\n")
	if err := w.InstallNamespace(w.Peers[name], yaml); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of the chain:\n%s", chainJournal(c, s.wg(), s.ns(), tickerUnit))
		}
	})
	mustRun(t, c, "systemctl", "start", tickerUnit)
	if _, ok := c.WaitTickOK(tickerUnit, time.Time{}, 30*time.Second); !ok {
		t.Fatalf("the ticker never got through:\n%s\n%s", c.Run("systemctl", "status", "--no-pager", tickerUnit, s.wg()).Stdout, c.Run("journalctl", "--no-pager", "-n", "40").Stdout)
	}
	return s
}

// chainJournal is the journal of units without the ticker's own lines.
func chainJournal(c *ct.Container, units ...string) string {
	args := []string{"journalctl", "--no-pager", "-q", "-o", "short-precise", "-n", "3000"}
	for _, u := range units {
		args = append(args, "-u", u)
	}
	var out []string
	for _, l := range strings.Split(c.Run(args...).Stdout, "\n") {
		if !strings.Contains(l, "TICK ") {
			out = append(out, l)
		}
	}
	if len(out) > 150 {
		out = out[len(out)-150:]
	}
	return strings.Join(out, "\n")
}

func (s *stayUp) wg() string { return "vpn-wg@" + s.name + ".service" }
func (s *stayUp) ns() string { return "vpn-ns@" + s.name + ".service" }

// fault is one event: do starts it and returns when it is over (the
// moment from which the tunnel can come back).
type fault struct {
	name string
	do   func() error
}

func (s *stayUp) faults() []fault {
	c := s.c
	run := func(argv ...string) func() error {
		return func() error {
			if r := c.Run(argv...); r.Code != 0 {
				return fmt.Errorf("%s: %s", strings.Join(argv, " "), r)
			}
			return nil
		}
	}
	return []fault{
		{"tunnel process killed", run("systemctl", "kill", "-s", "KILL", s.wg())},
		{"tunnel link deleted", run("ip", "-n", s.name, "link", "del", s.iface)},
		{"provider silent 60 s", func() error {
			if err := c.ProviderSilent(true); err != nil {
				return err
			}
			time.Sleep(58 * time.Second)
			st := s.tunnelState()
			s.t.Logf("  after 58 s of silence the tunnel helper reports: %s", st)
			if strings.HasPrefix(st, "up") {
				s.t.Errorf("the tunnel is still reported up after 58 s of a silent provider: %s", st)
			}
			time.Sleep(2 * time.Second)
			return c.ProviderSilent(false)
		}},
		{"uplink down 10 s", func() error {
			if err := c.Uplink(false); err != nil {
				return err
			}
			time.Sleep(8 * time.Second)
			st := s.tunnelState()
			s.t.Logf("  after 8 s without the uplink the tunnel helper reports: %s", st)
			if !strings.HasPrefix(st, "blocked") {
				s.t.Errorf("the tunnel is not reported blocked without an uplink: %s", st)
			}
			time.Sleep(2 * time.Second)
			return c.Uplink(true)
		}},
	}
}

// tunnelState is "STATE: reason" from the helper's state file.
func (s *stayUp) tunnelState() string {
	b, err := s.c.ReadFile("/run/vpn-confinement/_private/" + s.name + "/tunnel.json")
	if err != nil {
		return "no state file: " + err.Error()
	}
	return jsonField(string(b), "state") + ": " + jsonField(string(b), "reason")
}

func jsonField(doc, key string) string {
	i := strings.Index(doc, `"`+key+`": `)
	if i < 0 {
		return ""
	}
	v := doc[i+len(key)+4:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
	}
	if j := strings.IndexAny(v, ",\n}"); j >= 0 {
		return v[:j]
	}
	return v
}

// expect checks what the mode promises about the ticker over the samples
// of one event, and that it runs again afterwards.
func (s *stayUp) expect(event string, pid0 int, samples []ct.Sample, heldPerJournal bool) {
	t, c := s.t, s.c
	var frozen, notActive, otherPID bool
	for _, x := range samples {
		frozen = frozen || x.Freezer == "frozen"
		notActive = notActive || x.Active != "active"
		otherPID = otherPID || (x.PID != pid0 && x.PID != 0)
	}
	pid := c.MainPID(tickerUnit)
	active := c.Active(tickerUnit)
	freezer := c.Prop(tickerUnit, "FreezerState")
	t.Logf("  %s: %d samples, frozen seen %v (helper's journal: froze and thawed %v), not active seen %v; now %s, PID %d (was %d), FreezerState %s",
		event, len(samples), frozen, heldPerJournal, notActive, active, pid, pid0, freezer)
	if active != "active" || freezer != "running" {
		t.Errorf("%s: the ticker is %s/%s afterwards", event, active, freezer)
	}
	switch s.mode {
	case "block":
		if pid != pid0 || notActive || otherPID || frozen {
			t.Errorf("%s (block): the ticker must keep running with PID %d: now PID %d, not active seen %v, other PID seen %v, frozen %v", event, pid0, pid, notActive, otherPID, frozen)
		}
	case "stop":
		if pid == pid0 || !notActive {
			t.Errorf("%s (stop): the ticker must have been stopped and started again: PID %d (was %d), not active seen %v", event, pid, pid0, notActive)
		}
	case "freeze":
		if pid != pid0 || !(frozen || heldPerJournal) || notActive {
			t.Errorf("%s (freeze): the ticker must be frozen and thawed with PID %d: now PID %d, frozen seen %v, not active seen %v", event, pid0, pid, frozen, notActive)
		}
	}
}

// through runs one fault and waits for the ticker to get through again.
func (s *stayUp) through(f fault) {
	t, c := s.t, s.c
	sampler, err := c.StartSampler(strings.ReplaceAll(f.name, " ", "-"), tickerUnit)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	pid0 := c.MainPID(tickerUnit)
	start := time.Now()
	if err := f.do(); err != nil {
		t.Fatalf("%s: %v", f.name, err)
	}
	end := time.Now()
	back, ok := c.WaitTickOK(tickerUnit, end, 120*time.Second)
	if !ok {
		t.Errorf("%s: the ticker's traffic did not come back within 120 s: %s\n%s", f.name, s.tunnelState(), c.JournalSince(s.wg(), start))
		sampler.Stop()
		return
	}
	// Let a restarted unit settle before judging it.
	c.WaitActive(tickerUnit, "active", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	sampler.Stop()
	ticks := c.Ticks(tickerUnit)
	last, _ := ct.LastOKBefore(ticks, start)
	t.Logf("%s [%s]: fault %s, traffic back %s after the fault ended (gap between successful ticks %s); tunnel: %s",
		f.name, s.mode, end.Sub(start).Round(time.Millisecond), back.Sub(end).Round(time.Millisecond), back.Sub(last).Round(time.Millisecond), s.tunnelState())
	// A hold shorter than the sampling interval (a link re-created in
	// ~20 ms) can fall between two samples: the helper's own journal lines
	// ("froze"/"thawed") are the record then.
	held := false
	if s.mode == "freeze" {
		j := c.JournalSince(s.wg(), start)
		held = strings.Contains(j, "froze "+tickerUnit) && strings.Contains(j, "thawed "+tickerUnit)
	}
	s.expect(f.name, pid0, sampler.Samples(), held)
}

// adminStopStart: systemctl stop vpn-wg@, a few seconds, start again. An
// admin's stop is not a loss: block keeps the service running blocked,
// stop stops it with the tunnel (Requires=) and leaves it stopped, freeze
// freezes it until the tunnel is started again.
func (s *stayUp) adminStopStart() {
	t, c := s.t, s.c
	pid0 := c.MainPID(tickerUnit)
	mustRun(t, c, "systemctl", "stop", s.wg())
	stopped := time.Now()
	time.Sleep(3 * time.Second)
	active, freezer := c.Active(tickerUnit), c.Prop(tickerUnit, "FreezerState")
	_, gotThrough := ct.FirstOK(c.Ticks(tickerUnit), stopped.Add(500*time.Millisecond))
	t.Logf("systemctl stop vpn-wg@ [%s]: 3 s later the ticker is %s/%s (PID %d, was %d), traffic %v", s.mode, active, freezer, c.MainPID(tickerUnit), pid0, gotThrough)
	if gotThrough {
		t.Errorf("traffic got through with the tunnel stopped")
	}
	want := map[string]string{"block": "active/running", "stop": "inactive/", "freeze": "active/frozen"}[s.mode]
	if got := active + "/" + freezer; got != want && !(s.mode == "stop" && active == "inactive") {
		t.Errorf("with the tunnel stopped by the admin the ticker is %s, want %s", got, want)
	}
	mustRun(t, c, "systemctl", "start", s.wg())
	started := time.Now()
	if s.mode == "stop" {
		time.Sleep(3 * time.Second)
		if a := c.Active(tickerUnit); a != "inactive" {
			t.Errorf("stop: an admin-stopped tunnel's service came back by itself (%s): only a loss is undone", a)
		}
		mustRun(t, c, "systemctl", "start", tickerUnit)
	}
	back, ok := c.WaitTickOK(tickerUnit, started, 60*time.Second)
	if !ok {
		t.Errorf("no traffic after systemctl start vpn-wg@")
		return
	}
	t.Logf("systemctl start vpn-wg@ [%s]: traffic back %s later; ticker PID %d (was %d), FreezerState %s", s.mode, back.Sub(started).Round(time.Millisecond), c.MainPID(tickerUnit), pid0, c.Prop(tickerUnit, "FreezerState"))
	if s.mode != "stop" && c.MainPID(tickerUnit) != pid0 {
		t.Errorf("%s: the ticker's PID changed over an admin stop/start of the tunnel", s.mode)
	}
}

func TestStayUp(t *testing.T) {
	for _, mode := range []string{"block", "stop", "freeze"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := bootStayUp(t, "stay-"+mode, mode, "")
			c := s.c
			cp, err := c.StartCapture("stayup")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range s.faults() {
				s.through(f)
			}
			// The admin restarts the tunnel.
			s.through(fault{"systemctl restart vpn-wg@", func() error {
				if r := c.Run("systemctl", "restart", s.wg()); r.Code != 0 {
					return fmt.Errorf("restart: %s", r)
				}
				return nil
			}})
			s.adminStopStart()
			noLeaks(t, cp)
			if t.Failed() {
				t.Logf("journal of the tunnel:\n%s", c.Run("journalctl", "--no-pager", "-n", "80", "-u", s.wg()).Stdout)
			}
			// The admin stops the namespace: everything stops.
			mustRun(t, c, "systemctl", "stop", s.ns())
			for _, u := range []string{tickerUnit, s.wg(), s.ns()} {
				if !c.WaitActive(u, "inactive", 15*time.Second) {
					t.Errorf("after systemctl stop %s: %s is %s", s.ns(), u, c.Active(u))
				}
			}
			for _, p := range []string{"/run/netns/" + s.name, "/run/vpn-confinement/_metrics/" + s.name + ".prom"} {
				if r := c.Run("test", "-e", p); r.Code == 0 {
					t.Errorf("%s still exists after the namespace was stopped", p)
				}
			}
			if out := c.Run("systemctl", "--failed", "--no-legend").Stdout; strings.TrimSpace(out) != "" {
				t.Errorf("failed units:\n%s", out)
			}
		})
	}
}
