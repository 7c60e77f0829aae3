package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

const pub = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

const tmpfsMagic = 0x01021994

// fake is a host made of temp dirs and injected answers.
type fake struct {
	t    *testing.T
	dir  string
	o    Options
	conf string
}

func newFake(t *testing.T) *fake {
	dir := t.TempDir()
	f := &fake{t: t, dir: dir, conf: filepath.Join(dir, "etc", "vpn-confinement.d")}
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "resolv.conf"), []byte("nameserver 192.168.1.1\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "nsswitch.conf"), []byte("hosts: files dns\n"), 0o644)
	f.o = Options{
		Paths: paths.Paths{ConfigDir: f.conf, GeneratorDir: filepath.Join(dir, "gen"), Root: root, Sys: filepath.Join(dir, "sys"),
			Proc: filepath.Join(dir, "proc"), StateDir: filepath.Join(dir, "state"), UnitPath: []string{filepath.Join(dir, "units")}},
		Root:  true,
		Probe: true,
		Probes: Probes{
			KernelWireGuard: func() (bool, error) { return false, nil },
			Nftables:        func() error { return nil },
			Tun:             func() error { return nil },
			Tripwire:        func() (string, error) { return "", nil },
		},
		TripwireMarker: filepath.Join(dir, "run", "tripwire.unsupported"),
		Host: Host{
			Links: func() ([]kstate.Link, error) {
				return []kstate.Link{
					{Name: "lo", Kind: "loopback", Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
					{Name: "eth0", Kind: "device", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.1.20/24"), netip.MustParsePrefix("fe80::1/64")}},
				}, nil
			},
			RouteTo: func(sock string, dst netip.Addr) (kstate.Route, error) {
				return kstate.Route{Dst: netip.PrefixFrom(dst, 32), Dev: "eth0", Gateway: "192.168.1.1"}, nil
			},
		},
		Systemd: func() (systemd.Version, error) {
			return systemd.Version{Number: 255, Full: "255 (255.4-1)", Features: map[string]bool{"BPF_FRAMEWORK": true}}, nil
		},
		Booted:        func() bool { return true },
		GeneratorDirs: []string{filepath.Join(dir, "generators")},
		FSType:        func(string) (int64, error) { return cgroup2Magic, nil },
	}
	f.install()
	f.write(filepath.Join(f.o.Paths.Sys, "fs", "cgroup", "system.slice", "cgroup.freeze"), "0\n", 0o644)
	return f
}

// install puts templates whose helpers exist, and the generator, in place.
func (f *fake) install() {
	helper := filepath.Join(f.dir, "libexec", "vpn-confinement-netns")
	os.MkdirAll(filepath.Dir(helper), 0o755)
	os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755)
	for _, u := range []string{"vpn-ns@.service", "vpn-wg@.service", "vpn-pin@.service", "vpn-pf@.service"} {
		f.write(filepath.Join(f.dir, "units", u), fmt.Sprintf("[Service]\nExecStart=%s up %%i\n", helper), 0o644)
	}
	// The service the fake's namespaces confine.
	f.write(filepath.Join(f.dir, "units", "app.service"), "[Service]\nExecStart=/bin/true\nDynamicUser=yes\n", 0o644)
	f.write(filepath.Join(f.dir, "generators", "vpn-confinement-generator"), "#!/bin/sh\n", 0o755)
}

func (f *fake) write(p, content string, mode os.FileMode) {
	f.t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		f.t.Fatal(err)
	}
	os.Chmod(p, mode)
}

// namespace writes NAME.yaml with a 0600 key file; extra is YAML appended
// (top-level keys other than wireguard and services).
func (f *fake) namespace(name, extra string) string {
	key := filepath.Join(f.conf, "keys", name+".key")
	f.write(key, "k\n", 0o600)
	os.Chmod(filepath.Join(f.conf, "keys"), 0o700)
	f.write(filepath.Join(f.conf, name+".yaml"), fmt.Sprintf(`dns: {servers: [10.64.0.1]}
wireguard:
  interface: wg-%s
  privateKeyFile: %s
  addresses: [10.64.0.2/32]
  peers:
    - publicKey: %s
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0]
%s`, name, key, pub, extra), 0o644)
	os.Chmod(f.conf, 0o755)
	return key
}

