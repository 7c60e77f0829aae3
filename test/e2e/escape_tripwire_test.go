package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

const twHelper = "/usr/local/lib/vpn-confinement/vpn-confinement-tripwire"

type twStatus struct {
	Supported  bool
	Table      bool
	Escapes    uint64
	Namespaces map[string]struct {
		Packets uint64
		Cgroups []uint64
	}
}

func tripwireStatus(t *testing.T, c *ct.Container) twStatus {
	t.Helper()
	var st twStatus
	r := c.Run(twHelper, "status")
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("tripwire status: %v\n%s", err, r)
	}
	return st
}

// TestTripwireEscape (issue 9, item 7): with a confined unit running, its
// cgroup is in the host-side tripwire; a process of that cgroup that
// sends from the host's network namespace is dropped and counted there,
// the tunnel keeps working, and the tunnel helper raises an alert.
//
// The escapee is the test's own stand-in for a confined process that
// found a way back (every real way is closed, see TestEscapeService-
// Manager): a process started on the host (host namespace, full
// privileges) that writes its own PID into the unit's cgroup.procs
// (cgroup v2, as root in the container) and only then opens its UDP
// socket, since a socket belongs to the cgroup of the task that creates
// it. It starts in a transient unit of the container's systemd, so that
// source and target cgroup share an ancestor inside the container's
// cgroup namespace (the kernel refuses moves across its root).
func TestTripwireEscape(t *testing.T) {
	c, w := bootEscape(t, "esctw", "esctw")
	p := w.Peers["esctw"]
	unit(t, c, "esc-tw.service", sleeper)
	unit(t, c, "esc-host.service", "[Service]\nExecStart=/bin/sleep infinity\n") // not confined
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgtw", "services:\n  - unit: esc-tw.service\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "esc-tw.service", "esc-host.service")
	if !c.WaitActive("esc-tw.service", "active", 15*time.Second) {
		t.Fatalf("esc-tw not active: %s", c.Run("systemctl", "status", "--no-pager", "esc-tw.service").Stdout)
	}
	expectOpen(t, c, "esc-tw.service", true, "tcp", ct.SrvTunnel+":7")

	cg := "/sys/fs/cgroup" + strings.TrimSpace(c.Run("systemctl", "show", "-P", "ControlGroup", "esc-tw.service").Stdout)
	id, err := strconv.ParseUint(c.NetnsInode(cg), 10, 64)
	if err != nil {
		t.Fatalf("cgroup ID of %s: %v", cg, err)
	}
	st := tripwireStatus(t, c)
	if !st.Supported || !st.Table {
		t.Fatalf("no tripwire on this kernel (the e2e kernel has it): %+v", st)
	}
	if ns := st.Namespaces["esctw"]; !contains(ns.Cgroups, id) || ns.Packets != 0 {
		t.Fatalf("esc-tw's cgroup %d is not registered, or the counter is not 0: %+v", id, st)
	}
	nft := c.Run("nft", "list", "table", "inet", "vpnc_tripwire").Stdout
	// nft prints a cgroupsv2 key as the cgroup's path.
	if want := fmt.Sprintf(`"%s" : jump ns_esctw`, strings.TrimPrefix(cg, "/sys/fs/cgroup/")); !strings.Contains(nft, want) {
		t.Errorf("the host's nft listing lacks %s:\n%s", want, nft)
	}

	// Positive control: the same escapee, in a cgroup that is not
	// confined, is seen on the uplink.
	cp0, err := c.StartCapture("esctw-control") // its control query resolves the uplink's ARP first
	if err != nil {
		t.Fatal(err)
	}
	hostCg := "/sys/fs/cgroup" + strings.TrimSpace(c.Run("systemctl", "show", "-P", "ControlGroup", "esc-host.service").Stdout)
	r := c.Run("systemd-run", "--wait", "--pipe", "--quiet", escTool, "cgroup-send", hostCg, ct.SrvUplink+":9", "20")
	if n := strings.Count(strings.Join(cp0.Stop(), "\n"), ct.SrvUplink+".9:"); n != 20 || !strings.Contains(r.Stdout, "sent 20") {
		t.Fatalf("positive control: %d of 20 datagrams from an unconfined cgroup captured (%s)", n, r)
	}

	cp, err := c.StartCapture("esctw")
	if err != nil {
		t.Fatal(err)
	}
	r = c.Run("systemd-run", "--wait", "--pipe", "--quiet", escTool, "cgroup-send", cg, ct.SrvUplink+":9", "20")
	t.Logf("escapee: %s", strings.TrimSpace(r.Stdout+r.Stderr))
	if !strings.Contains(r.Stdout, "0::"+strings.TrimPrefix(cg, "/sys/fs/cgroup")+"\n") || !strings.Contains(r.Stdout, "sent 0 ") || !strings.Contains(r.Stdout, "EPERM") {
		t.Errorf("the escapee did not run in esc-tw's cgroup with every datagram refused: %s", r)
	}
	noLeaks(t, cp)
	st = tripwireStatus(t, c)
	if got := st.Namespaces["esctw"].Packets; got < 20 {
		t.Errorf("tripwire counter of esctw: %d, want >= 20 (%+v)", got, st)
	}
	t.Logf("tripwire: %d packets dropped for esctw, %d in total", st.Namespaces["esctw"].Packets, st.Escapes)
	// The tunnel kept working: its UDP socket is vpn-wg@'s, not the
	// unit's.
	expectOpen(t, c, "esc-tw.service", true, "tcp", ct.SrvTunnel+":7")

	// The tunnel helper reads the counter (it runs in the host's
	// namespace), raises an alert and writes it to its state and
	// metrics files.
	var alert string
	for i := 0; i < 100 && alert == ""; i++ {
		alert = c.Run("journalctl", "-b", "-o", "cat", "-p", "alert", "-u", "vpn-wg@esctw.service", "-g", "tripwire").Stdout
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(alert, "packets of confined units of esctw dropped in the host's network namespace") {
		t.Errorf("no alert from vpn-wg@esctw in the journal:\n%s", c.Run("journalctl", "-b", "-o", "cat", "-u", "vpn-wg@esctw.service").Stdout)
	}
	t.Logf("alert: %s", strings.TrimSpace(alert))
	metrics, _ := c.ReadFile("/run/vpn-confinement/_metrics/esctw.prom")
	if m := regexp.MustCompile(`vpnc_tripwire_dropped_packets_total\{namespace="esctw"\} (\d+)`).FindStringSubmatch(string(metrics)); m == nil || m[1] == "0" {
		t.Errorf("metrics lack the tripwire counter:\n%s", metrics)
	}

	t.Run("status-shows-tripwire", func(t *testing.T) {
		r := c.Run(vpnc, "status", "--json", "esctw")
		var rep struct {
			Namespaces []struct {
				Name     string
				Tripwire *struct{ Packets uint64 }
			}
		}
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		for _, n := range rep.Namespaces {
			if n.Name == "esctw" && (n.Tripwire == nil || n.Tripwire.Packets < 20) {
				t.Errorf("vpn-confinement status does not show the tripwire counter (the CLI branch adds namespaces[].tripwire):\n%s", r.Stdout)
			}
		}
		if r.Code == 0 {
			t.Errorf("status exits 0 with an escape counted")
		}
	})

	// Stopping the unit unregisters its cgroup; the counter stays as
	// evidence.
	mustRun(t, c, "systemctl", "stop", "esc-tw.service")
	st = tripwireStatus(t, c)
	if ns := st.Namespaces["esctw"]; contains(ns.Cgroups, id) || ns.Packets < 20 {
		t.Errorf("after the stop: cgroup %d still registered or the counter is gone: %+v", id, st)
	}
}

func contains[T comparable](l []T, x T) bool {
	for _, y := range l {
		if y == x {
			return true
		}
	}
	return false
}
