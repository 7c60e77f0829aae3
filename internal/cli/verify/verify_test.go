package verify

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

const (
	genResolv = "nameserver 10.64.0.1\noptions edns0\n"
	statusOK  = "Name:\tqbittorrent-nox\nUid:\t61234\t61234\t61234\t61234\nGid:\t61234\t61234\t61234\t61234\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"
)

// world is a fake host: its / (Root), /proc with a confined service's
// processes 100 and 101, /run/netns, the runtime dir, and the service's
// own root (what /proc/PID/root shows).
type world struct {
	t     *testing.T
	dir   string
	p     paths.Paths
	facts Facts
	svc   string // the service's root
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newWorld(t *testing.T) *world {
	dir := t.TempDir()
	w := &world{t: t, dir: dir, svc: filepath.Join(dir, "svcroot")}
	w.p = paths.Paths{
		ConfigDir: "/etc/vpn-confinement.d", GeneratorDir: filepath.Join(dir, "gen"),
		NetnsDir: filepath.Join(dir, "run", "netns"), RuntimeDir: filepath.Join(dir, "run", "vpn-confinement"),
		Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"), Root: filepath.Join(dir, "host"),
	}
	pin := w.p.Netns("media")
	write(t, pin, "")
	write(t, filepath.Join(w.p.Runtime("media"), "resolv.conf"), genResolv)
	write(t, filepath.Join(w.p.Runtime("media"), "nsswitch.conf"), string(resolvconf.NSSwitch()))
	// The host: config dir with a key, the resolver sockets.
	for _, f := range []string{"etc/vpn-confinement.d/media.yaml", "etc/vpn-confinement.d/keys/media.key",
		"run/nscd/socket", "run/dbus/system_bus_socket", "run/systemd/resolve/io.systemd.Resolve"} {
		write(t, filepath.Join(w.p.Root, f), "host")
	}
	// The service: /etc/resolv.conf an absolute symlink into resolved's
	// dir (a tmpfs there holding only the bind-mounted file),
	// nsswitch.conf bound, an inaccessible node over the bus socket.
	write(t, filepath.Join(w.svc, "run/systemd/resolve/stub-resolv.conf"), genResolv)
	os.MkdirAll(filepath.Join(w.svc, "etc"), 0o755)
	os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(w.svc, "etc/resolv.conf"))
	write(t, filepath.Join(w.svc, "etc/nsswitch.conf"), string(resolvconf.NSSwitch()))
	write(t, filepath.Join(w.svc, "run/dbus/system_bus_socket"), "")
	os.Chmod(filepath.Join(w.svc, "run/dbus/system_bus_socket"), 0)
	for _, pid := range []string{"100", "101"} {
		d := filepath.Join(w.p.Proc, pid)
		os.MkdirAll(filepath.Join(d, "ns"), 0o755)
		if err := os.Link(pin, filepath.Join(d, "ns", "net")); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "status"), statusOK)
		os.Symlink(w.svc, filepath.Join(d, "root"))
	}
	n := &plan.Namespace{
		Version: plan.Version, Name: "media", Source: "/etc/vpn-confinement.d/media.yaml",
		DNS:       plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.64.0.1")}},
		WireGuard: plan.WireGuard{Interface: "wg0", PrivateKey: plan.KeySource{File: "/etc/vpn-confinement.d/keys/media.key"}},
		HostLink:  &plan.HostLink{NsIf: "vn-0123456789ab"},
		Services:  []plan.Unit{{Name: "qbittorrent.service"}},
	}
	// The generated drop-in, and the effective settings systemd derives
	// from it (as systemctl show prints them).
	ours := filepath.Join(w.p.GeneratorDir, "qbittorrent.service.d", "50-vpn-confinement.conf")
	write(t, ours, string(units.ServiceDropIn(n, n.Services[0], nil)))
	props := systemd.Props{"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "100",
		"DropInPaths": "/etc/systemd/system/qbittorrent.service.d/10-local.conf " + ours, "User": "qbt", "DynamicUser": "no"}
	b, _ := os.ReadFile(ours)
	for k, v := range effective(unitfile.Parse(ours, b)) {
		props[k] = v
	}
	props["NetworkNamespacePath"] = pin // the plan names /run/netns; the fake world's pin is elsewhere
	w.facts = Facts{
		Unit: "qbittorrent.service", Plan: n, Kind: KindService, Service: &n.Services[0],
		Props: props,
		PIDs:  []int{100, 101},
		Firewall: &kstate.Firewall{Rules: 20, DropPackets: 3, Chains: []kstate.Chain{
			{Name: "input", Hook: "input", Policy: "drop"}, {Name: "forward", Hook: "forward", Policy: "drop"},
			{Name: "output", Hook: "output", Policy: "drop"}, {Name: "allow", Rules: 4}}},
		Links: []kstate.Link{{Name: "lo", Kind: "loopback"}, {Name: "vn-0123456789ab", Kind: "veth"}, {Name: "wg0", Kind: "wireguard"}},
	}
	w.refresh()
	// The service's /run/systemd: a tmpfs with the journal bound back.
	write(t, filepath.Join(w.svc, "run/systemd/journal/.keep"), "")
	write(t, filepath.Join(w.p.Root, "run/systemd/private"), "")
	return w
}