func (f *fake) run() (map[string]check.Check, string) {
	l := Run(f.o)
	var b bytes.Buffer
	l.WriteText(&b)
	m := map[string]check.Check{}
	for _, c := range l {
		m[c.Name] = c
	}
	return m, b.String()
}

func (f *fake) expect(name string, r check.Result, detail string) {
	f.t.Helper()
	m, out := f.run()
	c, ok := m[name]
	if !ok || c.Result != r || !strings.Contains(c.Detail, detail) {
		f.t.Errorf("want %s %s containing %q, got:\n%s", r, name, detail, out)
	}
}

func TestHealthyHost(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "services: [{unit: app.service}]\n")
	m, out := f.run()
	for _, c := range m {
		if c.Result != check.OK {
			t.Errorf("want all OK:\n%s", out)
			break
		}
	}
	want := []string{"wireguard", "nftables", "systemd", "bpf-framework", "cgroup", "freezer", "tripwire", "install", "resolv.conf", "nsswitch.conf", "resolvers", "config-dir", "keys", "routes", "host-link", "published-ports", "config"}
	if len(m) != len(want) {
		t.Errorf("got %d checks:\n%s", len(m), out)
	}
	for _, w := range want {
		if _, ok := m[w]; !ok {
			t.Errorf("no %s check", w)
		}
	}
}

func TestWireGuard(t *testing.T) {
	f := newFake(t)
	f.expect("wireguard", check.OK, "userspace fallback, the embedded wireguard-go over /dev/net/tun")
	os.MkdirAll(filepath.Join(f.o.Paths.Sys, "module", "wireguard"), 0o755)
	f.expect("wireguard", check.OK, "kernel WireGuard available (module loaded)")

	f = newFake(t)
	f.namespace("media", "  backend: kernel\n")
	// (the extra lines above land under wireguard:, see namespace)
	f.expect("wireguard", check.Fail, "but media set wireguard.backend: kernel")

	f = newFake(t)
	f.namespace("media", "")
	f.o.Probes.Tun = func() error { return errors.New("no such device") }
	f.expect("wireguard", check.Fail, "needs /dev/net/tun (no such device), used by media")
	f.o.Probes.KernelWireGuard = func() (bool, error) { return true, nil }
	f.expect("wireguard", check.OK, "a test link in a throwaway namespace worked")
}

func TestSystemdAndBPF(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "services: [{unit: app.service, restrictBind: true}]\n")
	f.o.Systemd = func() (systemd.Version, error) {
		return systemd.ParseVersion("systemd 252 (252.38-1~deb12u1)\n+PAM -BPF_FRAMEWORK +SECCOMP default-hierarchy=unified\n")
	}
	f.expect("bpf-framework", check.Warn, "RestrictNetworkInterfaces= are silently NOT enforced; the namespace firewall is the layer that holds; restrictBind is set for app.service")
	f.expect("systemd", check.OK, "systemd 252 (252.38-1~deb12u1)")
	f.o.Booted = func() bool { return false }
	f.expect("systemd", check.Warn, "is not the init system here")
	f.o.Systemd = func() (systemd.Version, error) { return systemd.Version{Number: 245, Full: "245"}, nil }
	f.expect("systemd", check.Fail, "older than 247")
}

func TestCgroup(t *testing.T) {
	f := newFake(t)
	f.expect("cgroup", check.OK, "cgroup v2 (unified)")
	f.o.FSType = func(p string) (int64, error) {
		if strings.HasSuffix(p, "unified") {
			return cgroup2Magic, nil
		}
		return tmpfsMagic, nil
	}
	f.expect("cgroup", check.OK, "hybrid hierarchy")
	f.o.FSType = func(p string) (int64, error) {
		if strings.HasSuffix(p, "unified") {
			return 0, os.ErrNotExist
		}
		return tmpfsMagic, nil
	}
	f.expect("cgroup", check.Warn, "IPAddressDeny=/IPAddressAllow= are NOT enforced")
}

func TestNftablesProbe(t *testing.T) {
	f := newFake(t)
	f.o.Probes.Nftables = func() error { return errors.New("Operation not supported") }
	f.expect("nftables", check.Fail, "Operation not supported")
	f.o.Probe = false
	f.expect("nftables", check.Warn, "--no-probe")
}

