package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

func init() {
	extraMeasures = append(extraMeasures,
		measure{name: "P6", title: "recovery", root: true, run: benchRecovery},
		measure{name: "P7", title: "footprint", root: true, run: benchFootprint})
}

// unitTime reads a unit timestamp property (systemd's own clock, µs).
func unitTime(c *ct.Container, unit, prop string) (time.Time, error) {
	v := strings.TrimSpace(c.Run("systemctl", "show", "-P", prop, "--timestamp=us+utc", unit).Stdout)
	t, err := time.Parse("Mon 2006-01-02 15:04:05.000000 UTC", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %s: parse %q: %w", unit, prop, v, err)
	}
	return t, nil
}

// journalAfter returns the time of the first line of unit's journal after
// t that contains text.
func journalAfter(c *ct.Container, unit, text string, t time.Time) (time.Time, bool) {
	out := c.Run("journalctl", "--no-pager", "-q", "-o", "short-unix", "-u", unit, "--since", "@"+strconv.FormatInt(t.Unix()-1, 10)).Stdout
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.Contains(l, text) {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if at := time.UnixMicro(int64(sec * 1e6)); err == nil && !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

type tunnelFile struct {
	State       string `json:"state"`
	PID         int    `json:"pid"`
	Recreations int    `json:"recreations"`
	Peers       []struct {
		LastHandshake time.Time `json:"lastHandshake"`
	} `json:"peers"`
}

func readTunnel(c *ct.Container, name string) (tunnelFile, error) {
	var tf tunnelFile
	b, err := c.ReadFile("/run/vpn-confinement/_private/" + name + "/tunnel.json")
	if err != nil {
		return tf, err
	}
	return tf, json.Unmarshal(b, &tf)
}

func startWorld(repo, build, name string, clients ...string) (*ct.Container, *ct.World, error) {
	c, err := ct.Start(filepath.Join(repo, "test", "e2e"), name, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Install(repo, build, filepath.Join(build, "vpnc-probe"), filepath.Join(build, "vpnc-testpeer")); err != nil {
		c.Stop()
		return nil, nil, err
	}
	w, err := c.SetupWorld(clients...)
	if err != nil {
		c.Stop()
		return nil, nil, err
	}
	return c, w, nil
}

// firstSuccess is when the first echo that started at or after t came
// back.
func firstSuccess(ticks []ct.Tick, t time.Time) (time.Time, bool) {
	for _, k := range ticks {
		if k.OK && !k.At.Before(t) {
			return k.At.Add(k.Took), true
		}
	}
	return time.Time{}, false
}

// benchRecovery is P6, in the systemd container with onTunnelLoss block:
// a confined service sends a TCP echo through the tunnel every 10 ms.
// (1) SIGKILL of the tunnel helper → the service's first echo back through
// the new tunnel, from systemd's exit timestamp of the killed process,
// broken down into systemd's restart, the new helper's bring-up and the
// handshake; (2) the provider silent (nft drop in its namespace) for 8 s,
// and once for 40 s (past the 30 s stall rule: the peer is re-applied),
// → the first echo after it answers again. The reference is what the
// issue names: one process start (exec of the helper binary to exit) plus
// the handshake round trip (the new helper's "up" log line → the
// handshake time WireGuard reports).
func benchRecovery(repo, build string, rounds int) error {
	const name = "p6"
	c, w, err := startWorld(repo, build, "stay-bench-p6", name)
	if err != nil {
		return err
	}
	defer c.Stop()
	const ticker = "ticker.service"
	wg := "vpn-wg@" + name + ".service"
	c.WriteFile("/etc/systemd/system/"+ticker, []byte(ct.TickerUnitEvery(ct.SrvTunnel+":7", "10ms", "100ms")), 0o644)
	if err := w.InstallNamespace(w.Peers[name], w.NamespaceYAML(w.Peers[name], "wgp6", "services:\n  - unit: "+ticker+"\n")); err != nil {
		return err
	}
	c.Run("systemctl", "daemon-reload")
	if r := c.Run("systemctl", "start", ticker); r.Code != 0 {
		return fmt.Errorf("start ticker: %s", r)
	}
	if _, ok := c.WaitTickOK(ticker, time.Time{}, 30*time.Second); !ok {
		return fmt.Errorf("the ticker never got through")
	}
	leaks, err := c.StartCapture("p6")
	if err != nil {
		return err
	}
	var rec, restart, bringup, hs []time.Duration
	for r := 0; r < max(9, rounds/2); r++ {
		time.Sleep(1500 * time.Millisecond)
		before := c.MainPID(wg)
		killAt := time.Now().Add(-time.Second)
		c.Run("systemctl", "kill", "-s", "KILL", wg)
		var pid int
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if pid = c.MainPID(wg); pid != 0 && pid != before {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// When systemd reaped the killed helper (its own journal line; the
		// unit's ExecMainExitTimestamp already belongs to the new one).
		exit, ok := journalAfter(c, wg, "Main process exited", killAt)
		if !ok {
			return fmt.Errorf("round %d: no exit of the killed helper in the journal", r)
		}
		started, err := unitTime(c, wg, "ExecMainStartTimestamp")
		if err != nil {
			return err
		}
		var back time.Time
		for time.Now().Before(deadline) {
			if at, ok := firstSuccess(c.Ticks(ticker), exit); ok {
				back = at
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if back.IsZero() {
			return fmt.Errorf("round %d: no echo within 20 s of the kill", r)
		}
		up, okUp := journalAfter(c, wg, "up in namespace", started)
		time.Sleep(300 * time.Millisecond)
		tf, _ := readTunnel(c, name)
		rec = append(rec, back.Sub(exit))
		restart = append(restart, started.Sub(exit))
		if okUp {
			bringup = append(bringup, up.Sub(started))
			if len(tf.Peers) > 0 && tf.Peers[0].LastHandshake.After(up) {
				hs = append(hs, tf.Peers[0].LastHandshake.Sub(up))
			}
		}
	}
	// P7's single tunnel: the helper after the kill rounds, the 10 ms
	// ticker still running through it.
	one := procStatus(c, c.MainPID(wg))
	add(Row{Measure: "P7", Case: "RSS / fds of one userspace tunnel helper (with traffic)", Median: mib(one.rss), Spread: fmt.Sprintf("%d fds", one.fds),
		Goal: "≤ 15 MiB", Verdict: verdict(one.rss <= 15*1024), Note: fmt.Sprintf("%s private (RssAnon), %s of the binary's pages (RssFile+RssShmem)", mib(one.anon), mib(one.file+one.shmem))})
	// One process start: exec of the helper binary until it exits (usage).
	var execs []time.Duration
	for i := 0; i < 21; i++ {
		out := c.Sh("s=$(date +%s%N); /usr/local/lib/vpn-confinement/vpn-confinement-wireguard >/dev/null 2>&1; e=$(date +%s%N); echo $((e-s))").Stdout
		if ns, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64); err == nil {
			execs = append(execs, time.Duration(ns))
		}
	}
	m, lo, hi := stats(rec)
	rm, _, _ := stats(restart)
	em, _, _ := stats(execs)
	var bm, hm time.Duration
	if len(bringup) > 0 {
		bm, _, _ = stats(bringup)
	}
	if len(hs) > 0 {
		hm, _, _ = stats(hs)
	}
	ref := em + hm
	add(Row{Measure: "P6", Case: "reference: one process start + handshake RTT", Median: fmtDur(ref), Ratio: "1.00×",
		Note: fmt.Sprintf("exec of the helper binary %s (median of %d) + handshake %s (median of %d: the new helper's \"up\" line → WireGuard's handshake time)", fmtDur(em), len(execs), fmtDur(hm), len(hs))})
	add(Row{Measure: "P6", Case: fmt.Sprintf("tunnel killed → first echo through the new tunnel (%d runs)", len(rec)), Median: fmtDur(m), Spread: spread(lo, hi),
		Ratio: fmt.Sprintf("%.1f×", float64(m)/float64(max(ref, 1))), Goal: "≤ 1 s median; ≤ 2× reference",
		Verdict: fmt.Sprintf("%s; %s", verdict(m <= time.Second), map[bool]string{true: "≤ 2× met", false: "2× NOT met"}[float64(m) <= 2*float64(ref)]),
		Note:    fmt.Sprintf("round 1: never without an admin. Breakdown (medians): systemd notices the death and runs ExecStopPost (down), then restarts at once (RestartSec=0; the helper brakes a crash loop itself) until the new helper execs: %s; new helper exec → tunnel up: %s; → handshake: %s; → the 10 ms ticker's next echo back: the rest. The service keeps its PID (block)", fmtDur(rm), fmtDur(bm), fmtDur(hm))})

	// Provider outages.
	outage := func(d time.Duration) (time.Duration, error) {
		if err := c.ProviderSilent(true); err != nil {
			return 0, err
		}
		time.Sleep(d)
		if err := c.ProviderSilent(false); err != nil {
			return 0, err
		}
		back := time.Now()
		deadline := back.Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if at, ok := firstSuccess(c.Ticks(ticker), back); ok {
				return at.Sub(back), nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return 0, fmt.Errorf("no echo within 60 s of the provider's return")
	}
	var short []time.Duration
	for r := 0; r < 5; r++ {
		time.Sleep(time.Second)
		d, err := outage(8 * time.Second)
		if err != nil {
			return err
		}
		short = append(short, d)
	}
	m, lo, hi = stats(short)
	add(Row{Measure: "P6", Case: "provider silent 8 s, back → first echo (5 runs)", Median: fmtDur(m), Spread: spread(lo, hi), Goal: "by itself",
		Verdict: "met", Note: "the session survives; the echo waits for TCP's own SYN retransmission or the ticker's next attempt; WireGuard resends a handshake initiation at most every 5 s (REKEY_TIMEOUT)"})
	time.Sleep(time.Second)
	long, err := outage(40 * time.Second)
	if err != nil {
		return err
	}
	add(Row{Measure: "P6", Case: "provider silent 40 s (stalled, re-applied), back → first echo", Median: fmtDur(long), Goal: "by itself", Verdict: "met",
		Note: "after 30 s without an answer the watchdog reports stalled and re-creates the peer; its next handshake attempt after the return (every 5 s, REKEY_TIMEOUT) brings it back"})
	// The host kernel's ICMP "port unreachable" answers to the provider's
	// WireGuard packets that reach the killed helper's closed UDP port are
	// the WireGuard flow's own, not confined traffic: counted apart.
	var pk, icmp []string
	for _, l := range leaks.Stop() {
		if strings.Contains(l, ct.HostUplink+" > ") && strings.Contains(l, "ICMP "+ct.HostUplink+" udp port") && strings.Contains(l, "unreachable") {
			icmp = append(icmp, l)
		} else {
			pk = append(pk, l)
		}
	}
	note := fmt.Sprintf("%d ICMP port-unreachable of the host to the provider's WireGuard packets hitting the killed helper's closed port (not confined traffic)", len(icmp))
	if len(pk) > 0 {
		note += "; outside the flow: " + strings.Join(pk, " | ")
	}
	add(Row{Measure: "P6", Case: "packets outside the WireGuard flow meanwhile", Median: strconv.Itoa(len(pk)), Goal: "0 (positive control seen)",
		Verdict: verdict(len(pk) == 0 && leaks.ControlSeen), Note: note})
	return nil
}

// mem is a process's resident memory (KiB) and fds.
type mem struct {
	rss, anon, file, shmem, fds int
	// name and, for P7's spread, the helper's own history: device
	// re-creations and failed attempts to bring the tunnel up.
	name                string
	recreations, failed int
}

// procStatus reads VmRSS, RssAnon, RssFile and the fd count of a
// container process.
func procStatus(c *ct.Container, pid int) mem {
	out := c.Sh(fmt.Sprintf("awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {print $2}' /proc/%d/status; ls /proc/%d/fd | wc -l", pid, pid)).Stdout
	f := strings.Fields(out)
	var m mem
	if len(f) == 5 {
		m.rss, _ = strconv.Atoi(f[0])
		m.anon, _ = strconv.Atoi(f[1])
		m.file, _ = strconv.Atoi(f[2])
		m.shmem, _ = strconv.Atoi(f[3])
		m.fds, _ = strconv.Atoi(f[4])
	}
	return m
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// benchFootprint is P7: RSS and fds of userspace tunnel helpers, and 50
// namespaces (each a confined service) started with one systemctl start:
// wall time until all 50 services run, and until all 50 tunnels have a
// handshake.
func benchFootprint(repo, build string, rounds int) error {
	const n = 50
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("f%02d", i))
	}
	c, w, err := startWorld(repo, build, "stay-bench-p7", names...)
	if err != nil {
		return err
	}
	defer c.Stop()
	var svcs []string
	for i, name := range names {
		svc := "app" + name + ".service"
		svcs = append(svcs, svc)
		c.WriteFile("/etc/systemd/system/"+svc, []byte("[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"), 0o644)
		y := w.NamespaceYAML(w.Peers[name], fmt.Sprintf("wgf%02d", i+1), "services:\n  - unit: "+svc+"\n")
		if err := w.InstallNamespace(w.Peers[name], y); err != nil {
			return err
		}
	}
	c.Run("systemctl", "daemon-reload")
	start := time.Now()
	if r := c.RunTimeout(120*time.Second, append([]string{"systemctl", "start"}, svcs...)...); r.Code != 0 {
		return fmt.Errorf("start 50 services: %s", r)
	}
	var allRun time.Duration
	for time.Since(start) < 60*time.Second {
		out := c.Run(append([]string{"systemctl", "is-active"}, svcs...)...).Stdout
		if strings.Count(out, "active\n")-strings.Count(out, "inactive\n") == n {
			allRun = time.Since(start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if allRun == 0 {
		return fmt.Errorf("not all 50 services ran within 60 s")
	}
	var allUp time.Duration
	for time.Since(start) < 90*time.Second {
		up := 0
		for _, name := range names {
			if tf, err := readTunnel(c, name); err == nil && tf.State == "up" {
				up++
			}
		}
		if up == n {
			allUp = time.Since(start)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Where the time went: per namespace, systemd's own timestamps of the
	// namespace helper's and the tunnel helper's start, and when the
	// service became active, relative to the systemctl start.
	var nsDur, wgDur, lastNS, lastWG, lastSvc []time.Duration
	for i, name := range names {
		ns, wgu := "vpn-ns@"+name+".service", "vpn-wg@"+name+".service"
		a, err1 := unitTime(c, ns, "InactiveExitTimestamp")
		b, err2 := unitTime(c, ns, "ActiveEnterTimestamp")
		d, err3 := unitTime(c, wgu, "InactiveExitTimestamp")
		e, err4 := unitTime(c, wgu, "ActiveEnterTimestamp")
		f, err5 := unitTime(c, svcs[i], "ActiveEnterTimestamp")
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
			continue
		}
		nsDur, wgDur = append(nsDur, b.Sub(a)), append(wgDur, e.Sub(d))
		lastNS, lastWG, lastSvc = append(lastNS, b.Sub(start)), append(lastWG, e.Sub(start)), append(lastSvc, f.Sub(start))
	}
	profile := ""
	if len(nsDur) > 0 {
		nm, _, nh := stats(nsDur)
		wm, _, wh := stats(wgDur)
		_, _, ln := stats(lastNS)
		_, _, lw := stats(lastWG)
		_, _, ls := stats(lastSvc)
		load, _ := c.ReadFile("/proc/loadavg")
		profile = fmt.Sprintf("; systemd's timestamps: vpn-ns@ start takes %s median (max %s), vpn-wg@ start %s (max %s) when 50 run at once; the last vpn-ns@ was up at +%s, the last vpn-wg@ ready at +%s, the last service active at +%s; load average then: %s",
			fmtDur(nm), fmtDur(nh), fmtDur(wm), fmtDur(wh), fmtDur(ln), fmtDur(lw), fmtDur(ls), strings.Join(strings.Fields(string(load))[:3], " "))
	}
	// Let them settle with some traffic, then measure every helper.
	time.Sleep(3 * time.Second)
	var ms []mem
	for _, name := range names {
		if m := procStatus(c, c.MainPID("vpn-wg@"+name+".service")); m.rss > 0 {
			m.name = name
			if tf, err := readTunnel(c, name); err == nil {
				m.recreations = tf.Recreations
			}
			m.failed = strings.Count(c.Run("journalctl", "--no-pager", "-q", "-o", "cat", "-u", "vpn-wg@"+name+".service", "-g", "cannot bring the tunnel up").Stdout, "\n")
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return fmt.Errorf("no helper to measure")
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].rss < ms[j].rss })
	med := ms[len(ms)/2]
	maxFD := 0
	var dist []string
	for i, m := range ms {
		maxFD = max(maxFD, m.fds)
		if i%10 == 0 || i == len(ms)-1 {
			dist = append(dist, mib(m.rss))
		}
	}
	big := ms[len(ms)-1]
	smaps := strings.Join(strings.Fields(c.Sh(fmt.Sprintf("awk '/^[0-9a-f]+-[0-9a-f]+ /{m=$1\" \"$6} /^Rss:/{if ($2>512) print m\"=\"$2\"kB\"}' /proc/%d/smaps", c.MainPID("vpn-wg@"+big.name+".service"))).Stdout), ", ")
	var top []string
	for i := len(ms) - 1; i >= 0 && i >= len(ms)-5; i-- {
		top = append(top, fmt.Sprintf("%s %s (anon %s, %d re-creations, %d failed starts)", ms[i].name, mib(ms[i].rss), mib(ms[i].anon), ms[i].recreations, ms[i].failed))
	}
	add(Row{Measure: "P7", Case: fmt.Sprintf("RSS of a userspace tunnel helper, 50 running (%d measured)", len(ms)), Median: mib(med.rss),
		Spread: mib(ms[0].rss) + "–" + mib(ms[len(ms)-1].rss), Goal: "≤ 15 MiB", Verdict: verdict(ms[len(ms)-1].rss <= 15*1024),
		Note: fmt.Sprintf("VmRSS of the vpn-wg@ main processes (embedded wireguard-go + Go runtime), sorted, every 10th: %s; the median one is %s private (RssAnon) + %s of the binary's pages (RssFile %s + RssShmem %s: the container's /usr is a tmpfs overlay; on a host they are file-backed and shared by all helpers); fds: %d each at most (TUN, UDP sockets, netlink, control socket, D-Bus). Profile: wireguard-go's receive routines (one per address family) and TUN reader each hold a batch of conn.IdealBatchSize = 128 message buffers of 64 KiB (device/receive.go RoutineReceiveIncoming), ~24 MiB of live heap that is barely touched; with GOGC=100 the garbage could grow as large before a collection, and it is touched (vishvananda/netlink's Receive allocates and zeroes a 64 KiB array per call), so helpers ranged 16-33 MiB; the helper now runs with GOGC=10 (debug.SetGCPercent in run), which bounds it. The largest: %s. Its mappings with more than 512 kB resident (/proc/PID/smaps): %s — the Go heap arena holds the bulk",
			strings.Join(dist, ", "), mib(med.anon), mib(med.file+med.shmem), mib(med.file), mib(med.shmem), maxFD, strings.Join(top, "; "), smaps)})
	add(Row{Measure: "P7", Case: "50 namespaces: one systemctl start → all 50 services run", Median: fmtDur(allRun), Goal: "≤ 2 s", Verdict: verdict(allRun <= 2*time.Second),
		Note: fmt.Sprintf("each: vpn-ns@ (namespace, firewall, host link, DNS), vpn-wg@ (READY after the device is up; block), the service with its tripwire hook; all 50 tunnels had a handshake after %s%s", fmtDur(allUp), profile)})
	return nil
}