// refresh re-reads the drop-ins as Gather does.
func (w *world) refresh() {
	w.facts.ReferenceFile, w.facts.Reference, w.facts.Later = unitFiles(w.p, w.facts)
}

// allowList gives the generated drop-in an allowList's IP filter, in
// effect.
func (w *world) allowList() {
	w.facts.Reference = append(w.facts.Reference,
		unitfile.Setting{Section: "Service", Key: "IPAddressDeny", Value: "any"},
		unitfile.Setting{Section: "Service", Key: "IPAddressAllow", Value: "127.0.0.0/8 10.64.0.0/24"})
	w.facts.Props["IPAddressDeny"], w.facts.Props["IPAddressAllow"] = "::/0 0.0.0.0/0", "127.0.0.0/8 10.64.0.0/24"
}

// lateDropIn adds a drop-in after ours, as systemd would load it.
func (w *world) lateDropIn(name, body string, props map[string]string) {
	path := "/etc/systemd/system/qbittorrent.service.d/" + name
	write(w.t, filepath.Join(w.p.Root, path), body)
	w.facts.Props["DropInPaths"] += " " + path
	for k, v := range props {
		w.facts.Props[k] = v
	}
	w.refresh()
}

// effective is what systemd makes of settings: list settings accumulate
// until an empty assignment resets them; capabilities as lower-case names.
func effective(settings []unitfile.Setting) map[string]string {
	out := map[string]string{}
	for _, st := range settings {
		switch st.Key {
		case "InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths", "BindPaths", "ReadWritePaths", "CapabilityBoundingSet", "AmbientCapabilities", "ReadOnlyPaths",
			"IPAddressDeny", "IPAddressAllow", "RestrictAddressFamilies":
			v := st.Value
			if st.Key == "CapabilityBoundingSet" || st.Key == "AmbientCapabilities" {
				v = strings.ToLower(v)
			}
			if v == "" {
				out[st.Key] = ""
			} else if out[st.Key] == "" {
				out[st.Key] = v
			} else {
				out[st.Key] += " " + v
			}
		case "NetworkNamespacePath", "ProtectSystem", "NoNewPrivileges", "ProtectHome", "PrivateNetwork":
			out[st.Key] = st.Value
		case "ExecStart":
			argv := strings.TrimLeft(st.Value, "-+!@:")
			out[st.Key] = "{ path=" + strings.Fields(argv)[0] + " ; argv[]=" + argv + " ; ignore_errors=no }"
		}
	}
	return out
}

func results(l check.List) map[string]check.Result {
	m := map[string]check.Result{}
	for _, c := range l {
		m[c.Name] = c.Result
	}
	return m
}