func TestInstall(t *testing.T) {
	f := newFake(t)
	os.Remove(filepath.Join(f.dir, "units", "vpn-pin@.service"))
	f.expect("install", check.Fail, "not found in the unit path: vpn-pin@.service")
	f = newFake(t)
	os.Remove(filepath.Join(f.dir, "libexec", "vpn-confinement-netns"))
	f.expect("install", check.Fail, "helpers named by the templates are missing")
	f = newFake(t)
	os.Remove(filepath.Join(f.dir, "generators", "vpn-confinement-generator"))
	f.expect("install", check.Fail, "vpn-confinement-generator is not installed")
}

func TestResolvConfLayouts(t *testing.T) {
	f := newFake(t)
	rc := filepath.Join(f.o.Paths.Root, "etc", "resolv.conf")
	os.Remove(rc)
	f.write(filepath.Join(f.o.Paths.Root, "run/systemd/resolve/stub-resolv.conf"), "nameserver 127.0.0.53\n", 0o644)
	os.Symlink("../run/systemd/resolve/stub-resolv.conf", rc)
	f.expect("resolv.conf", check.OK, "under a tmpfs that hides the rest of /run/systemd/resolve")
	os.Remove(rc)
	os.Symlink("/run/NetworkManager/resolv.conf", rc)
	f.expect("resolv.conf", check.Fail, "dangling symlink")
	f.write(filepath.Join(f.o.Paths.Root, "run/NetworkManager/resolv.conf"), "nameserver 192.168.1.1\n", 0o644)
	f.expect("resolv.conf", check.Warn, "the rest of /run/NetworkManager stays visible")
}

func TestResolvers(t *testing.T) {
	f := newFake(t)
	f.write(filepath.Join(f.o.Paths.Root, "run/nscd/socket"), "", 0o666)
	f.expect("resolvers", check.OK, "nscd present: hidden from strict-DNS services")
	f.namespace("media", "  allowHostnameEndpoints: false\n")
	f.write(filepath.Join(f.conf, "compat.yaml"), strings.Replace(mustRead(t, filepath.Join(f.conf, "media.yaml")), "dns: {servers: [10.64.0.1]}", "dns: {mode: compat}", 1), 0o644)
	os.WriteFile(filepath.Join(f.conf, "compat.yaml"), []byte(strings.ReplaceAll(mustRead(t, filepath.Join(f.conf, "compat.yaml")), "wg-media", "wg-compat")), 0o644)
	f.expect("resolvers", check.Warn, "compat use dns.mode compat")
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigDirAndKeys(t *testing.T) {
	f := newFake(t)
	key := f.namespace("media", "")
	f.expect("config-dir", check.OK, "writable by root only")
	f.expect("keys", check.OK, "1 key file, owned by root")
	os.Chmod(key, 0o644)
	f.expect("keys", check.Fail, "media.key (private key of media) is mode 0644: readable by group/others")
	os.Remove(key)
	f.expect("keys", check.Fail, "no such file")
	os.Chmod(f.conf, 0o777)
	f.expect("config-dir", check.Fail, "is world-writable (0777)")
	os.Chmod(f.conf, 0o755)
	os.Chmod(filepath.Join(f.conf, "keys"), 0o755)
	f.expect("config-dir", check.Warn, "others can list the key files")
	if os.Geteuid() == 0 {
		os.Chmod(filepath.Join(f.conf, "keys"), 0o700)
		os.Chown(filepath.Join(f.conf, "media.yaml"), 1000, 1000)
		f.expect("config-dir", check.Fail, "media.yaml is owned by uid 1000, not root")
	}
	// A key created at first start may be missing.
	f = newFake(t)
	f.namespace("gen", "  generatePrivateKeyFile: true\n")
	os.Remove(filepath.Join(f.conf, "keys", "gen.key"))
	f.expect("keys", check.OK, "no key files configured")
}

func TestRoutes(t *testing.T) {
	f := newFake(t)
	f.write(filepath.Join(f.conf, "lan.yaml"), fmt.Sprintf(`dns: {servers: [192.168.1.1]}
wireguard:
  privateKeyFile: /etc/k
  addresses: [10.64.0.2/32]
  peers:
    - publicKey: %s
      endpoint: 198.51.100.7:51820
      allowedIPs: [10.0.0.0/8, 192.168.0.0/16]
`, pub), 0o644)
	f.expect("routes", check.Warn, "lan: resolver 192.168.1.1 is in the host's local network 192.168.1.0/24 (eth0), but the namespace reaches it through the tunnel")
	f.expect("routes", check.Warn, "allowedIPs 192.168.0.0/16 overlaps the host's local network 192.168.1.0/24 (eth0)")
	// A static route of the host counts as a local network too.
	f.o.Host.Routes = func() ([]kstate.Route, error) {
		return []kstate.Route{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0", Gateway: "192.168.1.1"},
			{Dst: netip.MustParsePrefix("10.0.0.0/8"), Dev: "tun-site", Gateway: "192.168.1.254"},
		}, nil
	}
	f.expect("routes", check.Warn, "allowedIPs 10.0.0.0/8 overlaps the host's local network 10.0.0.0/8 (tun-site)")
	f.o.Host.RouteTo = func(string, netip.Addr) (kstate.Route, error) { return kstate.Route{Dev: "wg0"}, nil }
	f.expect("routes", check.Warn, "endpoint 198.51.100.7 is routed through wg0, another tunnel on the host")
	f.o.Host.RouteTo = func(string, netip.Addr) (kstate.Route, error) {
		return kstate.Route{}, errors.New("network is unreachable")
	}
	f.expect("routes", check.Fail, "no route from the host to endpoint 198.51.100.7: network is unreachable")
}

func TestHostLink(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "publishToHost: {tcp: [8080]}\nhostLink: {subnetIPv4: 169.254.10.0/30}\n")
	f.expect("host-link", check.OK, "free on the host: media 169.254.10.0/30")
	links := f.o.Host.Links
	f.o.Host.Links = func() ([]kstate.Link, error) {
		l, _ := links()
		return append(l, kstate.Link{Name: "eth1", Kind: "device", Addrs: []netip.Prefix{netip.MustParsePrefix("169.254.10.1/16")}}), nil
	}
	f.expect("host-link", check.Fail, "host-link subnet 169.254.10.0/30 collides with 169.254.10.1/16 on eth1")
	// Our own host side (tagged with the alias) is no collision...
	f.o.Host.Links = func() ([]kstate.Link, error) {
		l, _ := links()
		return append(l, kstate.Link{Name: "vh-x", Kind: "veth", Alias: "vpn-confinement:media", Addrs: []netip.Prefix{netip.MustParsePrefix("169.254.10.1/30")}}), nil
	}
	f.expect("host-link", check.OK, "free on the host")
	// ...but a foreign interface with the host-side name is.
	f.o.Host.Links = func() ([]kstate.Link, error) {
		l, _ := links()
		return append(l, kstate.Link{Name: "vh-" + derived(t, f), Kind: "veth"}), nil
	}
	f.expect("host-link", check.Fail, "is not this namespace's")
}

