package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// benchReaction is P3: in the systemd container, the time from the tunnel
// process dying (SIGKILL) to the confined service being inactive, taken
// from systemd's own monotonic timestamps, and the packets that left on the
// uplink meanwhile (must be 0; every capture carries a positive control).
func benchReaction(repo, build string, rounds int) error {
	c, err := ct.Start(filepath.Join(repo, "test", "e2e"), "bench", nil)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := c.Install(repo, build, filepath.Join(build, "vpnc-probe"), filepath.Join(build, "vpnc-testpeer")); err != nil {
		return err
	}
	w, err := c.SetupWorld("bench")
	if err != nil {
		return err
	}
	p := w.Peers["bench"]
	// When the service stopped is systemd's own journal line: once
	// inactive and unreferenced, systemd garbage-collects the unit and its
	// timestamps (and an ExecStopPost=+ recorder is refused since round 2:
	// a + command would run with full privileges in the namespace).
	c.WriteFile("/etc/systemd/system/app.service", []byte("[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"), 0o644)
	// Round 2: with onTunnelLoss stop the service is stopped when its
	// tunnel dies (by the dead helper's ExecStopPost, over D-Bus) and
	// started again by the next one; block (the default) keeps it running
	// with no way out (P6).
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgbench", "onTunnelLoss: stop\nservices:\n  - unit: app.service\n")); err != nil {
		return err
	}
	c.Run("systemctl", "daemon-reload")
	var react []time.Duration
	leaked := 0
	controlsMissed := 0
	for r := 0; r < max(5, rounds/3); r++ {
		// After the first round the next helper starts it again itself
		// (a start of ours could race with that job).
		if r == 0 {
			c.Run("systemctl", "start", "app.service")
		}
		if !c.WaitActive("app.service", "active", 15*time.Second) {
			return fmt.Errorf("app.service did not start (again): %s\n%s", c.Active("app.service"),
				c.Run("journalctl", "--no-pager", "-o", "short-precise", "-n", "40", "-u", "vpn-wg@bench.service", "-u", "app.service").Stdout+c.Run("vpn-confinement", "validate", "/etc/vpn-confinement.d/bench.yaml").String())
		}
		time.Sleep(500 * time.Millisecond)
		cp, err := c.StartCapture(fmt.Sprintf("p3-%d", r))
		if err != nil {
			return err
		}
		killAt := time.Now()
		c.Run("systemctl", "kill", "-s", "KILL", "vpn-wg@bench.service")
		stopped, ok := journalAfter(c, "app.service", "Stopped", killAt)
		for i := 0; i < 250 && !ok; i++ {
			time.Sleep(40 * time.Millisecond)
			stopped, ok = journalAfter(c, "app.service", "Stopped", killAt)
		}
		if !ok {
			return fmt.Errorf("app.service was not stopped after the tunnel died (%s)", c.Active("app.service"))
		}
		// The helper is restarted at once (RestartSec=0): its exit is
		// systemd's journal line, the unit's ExecMainExitTimestamp already
		// belongs to the next process.
		t, ok := journalAfter(c, "vpn-wg@bench.service", "Main process exited", killAt)
		if !ok {
			return fmt.Errorf("round %d: no exit of the killed helper in the journal", r)
		}
		react = append(react, stopped.Sub(t))
		leaked += len(cp.Stop())
		if !cp.ControlSeen {
			controlsMissed++
		}
	}
	m, lo, hi := stats(react)
	add(Row{Measure: "P3", Case: "onTunnelLoss stop: tunnel killed → service stopped", Median: fmtDur(m), Spread: spread(lo, hi), Goal: "0 packets leave",
		Verdict: fmt.Sprintf("%s (%d packets; %d captures without control)", verdict(leaked == 0 && controlsMissed == 0), leaked, controlsMissed),
		Note:    "systemd's \"Main process exited\" line of vpn-wg@ → systemd's \"Stopped app.service\" journal line; the dead helper's ExecStopPost (wireguard down) stops it over D-Bus; the next helper starts it again (P6 measures the return)"})
	return nil
}