func TestAllPass(t *testing.T) {
	w := newWorld(t)
	l := Checks(w.p, w.facts)
	var b bytes.Buffer
	l.WriteText(&b)
	if l.Failed() || l.Count(check.Skip) != 0 {
		t.Fatalf("want all PASS:\n%s", b.String())
	}
	want := []string{"plan", "drop-in", "overrides", "firewall", "interfaces", "running", "namespace", "resolv.conf", "nsswitch.conf", "resolver-ipc", "keys",
		"systemd-tmpfs", "system-bus", "control-planes", "capabilities", "no-new-privs"}
	if len(l) != len(want) {
		t.Fatalf("got %d checks:\n%s", len(l), b.String())
	}
	for i, name := range want {
		if l[i].Name != name {
			t.Errorf("check %d is %s, want %s", i, l[i].Name, name)
		}
	}
	for _, s := range []string{
		"PASS  namespace       all 2 processes in " + w.p.Netns("media"),
		"the service reads the generated file: nameserver 10.64.0.1",
		"hidden from the service: /run/systemd/resolve/io.systemd.Resolve, /run/nscd/socket, /run/dbus/system_bus_socket",
		"hidden from the service: /etc/vpn-confinement.d, /etc/vpn-confinement.d/keys/media.key",
		"CapBnd=0000000000000000",
		"PASS  overrides       no drop-in after 50-vpn-confinement.conf; effective capabilities, hidden paths, mounts, IP filter and address families are the generated ones",
		"/run/systemd is a private tmpfs (holding only journal, resolve); hidden from the service: /run/systemd/private",
		"PASS  system-bus      hidden from the service: /run/dbus/system_bus_socket",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, b.String())
		}
	}
	var jb bytes.Buffer
	check.WriteJSON(&jb, NewReport(w.facts, l))
	var r struct {
		Unit, Namespace string
		OK              bool
		Checks          []map[string]string
	}
	if err := json.Unmarshal(jb.Bytes(), &r); err != nil || !r.OK || r.Namespace != "media" || r.Checks[0]["result"] != "PASS" {
		t.Errorf("JSON: %s %v", jb.String(), err)
	}
}

