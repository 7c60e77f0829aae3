package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// loopCounts is one target's result of vpnc-probe loop.
type loopCounts struct {
	OK, Fail        int
	FirstOK, LastOK time.Time
}

func parseLoop(out string) map[string]loopCounts {
	res := map[string]loopCounts{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 5 {
			continue
		}
		var lc loopCounts
		num := func(s, key string) int64 {
			v, _ := strconv.ParseInt(strings.TrimPrefix(s, key+"="), 10, 64)
			return v
		}
		lc.OK, lc.Fail = int(num(f[1], "ok")), int(num(f[2], "fail"))
		if ms := num(f[3], "firstok"); ms > 0 {
			lc.FirstOK = time.UnixMilli(ms)
		}
		if ms := num(f[4], "lastok"); ms > 0 {
			lc.LastOK = time.UnixMilli(ms)
		}
		res[f[0]] = lc
	}
	return res
}

// TestStayUpReload: systemctl reload vpn-ns@ applies a new plan to the
// running namespace (egress allowAllTunnel → allowList of the echo port,
// other DNS servers, the peer moved to the provider's second address),
// proven with packets, while the service keeps its PID and a probe loops
// the whole time over a destination both policies allow, one only the old
// allows, one only the new, and two neither allows (never once open). A
// non-live change is refused and changes nothing; status shows pending
// plans with their command; the metrics textfile is valid (node_exporter's
// textfile collector reads it without error) and says what status says.
func TestStayUpReload(t *testing.T) {
	t.Parallel()
	s := bootStayUp(t, "stay-rl", "block", "")
	c, w, name := s.c, s.w, s.name
	yamlPath := "/etc/vpn-confinement.d/" + name + ".yaml"
	old, _ := c.ReadFile(yamlPath)
	pid := c.MainPID(tickerUnit)
	resolvIno := strings.TrimSpace(c.Run("nsenter", "-t", strconv.Itoa(pid), "-m", "stat", "-c", "%i", "/etc/resolv.conf").Stdout)
	status := func() string { return c.Run("vpn-confinement", "status", name).Stdout }

	next := strings.Replace(string(old), "servers: ["+ct.SrvTunnel+"]", "servers: ["+ct.SrvOtherNS+"]", 1)
	next = strings.Replace(next, fmt.Sprintf("endpoint: %s:%d", ct.SrvUplink, ct.WGPort), fmt.Sprintf("endpoint: %s:%d", ct.SrvUplink2, ct.WGPort), 1)
	next += "egress:\n  mode: allowList\n  allowedTcpPorts: [7]\n"
	if next == string(old) {
		t.Fatal("the edit changed nothing")
	}
	mustRun(t, c, "sh", "-c", "cat > "+yamlPath+" <<'EOF'\n"+next+"EOF")
	reload(t, c)
	if st := status(); !strings.Contains(st, "plan       pending (") || !strings.Contains(st, "systemctl reload vpn-ns@"+name+".service") {
		t.Errorf("status does not show the pending plan with its command:\n%s", st)
	} else {
		t.Logf("status after the edit and daemon-reload:\n%s", st)
	}
	toNew, _ := c.StartCaptureFilter("rl-new-endpoint", ct.UplinkIf, fmt.Sprintf("udp and dst host %s and dst port %d", ct.SrvUplink2, ct.WGPort))
	leaks, _ := c.StartCapture("rl-leaks")

	// The probe runs throughout: 4 s before the reload, during it, and
	// about 6 s after.
	var wg sync.WaitGroup
	var loop ct.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop = c.RunConfined(ct.ProbeOpts{Unit: tickerUnit, Timeout: 60 * time.Second}, "/usr/local/bin/vpnc-probe", "-timeout", "200ms", "loop", "12s",
			"both=tcp:"+ct.SrvTunnel+":7",
			"oldonly=tcp:"+ct.SrvTunnel+":8",
			"newonly=dns:"+ct.SrvOtherNS+":53",
			"neither-dns-uplink=dns:"+ct.SrvUplink+":53",
			"neither-dns-5353=dns:"+ct.SrvOtherNS+":5353")
	}()
	time.Sleep(4 * time.Second)
	rStart := time.Now()
	r := c.Run("systemctl", "reload", s.ns())
	rEnd := time.Now()
	if r.Code != 0 {
		t.Fatalf("systemctl reload: %s\n%s", r, chainJournal(c, s.ns(), s.wg()))
	}
	wg.Wait()
	res := parseLoop(loop.Stdout)
	t.Logf("reload took %s; probe loop: %s", rEnd.Sub(rStart).Round(time.Millisecond), strings.Join(strings.Fields(loop.Stdout), " "))
	for _, n := range []string{"neither-dns-uplink", "neither-dns-5353"} {
		if got, ok := res[n]; !ok || got.OK != 0 || got.Fail == 0 {
			t.Errorf("%s (allowed by neither policy): %+v — must be tried and never open (%s)", n, got, loop)
		}
	}
	if b := res["both"]; b.OK == 0 || b.LastOK.Before(rEnd) {
		t.Errorf("the destination both policies allow stopped working: %+v", b)
	}
	if o := res["oldonly"]; o.OK == 0 || o.LastOK.After(rEnd) {
		t.Errorf("oldonly (tcp :8, allowAllTunnel only): %+v, want open before the reload and closed after it ended", o)
	}
	if n := res["newonly"]; n.OK == 0 || n.FirstOK.Before(rStart) {
		t.Errorf("newonly (DNS to the new server): %+v, want closed before the reload and open after", n)
	}

	// The new behaviour, with packets.
	expectOpen(t, c, tickerUnit, true, "tcp", ct.SrvTunnel+":7")
	expectOpen(t, c, tickerUnit, false, "tcp", ct.SrvTunnel+":8")
	expectOpen(t, c, tickerUnit, false, "udp", ct.SrvTunnel+":7")
	expectOpen(t, c, tickerUnit, true, "resolve", "after-reload.example")
	if !strings.Contains(w.DNSLog(), "after-reload.example") {
		t.Errorf("the service's resolver query did not reach the provider:\n%s", w.DNSLog())
	}
	if got := c.Run("nsenter", "-t", strconv.Itoa(pid), "-m", "cat", "/etc/resolv.conf").Stdout; !strings.Contains(got, "nameserver "+ct.SrvOtherNS) || strings.Contains(got, ct.SrvTunnel) {
		t.Errorf("the running service sees resolv.conf:\n%s", got)
	}
	if ino := strings.TrimSpace(c.Run("nsenter", "-t", strconv.Itoa(pid), "-m", "stat", "-c", "%i", "/etc/resolv.conf").Stdout); ino != resolvIno {
		t.Errorf("resolv.conf was replaced (inode %s → %s), not rewritten in place", resolvIno, ino)
	}
	newPkts := toNew.StopTimed()
	var beforeNew int
	for _, p := range newPkts {
		if p.At.Before(rStart) {
			beforeNew++
		}
	}
	t.Logf("WireGuard packets to the new endpoint %s: %d before the reload, %d after", ct.SrvUplink2, beforeNew, len(newPkts)-beforeNew)
	if beforeNew != 0 || len(newPkts) == 0 {
		t.Errorf("the peer did not move to %s at the reload: %d packets before, %d in all", ct.SrvUplink2, beforeNew, len(newPkts))
	}
	if p := c.MainPID(tickerUnit); p != pid {
		t.Errorf("the service's PID changed at the reload: %d → %d", pid, p)
	}
	ticks := c.Ticks(tickerUnit)
	fails := 0
	for _, k := range ticks {
		if !k.OK && !k.At.Before(rStart.Add(-time.Second)) && k.At.Before(rEnd.Add(time.Second)) {
			fails++
		}
	}
	t.Logf("ticker: %d failed ticks from 1 s before to 1 s after the reload", fails)
	if st := status(); strings.Contains(st, "plan       pending (") {
		t.Errorf("still pending after the reload:\n%s", st)
	}
	noLeaks(t, leaks)

	t.Run("non-live-change-refused", func(t *testing.T) {
		applied := func() string {
			return c.Sh("sha256sum /run/vpn-confinement/_private/" + name + "/applied.json").Stdout
		}
		state := func() string {
			return c.Run("ip", "netns", "exec", name, "nft", "-s", "list", "ruleset").Stdout + c.Run("ip", "-n", name, "-br", "link").Stdout +
				applied() + c.Run("wg", "show", "all", "endpoints").Stdout
		}
		before := state()
		cur, _ := c.ReadFile(yamlPath)
		changed := strings.Replace(string(cur), "interface: "+s.iface, "interface: wgother", 1)
		mustRun(t, c, "sh", "-c", "cat > "+yamlPath+" <<'EOF'\n"+changed+"EOF")
		reload(t, c)
		st := status()
		if !strings.Contains(st, "plan       pending (") || !strings.Contains(st, "(not live: wireguard.interface)") || !strings.Contains(st, "systemctl restart vpn-ns@"+name+".service") {
			t.Errorf("status does not show the non-live pending plan:\n%s", st)
		}
		since := time.Now().Add(-time.Second)
		r := c.Run("systemctl", "reload", s.ns())
		if r.Code == 0 {
			t.Fatalf("systemctl reload accepted a new interface name: %s", r)
		}
		j := c.JournalSince(s.ns(), since) + c.Run("systemctl", "status", "--no-pager", "-n", "20", s.ns()).Stdout
		if !strings.Contains(j, "wireguard.interface") || !strings.Contains(j, "systemctl restart vpn-ns@"+name+".service") {
			t.Errorf("the refusal does not name the key and the command:\n%s", j)
		} else {
			t.Logf("refused: %s", lineWith(j, "wireguard.interface"))
		}
		if after := state(); after != before {
			t.Errorf("a refused reload changed something:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if c.Active(s.ns()) != "active" || c.MainPID(tickerUnit) != pid {
			t.Errorf("after the refused reload: %s %s, ticker PID %d (was %d)", s.ns(), c.Active(s.ns()), c.MainPID(tickerUnit), pid)
		}
		expectOpen(t, c, tickerUnit, true, "tcp", ct.SrvTunnel+":7")
	})

	t.Run("metrics", func(t *testing.T) { checkMetrics(t, s) })
}