func TestPublishedPorts(t *testing.T) {
	f := newFake(t)
	f.namespace("media", "publish: [{listen: 127.0.0.1:8080}, {listen: \"0.0.0.0:9091\"}]\nservices: [{unit: app.service}]\n")
	listen := func(state uint8, v6 bool, addr string, inode uint32) sockdiag.Socket {
		return sockdiag.Socket{State: state, V6: v6, Local: netip.MustParseAddrPort(addr), Inode: inode}
	}
	socks := []sockdiag.Socket{listen(sockdiag.StateListen, false, "192.168.1.20:22", 1)}
	holders := map[uint32][]sockdiag.Holder{1: {{PID: 400, Comm: "sshd"}}}
	state := map[string]string{}
	f.o.Host.TCP = func() ([]sockdiag.Socket, error) { return socks, nil }
	f.o.Host.Holders = func([]uint32) map[uint32][]sockdiag.Holder { return holders }
	f.o.UnitStates = func([]string) (map[string]string, error) { return state, nil }
	f.expect("published-ports", check.OK, "127.0.0.1:8080 (free), 0.0.0.0:9091 (free)")
	// Our own sockets, listening.
	socks = append(socks, listen(sockdiag.StateListen, false, "127.0.0.1:8080", 2), listen(sockdiag.StateListen, false, "0.0.0.0:9091", 3))
	holders[2] = []sockdiag.Holder{{PID: 1, Comm: "systemd"}, {PID: 500, Comm: "systemd-socket-"}}
	holders[3] = []sockdiag.Holder{{PID: 1, Comm: "systemd"}}
	state["vpn-publish-media-8080.socket"], state["vpn-publish-media-9091.socket"] = "active", "active"
	f.expect("published-ports", check.OK, "127.0.0.1:8080 (vpn-publish-media-8080.socket), 0.0.0.0:9091 (vpn-publish-media-9091.socket)")
	// The web UI still runs on the host (before it was confined), on
	// every address: it takes 127.0.0.1:8080.
	state["vpn-publish-media-8080.socket"] = "failed"
	socks = []sockdiag.Socket{listen(sockdiag.StateListen, true, "[::]:8080", 7)}
	holders[7] = []sockdiag.Holder{{PID: 321, Comm: "qbittorrent-nox"}}
	f.expect("published-ports", check.Fail, "127.0.0.1:8080 (namespace media) is already in use by qbittorrent-nox (PID 321) listening on [::]:8080: vpn-publish-media-8080.socket cannot listen there")
	// Another systemd socket unit on the same address is not ours.
	socks = []sockdiag.Socket{listen(sockdiag.StateListen, false, "0.0.0.0:9091", 8)}
	holders[8] = []sockdiag.Holder{{PID: 1, Comm: "systemd"}}
	state["vpn-publish-media-9091.socket"] = "inactive"
	f.expect("published-ports", check.Fail, "0.0.0.0:9091 (namespace media) is already in use by systemd (PID 1) listening on 0.0.0.0:9091")
}