// TestDrift: each kind of drift fails exactly its check.
func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(w *world)
		fail   string
		detail string
	}{
		{"process outside the namespace", func(w *world) {
			p := filepath.Join(w.p.Proc, "101", "ns", "net")
			os.Remove(p)
			write(w.t, p, "")
		}, "namespace", "PID 101 (qbittorrent-nox) is in net:["},
		{"pin missing", func(w *world) { os.Remove(w.p.Netns("media")) }, "namespace", "no such file"},
		{"resolv.conf not the generated one", func(w *world) {
			write(w.t, filepath.Join(w.svc, "run/systemd/resolve/stub-resolv.conf"), "nameserver 127.0.0.53\n")
		}, "resolv.conf", "differs from the generated"},
		{"plan changed, namespace not restarted", func(w *world) {
			other := "nameserver 9.9.9.9\noptions edns0\n"
			write(w.t, filepath.Join(w.p.Runtime("media"), "resolv.conf"), other)
			write(w.t, filepath.Join(w.svc, "run/systemd/resolve/stub-resolv.conf"), other)
		}, "resolv.conf", "differs from what the current plan generates: restart vpn-ns@media"},
		{"generated file missing", func(w *world) {
			os.Remove(filepath.Join(w.p.Runtime("media"), "nsswitch.conf"))
			write(w.t, filepath.Join(w.svc, "etc/nsswitch.conf"), "hosts: files dns\n")
		}, "nsswitch.conf", "missing"},
		{"nsswitch.conf of the host", func(w *world) {
			write(w.t, filepath.Join(w.svc, "etc/nsswitch.conf"), "hosts: files resolve dns\n")
		}, "nsswitch.conf", "differs"},
		{"nscd reachable", func(w *world) {
			os.MkdirAll(filepath.Join(w.svc, "run/nscd"), 0o755)
			os.Link(filepath.Join(w.p.Root, "run/nscd/socket"), filepath.Join(w.svc, "run/nscd/socket"))
		}, "resolver-ipc", "reachable to the service: /run/nscd/socket"},
		{"key visible", func(w *world) {
			os.MkdirAll(filepath.Join(w.svc, "etc/vpn-confinement.d/keys"), 0o755)
			os.Link(filepath.Join(w.p.Root, "etc/vpn-confinement.d/keys/media.key"), filepath.Join(w.svc, "etc/vpn-confinement.d/keys/media.key"))
		}, "keys", "visible to the service: /etc/vpn-confinement.d/keys/media.key"},
		{"CAP_NET_ADMIN in the bounding set", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "101", "status"), strings.Replace(statusOK, "CapBnd:\t0000000000000000", "CapBnd:\t0000000000001000", 1))
		}, "capabilities", "PID 101 (qbittorrent-nox): CAP_NET_ADMIN (bounding); forbidden: CAP_NET_ADMIN (change the namespace's network"},
		{"CAP_SYS_ADMIN ambient", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "100", "status"), strings.Replace(statusOK, "CapAmb:\t0000000000000000", "CapAmb:\t0000000000200000", 1))
		}, "capabilities", "PID 100 (qbittorrent-nox): CAP_SYS_ADMIN (ambient)"},
		{"no_new_privs off", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "100", "status"), strings.Replace(statusOK, "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1))
		}, "no-new-privs", "PID 100"},
		{"service root unreadable", func(w *world) {
			os.Remove(filepath.Join(w.p.Proc, "100", "root"))
			os.Symlink("/nonexistent-root", filepath.Join(w.p.Proc, "100", "root"))
		}, "", "cannot look into the service's root"},
		{"drop-in not loaded", func(w *world) { w.facts.Props["DropInPaths"] = "" }, "drop-in", "daemon-reload"},
		{"drop-in replaced by one of the same name", func(w *world) {
			w.facts.Props["DropInPaths"] = "/etc/systemd/system/qbittorrent.service.d/50-vpn-confinement.conf"
		}, "drop-in", "/etc/systemd/system/qbittorrent.service.d/50-vpn-confinement.conf has the same name as the generated drop-in and replaces it"},
		{"namespace path overridden", func(w *world) {
			w.lateDropIn("90-mine.conf", "[Service]\nNetworkNamespacePath=/run/netns/other\n", map[string]string{"NetworkNamespacePath": "/run/netns/other"})
		}, "drop-in", "90-mine.conf:2: NetworkNamespacePath=/run/netns/other"},
		{"late CAP_NET_ADMIN", func(w *world) {
			w.lateDropIn("90-late.conf", "[Service]\nCapabilityBoundingSet=CAP_NET_ADMIN\n", map[string]string{"CapabilityBoundingSet": "cap_net_admin"})
		}, "overrides", "CapabilityBoundingSet has CAP_NET_ADMIN (forbidden: change the namespace's network: flush the kill switch, add routes, links or addresses), beyond the compiled set (none) (set by /etc/systemd/system/qbittorrent.service.d/90-late.conf:2: CapabilityBoundingSet=CAP_NET_ADMIN)"},
		{"hidden paths reset", func(w *world) {
			w.lateDropIn("90-late.conf", "[Service]\nInaccessiblePaths=\n", map[string]string{"InaccessiblePaths": ""})
		}, "overrides", "InaccessiblePaths lacks -/run/user"},
		{"/run/systemd tmpfs reset", func(w *world) {
			w.lateDropIn("90-late.conf", "[Service]\nTemporaryFileSystem=\n", map[string]string{"TemporaryFileSystem": ""})
		}, "overrides", "TemporaryFileSystem lacks /run/systemd /run/vpn-confinement:ro /run/resolvconf:ro (reset by a later TemporaryFileSystem=?) (set by /etc/systemd/system/qbittorrent.service.d/90-late.conf:2: TemporaryFileSystem=)"},
		{"privileged command", func(w *world) {
			w.lateDropIn("90-late.conf", "[Service]\nExecStartPre=+/bin/sh -c x\n", map[string]string{"ExecStartPreEx": "{ path=/usr/lib/vpn-confinement/vpn-confinement-tripwire ; argv[]=/usr/lib/vpn-confinement/vpn-confinement-tripwire add media ; flags=privileged ; start_time=[n/a] }\n{ path=/bin/sh ; argv[]=/bin/sh -c x ; flags=privileged ; start_time=[n/a] }"})
		}, "overrides", "runs ExecStartPre=+/bin/sh -c x with full privileges"},
		{"late User=root", func(w *world) {
			w.lateDropIn("90-late.conf", "[Service]\nUser=root\n", map[string]string{"User": "root"})
		}, "overrides", "the unit runs as root (User=root, DynamicUser=no), but it was compiled as a non-root service (set by /etc/systemd/system/qbittorrent.service.d/90-late.conf:2: User=root)"},
		{"/run/systemd of the host", func(w *world) {
			// The host's /run/systemd is the very directory the service sees.
			os.RemoveAll(filepath.Join(w.p.Root, "run/systemd"))
			os.Symlink(filepath.Join(w.svc, "run/systemd"), filepath.Join(w.p.Root, "run/systemd"))
		}, "systemd-tmpfs", "the service sees the host's /run/systemd"},
		{"private socket visible", func(w *world) {
			write(w.t, filepath.Join(w.svc, "run/systemd/private"), "")
			os.Remove(filepath.Join(w.svc, "run/systemd/private"))
			os.Link(filepath.Join(w.p.Root, "run/systemd/private"), filepath.Join(w.svc, "run/systemd/private"))
		}, "systemd-tmpfs", "visible to the service: /run/systemd/private"},
		{"system bus reachable", func(w *world) {
			w.facts.Plan.DNS.Mode = plan.DNSCompat // (strict DNS's resolver-ipc check would fail too)
			os.Remove(filepath.Join(w.svc, "run/dbus/system_bus_socket"))
			os.Link(filepath.Join(w.p.Root, "run/dbus/system_bus_socket"), filepath.Join(w.svc, "run/dbus/system_bus_socket"))
		}, "system-bus", "reachable to the service: /run/dbus/system_bus_socket"},
		{"root process of a non-root service", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "100", "status"), strings.Replace(statusOK, "Uid:\t61234", "Uid:\t0", 1))
		}, "capabilities", "runs as root although compiled as a non-root service"},
		{"no firewall", func(w *world) { w.facts.Firewall = nil }, "firewall", "no kill switch"},
		{"output accepts", func(w *world) { w.facts.Firewall.Chains[2].Policy = "accept" }, "firewall", "no policy-drop chain for output"},
		{"leak interface", func(w *world) {
			w.facts.Links = append(w.facts.Links, kstate.Link{Name: "eth1", Kind: "veth"})
		}, "interfaces", "unexpected interface in the namespace: eth1 (veth)"},
		{"tunnel missing", func(w *world) { w.facts.Links = w.facts.Links[:2] }, "interfaces", "wg0 is missing"},
		{"forked, not exec'd yet", func(w *world) { w.facts.Unexecd = []int{100} }, "running", "PID [100] is still being set up by systemd"},
		// Live overrides the generator cannot see: systemd's view counts.
		{"set-property IPAddressDeny=", func(w *world) { w.allowList(); w.facts.Props["IPAddressDeny"] = "" }, "overrides", "IPAddressDeny=, the drop-in denies any"},
		{"IP allowed beyond the plan", func(w *world) { w.allowList(); w.facts.Props["IPAddressAllow"] += " 0.0.0.0/0" }, "overrides", "IPAddressAllow has 0.0.0.0/0"},
		{"capability given back", func(w *world) { w.facts.Props["CapabilityBoundingSet"] = "cap_net_admin" }, "overrides", "CapabilityBoundingSet has CAP_NET_ADMIN (forbidden"},
		{"ambient capability", func(w *world) { w.facts.Props["AmbientCapabilities"] = "cap_sys_admin" }, "overrides", "AmbientCapabilities has CAP_SYS_ADMIN (forbidden"},
		{"InaccessiblePaths reset", func(w *world) { w.facts.Props["InaccessiblePaths"] = "" }, "overrides", "InaccessiblePaths lacks"},
		{"tmpfs gone", func(w *world) { w.facts.Props["TemporaryFileSystem"] = "/run/vpn-confinement:ro" }, "overrides", "TemporaryFileSystem lacks /run/systemd"},
		{"read-only bind of the private socket", func(w *world) {
			w.facts.Props["BindReadOnlyPaths"] += " /run/systemd/private:/run/systemd/private:rbind"
		}, "overrides", "BindReadOnlyPaths=/run/systemd/private:/run/systemd/private:rbind re-exposes /run/systemd"},
		{"bind of the bus elsewhere", func(w *world) {
			w.facts.Props["BindPaths"] += " /run/dbus/system_bus_socket:/tmp/bus:rbind"
		}, "overrides", "re-exposes /run/dbus"},
		{"protected path writable", func(w *world) { w.facts.Props["ReadWritePaths"] += " /etc/systemd/system" }, "overrides", "ReadWritePaths makes /etc/systemd/system writable"},
		{"ProtectSystem weaker", func(w *world) { w.facts.Props["ProtectSystem"] = "no" }, "overrides", "ProtectSystem=no, weaker than the generated"},
		{"NoNewPrivileges off", func(w *world) { w.facts.Props["NoNewPrivileges"] = "no" }, "overrides", "NoNewPrivileges=no"},
		{"address family added", func(w *world) { w.facts.Props["RestrictAddressFamilies"] += " AF_PACKET" }, "overrides", "RestrictAddressFamilies has AF_PACKET"},
		{"no address family filter", func(w *world) { w.facts.Props["RestrictAddressFamilies"] = "" }, "overrides", "every address family is allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.mutate(w)
			l := Checks(w.p, w.facts)
			var b bytes.Buffer
			l.WriteText(&b)
			for _, c := range l {
				if c.Result == check.Fail && c.Name != tc.fail && tc.fail != "" {
					t.Errorf("unexpected FAIL:\n%s", b.String())
				}
				if c.Result == check.Pass && tc.fail == "" && (c.Name == "keys" || c.Name == "resolver-ipc") {
					t.Errorf("%s passed without looking:\n%s", c.Name, b.String())
				}
			}
			r := results(l)
			if (tc.fail != "" && r[tc.fail] != check.Fail) || !strings.Contains(b.String(), tc.detail) {
				t.Errorf("want %s to FAIL with %q:\n%s", tc.fail, tc.detail, b.String())
			}
		})
	}
}

