package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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
	// The service records when it stopped itself: once inactive and
	// unreferenced, systemd garbage-collects the unit and its timestamps.
	c.WriteFile("/etc/systemd/system/app.service", []byte("[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"+
		"ExecStopPost=+/bin/sh -c 'date +%%s%%N > /run/vpnc-test/app-stopped'\n"), 0o644)
	// Round 2: with onTunnelLoss stop the service is stopped when its
	// tunnel dies (by the dead helper's ExecStopPost, over D-Bus) and
	// started again by the next one; block (the default) keeps it running
	// with no way out (P6).
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgbench", "onTunnelLoss: stop\nservices:\n  - unit: app.service\n")); err != nil {
		return err
	}
	c.Run("systemctl", "daemon-reload")
	stoppedNS := func() int64 {
		b, _ := c.ReadFile("/run/vpnc-test/app-stopped")
		v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
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
			return fmt.Errorf("app.service did not start (again): %s", c.Active("app.service"))
		}
		time.Sleep(500 * time.Millisecond)
		cp, err := c.StartCapture(fmt.Sprintf("p3-%d", r))
		if err != nil {
			return err
		}
		prev := stoppedNS()
		c.Run("systemctl", "kill", "-s", "KILL", "vpn-wg@bench.service")
		for i := 0; i < 500 && stoppedNS() == prev; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if stoppedNS() == prev {
			return fmt.Errorf("app.service was not stopped after the tunnel died (%s)", c.Active("app.service"))
		}
		exit := strings.TrimSpace(c.Run("systemctl", "show", "-P", "ExecMainExitTimestamp", "--timestamp=us+utc", "vpn-wg@bench.service").Stdout)
		t, err := time.Parse("Mon 2006-01-02 15:04:05.000000 UTC", exit)
		if err != nil {
			return fmt.Errorf("parse exit timestamp %q: %w", exit, err)
		}
		react = append(react, time.Duration(stoppedNS()-t.UnixNano()))
		leaked += len(cp.Stop())
		if !cp.ControlSeen {
			controlsMissed++
		}
	}
	m, lo, hi := stats(react)
	add(Row{Measure: "P3", Case: "onTunnelLoss stop: tunnel killed → service stopped", Median: fmtDur(m), Spread: spread(lo, hi), Goal: "0 packets leave",
		Verdict: fmt.Sprintf("%s (%d packets; %d captures without control)", verdict(leaked == 0 && controlsMissed == 0), leaked, controlsMissed),
		Note:    "vpn-wg@ ExecMainExitTimestamp → the service's ExecStopPost; the dead helper's ExecStopPost (wireguard down) stops it over D-Bus; the next helper starts it again (P6 measures the return)"})
	return nil
}