// derived returns the generated hostIf suffix of namespace media.
func derived(t *testing.T, f *fake) string {
	d := &doctor{o: f.o}
	d.loadConfig()
	return strings.TrimPrefix(d.plans[0].HostLink.HostIf, "vh-")
}

func TestInvalidConfig(t *testing.T) {
	f := newFake(t)
	f.write(filepath.Join(f.conf, "bad.yaml"), "dns: {mode: nope}\n", 0o644)
	f.expect("config", check.Fail, "bad.yaml (")
}

// TestThisMachine runs the real checks without probes: on the project's
// test machine there is no kernel WireGuard and systemd 252 lacks
// BPF_FRAMEWORK, and the report must say what that means.
func TestThisMachine(t *testing.T) {
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Skip("no systemctl")
	}
	p := paths.Default()
	p.ConfigDir = t.TempDir()
	o := Defaults(p, false)
	l := Run(o)
	var b bytes.Buffer
	l.WriteText(&b)
	t.Logf("doctor:\n%s", b.String())
	m := map[string]check.Check{}
	for _, c := range l {
		m[c.Name] = c
	}
	if _, err := os.Stat("/sys/module/wireguard"); err != nil {
		if w := m["wireguard"]; w.Result != check.OK || !strings.Contains(w.Detail, "userspace fallback") {
			t.Errorf("no kernel WireGuard here: the userspace fallback must be reported: %+v", w)
		}
	}
	v, err := systemd.InstalledVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m["systemd"].Detail, fmt.Sprint(v.Number)) {
		t.Errorf("systemd: %+v", m["systemd"])
	}
	if bpf, known := v.Features["BPF_FRAMEWORK"]; known && !bpf {
		c := m["bpf-framework"]
		for _, s := range []string{"SocketBindAllow=/SocketBindDeny=", "RestrictNetworkInterfaces=", "NOT enforced"} {
			if c.Result != check.Warn || !strings.Contains(c.Detail, s) {
				t.Errorf("-BPF_FRAMEWORK must be reported as not enforcing %s: %+v", s, c)
			}
		}
	}
}

// TestThisMachineProbes runs the kernel probes (throwaway namespaces) in
// the sandbox.
func TestThisMachineProbes(t *testing.T) {
	testutil.RequireSandbox(t)
	p := paths.Default()
	p.ConfigDir = t.TempDir()
	l := Run(Defaults(p, true))
	var b bytes.Buffer
	l.WriteText(&b)
	t.Logf("doctor:\n%s", b.String())
	m := map[string]check.Check{}
	for _, c := range l {
		m[c.Name] = c
	}
	if c := m["nftables"]; c.Result != check.OK {
		t.Errorf("nftables probe: %+v", c)
	}
	ok, err := ProbeKernelWireGuard()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		if c := m["wireguard"]; c.Result != check.OK || !strings.Contains(c.Detail, "creating a wireguard link fails") || !strings.Contains(c.Detail, "userspace fallback") {
			t.Errorf("wireguard: %+v", c)
		}
	}
}