func TestNotApplicable(t *testing.T) {
	w := newWorld(t)
	w.facts.Plan.DNS.Mode = plan.DNSCompat
	r := results(Checks(w.p, w.facts))
	if r["resolv.conf"] != check.Skip || r["nsswitch.conf"] != check.Skip || r["resolver-ipc"] != check.Skip || r["keys"] != check.Pass {
		t.Errorf("compat DNS: %v", r)
	}

	w = newWorld(t)
	w.facts.Plan.DNS.AllowHostResolverIPC = true
	os.MkdirAll(filepath.Join(w.svc, "run/nscd"), 0o755)
	os.Link(filepath.Join(w.p.Root, "run/nscd/socket"), filepath.Join(w.svc, "run/nscd/socket"))
	if r := results(Checks(w.p, w.facts)); r["resolver-ipc"] != check.Pass {
		t.Errorf("allowHostResolverIPC: nscd may be reachable: %v", r)
	}

	w = newWorld(t)
	w.facts.Props["ActiveState"], w.facts.Props["SubState"], w.facts.PIDs = "inactive", "dead", nil
	l := Checks(w.p, w.facts)
	if r := results(l); r["running"] != check.Fail || r["overrides"] != check.Pass || len(l) != 6 {
		t.Errorf("stopped unit: %v", l)
	}

	w = newWorld(t)
	w.facts.Unit, w.facts.Kind = "qbittorrent.socket", KindSocket
	w.facts.Props["DropInPaths"] = filepath.Join(w.p.GeneratorDir, "qbittorrent.socket.d/50-vpn-confinement.conf")
	if r := results(Checks(w.p, w.facts)); r["running"] != check.Skip || r["drop-in"] != check.Pass {
		t.Errorf("socket: %v", r)
	}

	w = newWorld(t)
	w.facts.Plan = nil
	l = Checks(w.p, w.facts)
	if len(l) != 1 || l[0].Result != check.Fail {
		t.Errorf("unlisted unit: %v", l)
	}
}