func lineWith(text, sub string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// checkMetrics reads the namespace's Prometheus textfile through the real
// node_exporter textfile collector (Debian's prometheus-node-exporter) and
// compares it with status --json.
func checkMetrics(t *testing.T, s *stayUp) {
	c, name := s.c, s.name
	path := "/run/vpn-confinement/_metrics/" + name + ".prom"
	text, err := c.ReadFile(path)
	if err != nil {
		t.Fatalf("no metrics textfile: %v", err)
	}
	fams, err := ct.ParseTextfile(string(text))
	if err != nil {
		t.Fatalf("%s is not valid textfile format: %v\n%s", path, err, text)
	}
	for _, f := range []string{"vpnc_tunnel_up", "vpnc_tunnel_state", "vpnc_handshake_age_seconds", "vpnc_rx_bytes_total", "vpnc_tx_bytes_total",
		"vpnc_killswitch_dropped_packets_total", "vpnc_confined_unit_active", "vpnc_endpoint_failovers_total", "vpnc_tunnel_recreations_total"} {
		if len(fams[f]) == 0 {
			t.Errorf("metric %s missing:\n%s", f, text)
		}
	}
	if v := fams["vpnc_confined_unit_active"][`{namespace="`+name+`",unit="`+tickerUnit+`"}`]; v != 1 {
		t.Errorf("vpnc_confined_unit_active of the ticker = %v", v)
	}
	// node_exporter: the textfile collector parses it (scrape error 0) and
	// serves our series.
	r := c.Run("systemd-run", "--quiet", "--unit=vpnc-node-exporter", "prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
		"--collector.textfile.directory=/run/vpn-confinement/_metrics", "--web.listen-address=127.0.0.1:9109")
	if r.Code != 0 {
		t.Fatalf("start node_exporter: %s", r)
	}
	var scraped string
	for i := 0; i < 50; i++ {
		if r := c.Run("curl", "-sf", "http://127.0.0.1:9109/metrics"); r.Code == 0 {
			scraped = r.Stdout
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(scraped, "node_textfile_scrape_error 0") || !strings.Contains(scraped, `vpnc_tunnel_up{namespace="`+name+`"} 1`) {
		t.Errorf("node_exporter did not serve the textfile cleanly:\n%s", grepLines(scraped, "textfile", "vpnc_"))
	} else {
		t.Logf("node_exporter: %s", strings.Join(strings.Fields(grepLines(scraped, "node_textfile_scrape_error", "vpnc_tunnel_up{")), " "))
	}
	// status --json carries the same facts (read both until the helper did
	// not rewrite the textfile in between).
	ns := `{namespace="` + name + `"}`
	for i := 0; i < 20; i++ {
		t1, _ := c.ReadFile(path)
		js := c.Run("vpn-confinement", "status", "--json", name).Stdout
		t2, _ := c.ReadFile(path)
		if string(t1) != string(t2) {
			continue
		}
		var rep struct {
			Namespaces []struct {
				Supervisor struct {
					State       string `json:"state"`
					RxBytes     int64  `json:"rxBytes"`
					TxBytes     int64  `json:"txBytes"`
					Failovers   int    `json:"failovers"`
					Recreations int    `json:"recreations"`
					MetricsFile string `json:"metricsFile"`
				} `json:"supervisor"`
			} `json:"namespaces"`
		}
		if err := json.Unmarshal([]byte(js), &rep); err != nil || len(rep.Namespaces) != 1 {
			t.Fatalf("status --json: %v\n%s", err, js)
		}
		h := rep.Namespaces[0].Supervisor
		fm, err := ct.ParseTextfile(string(t2))
		if err != nil {
			t.Fatal(err)
		}
		same := fm["vpnc_rx_bytes_total"][ns] == float64(h.RxBytes) && fm["vpnc_tx_bytes_total"][ns] == float64(h.TxBytes) &&
			fm["vpnc_tunnel_state"][`{namespace="`+name+`",state="`+h.State+`"}`] == 1 && fm["vpnc_endpoint_failovers_total"][ns] == float64(h.Failovers) &&
			fm["vpnc_tunnel_recreations_total"][ns] == float64(h.Recreations) && h.MetricsFile == path
		if !same {
			continue
		}
		t.Logf("status --json supervisor: state %s, rx %d, tx %d, failovers %d, recreations %d = the textfile", h.State, h.RxBytes, h.TxBytes, h.Failovers, h.Recreations)
		return
	}
	t.Errorf("status --json and the textfile never agreed in 20 reads:\n%s\n%s", c.Run("vpn-confinement", "status", "--json", name).Stdout, text)
}

func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
