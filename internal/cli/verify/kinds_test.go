package verify

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func TestFindUnit(t *testing.T) {
	n := &plan.Namespace{Name: "media", Services: []plan.Unit{{Name: "qbittorrent.service"}}, Sockets: []plan.Unit{{Name: "web.socket"}},
		Publish:        []plan.Publish{{Unit: "vpn-publish-media-8080", Port: 8080}, {Unit: "vpn-publish-media-9000", Port: 9000, Activate: "qbittorrent.service"}},
		PortForwarding: &plan.PortForwarding{Protocol: plan.PortForwardNATPMP}}
	plans := []paths.PlanFile{{Name: "media", Plan: n}}
	for unit, want := range map[string]string{
		"qbittorrent.service":            KindService,
		"web.socket":                     KindSocket,
		"vpn-publish-media-8080.service": KindProxy,
		"vpn-publish-media-9000.service": "", // activates the service directly: no proxy
		"vpn-publish-media-8080.socket":  KindPublishSocket,
		"vpn-publish-media-9000.socket":  KindPublishSocket,
		"vpn-pf@media.service":           KindPortFwd,
		"vpn-pf@other.service":           "",
		"nginx.service":                  "",
	} {
		if _, _, got := findUnit(plans, unit); got != want {
			t.Errorf("%s: kind %q, want %q", unit, got, want)
		}
	}
}

// TestHelperUnits: the proxy passes with no capability and the same hidden
// paths; vpn-pf@ may have CAP_NET_ADMIN and nothing else.
func TestHelperUnits(t *testing.T) {
	w := proxyWorld(t)
	w.facts.PIDs = []int{100, 101}
	l := Checks(w.p, w.facts)
	r := results(l)
	if l.Failed() || r["unit-file"] != check.Pass || r["dns"] != check.Skip || r["control-planes"] != check.Pass || r["capabilities"] != check.Pass {
		t.Errorf("proxy:\n%s", text(l))
	}

	// A late drop-in gives the proxy a capability.
	w.facts.Props["CapabilityBoundingSet"] = "cap_net_raw"
	if c := find(Checks(w.p, w.facts), "overrides"); c.Result != check.Fail || !strings.Contains(c.Detail, "CAP_NET_RAW (forbidden") {
		t.Errorf("proxy with CAP_NET_RAW: %+v", c)
	}

	pf := "vpn-pf@media.service"
	w.facts.Unit, w.facts.Kind = pf, KindPortFwd
	w.facts.Props = map[string]string{"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "100",
		"FragmentPath": "/usr/local/lib/systemd/system/vpn-pf@.service", "NetworkNamespacePath": w.p.Netns("media"),
		"CapabilityBoundingSet": "cap_net_admin", "NoNewPrivileges": "yes", "User": "", "DynamicUser": "no"}
	w.refresh()
	// Root with CAP_NET_ADMIN in every set.
	st := strings.NewReplacer("Uid:\t61234", "Uid:\t0", "CapBnd:\t0000000000000000", "CapBnd:\t0000000000001000",
		"CapEff:\t0000000000000000", "CapEff:\t0000000000001000", "CapPrm:\t0000000000000000", "CapPrm:\t0000000000001000").Replace(statusOK)
	for _, pid := range []string{"100", "101"} {
		write(t, filepath.Join(w.p.Proc, pid, "status"), st)
	}
	l = Checks(w.p, w.facts)
	if l.Failed() || find(l, "control-planes").Result != check.Skip || !strings.Contains(find(l, "capabilities").Detail, "within the compiled set (CAP_NET_ADMIN)") {
		t.Errorf("vpn-pf@:\n%s", text(l))
	}
	w.facts.Props["CapabilityBoundingSet"] = "cap_net_admin cap_sys_admin"
	if c := find(Checks(w.p, w.facts), "overrides"); c.Result != check.Fail || !strings.Contains(c.Detail, "CAP_SYS_ADMIN") {
		t.Errorf("vpn-pf@ with CAP_SYS_ADMIN: %+v", c)
	}
}

// TestControlPlaneSockets: real sockets, seen through a service root that
// shares some of them (a hard link is the same socket file, as a bind
// mount would be) and hides the others.
func TestControlPlaneSockets(t *testing.T) {
	dir := t.TempDir()
	host, svc := filepath.Join(dir, "host"), filepath.Join(dir, "svc")
	listen := func(path string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	for _, p := range []string{"run/systemd/private", "run/systemd/journal/stdout", "run/foo/ctl.sock", "run/hidden.sock"} {
		listen(filepath.Join(host, p))
	}
	for _, p := range []string{"run/systemd/journal/stdout", "run/foo/ctl.sock"} {
		os.MkdirAll(filepath.Dir(filepath.Join(svc, p)), 0o755)
		if err := os.Link(filepath.Join(host, p), filepath.Join(svc, p)); err != nil {
			t.Fatal(err)
		}
	}
	// InaccessiblePaths= puts a mode-000 non-socket node over a socket.
	os.WriteFile(filepath.Join(svc, "run/hidden.sock"), nil, 0)
	pp := paths.Paths{Proc: filepath.Join(dir, "proc")}
	var got []string
	for _, p := range []string{"/run/systemd/private", "/run/systemd/journal/stdout", "/run/foo/ctl.sock", "/run/hidden.sock", "/run/gone.sock"} {
		reach, uid, err := reachable(pp, svc, procfs.UnixSocket{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		if reach {
			got = append(got, p)
			if int(uid) != os.Getuid() {
				t.Errorf("%s: uid %d", p, uid)
			}
		}
	}
	if d := cmp.Diff([]string{"/run/systemd/journal/stdout", "/run/foo/ctl.sock"}, got); d != "" {
		t.Errorf("reachable: %s", d)
	}

	n := &plan.Namespace{DNS: plan.DNS{Mode: plan.DNSStrict}}
	seen := []seenSocket{{Path: "/run/systemd/journal/stdout"}, {Path: "/run/systemd/notify"}, {Path: "/run/systemd/userdb/io.systemd.DynamicUser"},
		{Path: "/run/foo/ctl.sock", Holders: " (food PID 7)"}, {Path: "/run/dbus/system_bus_socket"},
		{Path: "/run/postgresql/.s.PGSQL.5432", UID: 105}, {Path: "/run/nscd/socket"}}
	bad, others, allowed := judgeSockets(allowedSockets(n, &plan.Unit{}), seen)
	if d := cmp.Diff([]string{"/run/foo/ctl.sock (food PID 7)", "/run/dbus/system_bus_socket", "/run/nscd/socket"}, bad); d != "" {
		t.Errorf("strict DNS, no bus: %s", d)
	}
	if d := cmp.Diff([]string{"/run/postgresql/.s.PGSQL.5432, uid 105"}, others); d != "" || len(allowed) != 3 {
		t.Errorf("others %s, allowed %v", d, allowed)
	}
	n.DNS.Mode = plan.DNSCompat
	bad, _, _ = judgeSockets(allowedSockets(n, &plan.Unit{AllowSystemBus: true}), seen)
	if d := cmp.Diff([]string{"/run/foo/ctl.sock (food PID 7)"}, bad); d != "" {
		t.Errorf("compat DNS, allowSystemBus: %s", d)
	}
}

func find(l check.List, name string) check.Check {
	for _, c := range l {
		if c.Name == name {
			return c
		}
	}
	return check.Check{}
}