// TestUnexecd: a process whose exe is PID 1's is systemd's forked child.
func TestUnexecd(t *testing.T) {
	dir := t.TempDir()
	p := paths.Paths{Proc: dir}
	write(t, filepath.Join(dir, "systemd"), "")
	write(t, filepath.Join(dir, "sleep"), "")
	for pid, exe := range map[string]string{"1": "systemd", "100": "systemd", "101": "sleep"} {
		os.MkdirAll(filepath.Join(dir, pid), 0o755)
		os.Symlink(filepath.Join(dir, exe), filepath.Join(dir, pid, "exe"))
	}
	if got := unexecd(p, []int{100, 101, 102}); len(got) != 1 || got[0] != 100 {
		t.Errorf("unexecd: %v, want [100]", got)
	}
}

// TestBlockedUnit: a unit of an invalid file is reported as blocked, with
// the file to fix (read from the generator's blocking drop-in).
func TestBlockedUnit(t *testing.T) {
	p := paths.Paths{GeneratorDir: t.TempDir()}
	src := testutil.Testdata("generator", "11-invalid", "expected", "radarr.service.d", "50-vpn-confinement.conf")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p.GeneratorDir, "radarr.service.d", "50-vpn-confinement.conf"), string(b))
	f, err := Gather(p, nil, "radarr.service")
	if err != nil {
		t.Fatal(err)
	}
	l := Checks(p, f)
	if len(l) != 1 || l[0].Result != check.Fail || !strings.Contains(l[0].Detail, "radarr.service is blocked: /etc/vpn-confinement.d/broken.yaml is invalid") {
		t.Errorf("%+v", l)
	}
}

func parse(file string, b []byte) []unitfile.Setting { return unitfile.Parse(file, b) }

func text(l check.List) string {
	var b bytes.Buffer
	l.WriteText(&b)
	return b.String()
}

// proxyWorld turns the world into a published port's proxy: the
// generated unit, its effective settings, its process in the namespace as
// a dynamic user.
func proxyWorld(t *testing.T) *world {
	w := newWorld(t)
	n := w.facts.Plan
	n.Publish = []plan.Publish{{Unit: "vpn-publish-media-8080", Listen: []string{"127.0.0.1:8080"}, Port: 8080}}
	proxy := "vpn-publish-media-8080.service"
	frag := filepath.Join(w.p.GeneratorDir, proxy)
	write(t, frag, string(units.PublishProxy(n, n.Publish[0])))
	w.facts.Unit, w.facts.Kind, w.facts.Service, w.facts.Publish = proxy, KindProxy, nil, &n.Publish[0]
	w.facts.Props["FragmentPath"], w.facts.Props["DropInPaths"], w.facts.Props["DynamicUser"] = frag, "", "yes"
	b, _ := os.ReadFile(frag)
	for k, v := range effective(parse(frag, b)) {
		w.facts.Props[k] = v
	}
	w.facts.Props["NetworkNamespacePath"] = w.p.Netns("media")
	w.facts.PIDs = []int{100}
	w.refresh()
	return w
}

func TestPublishProxy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(w *world)
		fail   string
		detail string
	}{
		{"all pass", func(w *world) {}, "", ""},
		{"not generated", func(w *world) { w.facts.Props["FragmentPath"] = "/etc/systemd/system/vpn-publish-media-8080.service" }, "unit-file", "a unit of that name elsewhere overrides it"},
		{"outside the namespace", func(w *world) { w.facts.Props["NetworkNamespacePath"] = "" }, "unit-file", "would run in the host's namespace"},
		{"wider IP filter", func(w *world) { w.facts.Props["IPAddressAllow"] = "127.0.0.0/8 ::1/128 10.0.0.0/8" }, "ip-filter", "more than loopback"},
		{"root", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "100", "status"), strings.Replace(statusOK, "Uid:\t61234\t61234", "Uid:\t0\t0", 1))
		}, "user", "runs as root: PID 100"},
		{"a capability", func(w *world) {
			write(w.t, filepath.Join(w.p.Proc, "100", "status"), strings.Replace(statusOK, "CapBnd:\t0000000000000000", "CapBnd:\t0000000000000400", 1))
		}, "capabilities", "beyond the compiled set (none): PID 100 (qbittorrent-nox): CAP_NET_BIND_SERVICE (bounding)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := proxyWorld(t)
			tc.mutate(w)
			l := Checks(w.p, w.facts)
			var b bytes.Buffer
			l.WriteText(&b)
			if tc.fail == "" {
				if l.Failed() || !strings.Contains(b.String(), "PASS  user") || !strings.Contains(b.String(), "PASS  ip-filter") {
					t.Errorf("want all PASS:\n%s", b.String())
				}
				return
			}
			if results(l)[tc.fail] != check.Fail || !strings.Contains(b.String(), tc.detail) {
				t.Errorf("want %s to FAIL with %q:\n%s", tc.fail, tc.detail, b.String())
			}
		})
	}
	// Idle proxy: the static checks still run, the process checks wait.
	w := proxyWorld(t)
	w.facts.Props["ActiveState"], w.facts.PIDs = "inactive", nil
	l := Checks(w.p, w.facts)
	if l.Failed() || results(l)["running"] != check.Skip || results(l)["ip-filter"] != check.Pass {
		var b bytes.Buffer
		l.WriteText(&b)
		t.Errorf("idle proxy:\n%s", b.String())
	}
}

func TestPublishSocket(t *testing.T) {
	w := proxyWorld(t)
	w.facts.Unit, w.facts.Kind = "vpn-publish-media-8080.socket", KindPublishSocket
	w.facts.Props = systemd.Props{"LoadState": "loaded", "ActiveState": "active", "SubState": "listening",
		"FragmentPath": filepath.Join(w.p.GeneratorDir, "vpn-publish-media-8080.socket"), "Triggers": "vpn-publish-media-8080.service"}
	w.facts.HolderProps = systemd.Props{"LoadState": "loaded", "NetworkNamespacePath": w.p.Netns("media")}
	w.facts.Listeners = map[string]bool{"127.0.0.1:8080": true}
	l := Checks(w.p, w.facts)
	var b bytes.Buffer
	l.WriteText(&b)
	if l.Failed() || !strings.Contains(b.String(), "PASS  activates") || !strings.Contains(b.String(), "PASS  listening") {
		t.Errorf("want all PASS:\n%s", b.String())
	}
	w.facts.HolderProps["NetworkNamespacePath"] = ""
	w.facts.Listeners = map[string]bool{}
	l = Checks(w.p, w.facts)
	if r := results(l); r["activates"] != check.Fail || r["listening"] != check.Fail {
		b.Reset()
		l.WriteText(&b)
		t.Errorf("an unconfined target and no listener must fail:\n%s", b.String())
	}
}
