//go:build linux

// Package testnet builds real-packet test topologies inside test/sandbox.sh
// for the tests of any package: the sandbox's own namespace plays the host
// (the socket birthplace), a server namespace plays the VPN provider with a
// userspace WireGuard peer (Debian's wireguard-go binary) and vpnc-testpeer
// (DNS + echo), joined by an "internet" veth:
//
//	host (sandbox ns)  10.213.0.1/24 ──veth── 10.213.0.2/24  server ns
//	                                                     wg: 10.123.0.1/24, 10.123.0.99/24, fd00:123::1/64
//	client (confined ns, made by the test): wg 10.123.0.2/32 via endpoint 10.213.0.2:51820
//
// Every process it starts is recorded and killed by PID in t.Cleanup, and
// every namespace and link it creates is removed. Topologies in concurrently
// running test binaries of one sandbox share the host namespace, so New
// holds a lock (an flock on /run) until the test ends.
package testnet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

// Addresses of the topology.
var (
	HostUplink   = netip.MustParsePrefix("10.213.0.1/24")
	SrvUplink    = netip.MustParsePrefix("10.213.0.2/24")
	SrvUplink2   = netip.MustParsePrefix("10.213.0.3/24")  // AddServerAddress: a second provider address
	SrvTunnel    = netip.MustParsePrefix("10.123.0.1/24")  // resolver + echo
	SrvOther     = netip.MustParsePrefix("10.123.0.99/24") // a resolver the client is NOT configured to use
	SrvTunnel6   = netip.MustParsePrefix("fd00:123::1/64")
	ClientAddr   = netip.MustParsePrefix("10.123.0.2/32")
	ClientAddr6  = netip.MustParsePrefix("fd00:123::2/128")
	DNSAnswer    = netip.MustParseAddr("10.123.0.77")
	WGPort       = uint16(51820)
	EchoPort     = uint16(7)
	DNSPorts     = []uint16{53, 853, 5353, 5355}
	lockPath     = "/run/vpnc-testnet.lock"
	uapiDir      = "/var/run/wireguard"
	readyTimeout = 10 * time.Second
)

// Topology is one server namespace with its WireGuard peer and services,
// and the plan of the client side.
type Topology struct {
	// Name is the client (confined) namespace; /run/netns/Name is NOT
	// created by New: the test makes it (namespace.Up or ConfinedNS).
	Name string
	// Server is the server namespace, pinned at /run/netns/Server.
	Server   string
	ServerNS *netns.NetNS
	// HostIf and SrvIf are the two ends of the "internet" veth.
	HostIf, SrvIf string
	// ServerIf is the server's WireGuard interface (in Server).
	ServerIf string
	// ServerKey and ClientKey are the key pairs' private halves.
	ServerKey, ClientKey wgtypes.Key
	// Plan is the client namespace's plan: userspace backend, endpoint
	// 10.213.0.2:51820, AllowedIPs 0.0.0.0/0, address 10.123.0.2/32,
	// strict DNS 10.123.0.1. Tests may edit it before using it.
	Plan *plan.Namespace
	// Dir holds keys, logs and plan files.
	Dir string
	// DNSLog and EchoLog are vpnc-testpeer's logs.
	DNSLog, EchoLog string

	t       testing.TB
	pids    []int
	outputs []string
}

// Lock serializes tests that use the sandbox's host namespace (addresses,
// veths) across test binaries running at the same time; released at the
// end of the test.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", lockPath, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the flock
}

// Suffix returns a short random hex string for unique names.
func Suffix() string {
	var b [3]byte
	f, err := os.Open("/dev/urandom")
	if err == nil {
		f.Read(b[:])
		f.Close()
	}
	return fmt.Sprintf("%02x%02x%02x", b[0], b[1], b[2])
}

// New builds the server side. It skips unless running in the sandbox.
func New(t *testing.T) *Topology {
	t.Helper()
	testutil.RequireSandbox(t)
	Lock(t)
	sfx := Suffix()
	tp := &Topology{
		t:        t,
		Name:     "vc" + sfx,
		Server:   "vs" + sfx,
		HostIf:   "th" + sfx,
		SrvIf:    "ts" + sfx,
		ServerIf: "wgs" + sfx,
		Dir:      t.TempDir(),
	}
	t.Cleanup(tp.cleanup)
	tp.DNSLog = filepath.Join(tp.Dir, "dns.log")
	tp.EchoLog = filepath.Join(tp.Dir, "echo.log")
	var err error
	if tp.ServerKey, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	if tp.ClientKey, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	tp.makeServerNS()
	tp.startServerWG()
	tp.startPeer()
	tp.Plan = tp.clientPlan()
	return tp
}

func (tp *Topology) makeServerNS() {
	t := tp.t
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	tp.ServerNS = ns
	if err := ns.Pin(plan.NetnsPath(tp.Server)); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tp.HostIf}, PeerName: tp.SrvIf,
		PeerNamespace: netlink.NsFd(ns.Fd())}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	host, err := netlink.LinkByName(tp.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	must(t, netlink.AddrAdd(host, addr(HostUplink)))
	must(t, netlink.LinkSetUp(host))
	h := tp.ServerHandle()
	srv, err := h.LinkByName(tp.SrvIf)
	if err != nil {
		t.Fatal(err)
	}
	must(t, h.AddrAdd(srv, addr(SrvUplink)))
	must(t, h.LinkSetUp(srv))
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	must(t, h.LinkSetUp(lo))
}

// ServerHandle returns a netlink handle in the server namespace (closed at
// the end of the test).
func (tp *Topology) ServerHandle() *netlink.Handle {
	tp.t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(tp.ServerNS.Fd()))
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(h.Close)
	return h
}

// AddServerAddress adds p (e.g. SrvUplink2) to the server's uplink.
func (tp *Topology) AddServerAddress(p netip.Prefix) {
	tp.t.Helper()
	h := tp.ServerHandle()
	l, err := h.LinkByName(tp.SrvIf)
	if err != nil {
		tp.t.Fatal(err)
	}
	must(tp.t, h.AddrAdd(l, addr(p)))
}

func (tp *Topology) startServerWG() {
	t := tp.t
	cmd := exec.Command("ip", "netns", "exec", tp.Server, "wireguard-go", "-f", tp.ServerIf)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	tp.start(cmd, "wireguard-go")
	sock := filepath.Join(uapiDir, tp.ServerIf+".sock")
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "server UAPI socket "+sock)
	port := int(WGPort)
	keepalive := time.Duration(0)
	tp.ConfigureServer(wgtypes.Config{
		PrivateKey:   &tp.ServerKey,
		ListenPort:   &port,
		ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{{
			PublicKey:                   tp.ClientKey.PublicKey(),
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  []net.IPNet{ipNet(ClientAddr), ipNet(ClientAddr6)},
			PersistentKeepaliveInterval: &keepalive,
		}},
	})
	h := tp.ServerHandle()
	l, err := h.LinkByName(tp.ServerIf)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{SrvTunnel, SrvOther, SrvTunnel6} {
		a := addr(p)
		a.Flags = 0
		if p.Addr().Is6() {
			a.Flags = 0x80 // IFA_F_NODAD: usable at once
		}
		must(t, h.AddrAdd(l, a))
	}
	must(t, h.LinkSetUp(l))
}

// ConfigureServer applies cfg to the server's WireGuard device.
func (tp *Topology) ConfigureServer(cfg wgtypes.Config) {
	tp.t.Helper()
	c, err := wgctrl.New()
	if err != nil {
		tp.t.Fatal(err)
	}
	defer c.Close()
	if err := c.ConfigureDevice(tp.ServerIf, cfg); err != nil {
		tp.t.Fatalf("configure server %s: %v", tp.ServerIf, err)
	}
}

// ServerPeer returns the server's view of the client peer.
func (tp *Topology) ServerPeer() wgtypes.Peer {
	tp.t.Helper()
	c, err := wgctrl.New()
	if err != nil {
		tp.t.Fatal(err)
	}
	defer c.Close()
	d, err := c.Device(tp.ServerIf)
	if err != nil {
		tp.t.Fatalf("read server device: %v", err)
	}
	for _, p := range d.Peers {
		if p.PublicKey == tp.ClientKey.PublicKey() {
			return p
		}
	}
	tp.t.Fatal("server has no client peer")
	return wgtypes.Peer{}
}

func (tp *Topology) startPeer() {
	t := tp.t
	bin := Binary(t, "vpnc-testpeer", "./test/testpeer")
	ready := filepath.Join(tp.Dir, "peer.ready")
	var dns []string
	for _, p := range DNSPorts {
		dns = append(dns, fmt.Sprintf(":%d", p))
	}
	echo := fmt.Sprintf(":%d", EchoPort)
	cmd := exec.Command("ip", "netns", "exec", tp.Server, bin,
		"-dns", strings.Join(dns, ","), "-tcp-echo", echo, "-udp-echo", echo,
		"-answer", DNSAnswer.String(), "-log", tp.DNSLog, "-echo-log", tp.EchoLog, "-ready", ready)
	tp.start(cmd, "vpnc-testpeer")
	waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, "vpnc-testpeer ready")
}

// start runs cmd, records its PID for the cleanup and sends its output to
// Dir/NAME.out (shown when the test fails).
func (tp *Topology) start(cmd *exec.Cmd, name string) {
	tp.t.Helper()
	out, err := os.OpenFile(filepath.Join(tp.Dir, name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		tp.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		tp.t.Fatalf("start %s: %v", name, err)
	}
	out.Close()
	tp.pids = append(tp.pids, cmd.Process.Pid)
	tp.outputs = append(tp.outputs, out.Name())
	go cmd.Wait() // reap; the PID stays recorded for the cleanup
}

// Start runs cmd like the topology's own processes: PID recorded, killed
// and reaped at the end of the test.
func (tp *Topology) Start(cmd *exec.Cmd, name string) { tp.start(cmd, name) }

func (tp *Topology) clientPlan() *plan.Namespace {
	keyFile := filepath.Join(tp.Dir, "client.key")
	if err := os.WriteFile(keyFile, []byte(tp.ClientKey.String()+"\n"), 0o600); err != nil {
		tp.t.Fatal(err)
	}
	return &plan.Namespace{
		Version:         plan.Version,
		Name:            tp.Name,
		SecurityProfile: "baseline",
		DNS:             plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{SrvTunnel.Addr()}},
		Egress:          plan.Egress{Mode: plan.EgressAllowAllTunnel},
		WireGuard: plan.WireGuard{
			Interface:          "wgc" + tp.Name[2:],
			Backend:            plan.BackendUserspace,
			PrivateKey:         plan.KeySource{File: keyFile},
			Addresses:          []netip.Prefix{ClientAddr},
			AllowedIPsAsRoutes: true,
			Peers: []plan.Peer{{
				PublicKey:  tp.ServerKey.PublicKey().String(),
				Endpoint:   &plan.Endpoint{Host: SrvUplink.Addr().String(), Port: WGPort},
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			}},
		},
	}
}

// WritePlan writes tp.Plan where a helper binary finds it with -plan.
func (tp *Topology) WritePlan() string {
	tp.t.Helper()
	b, err := tp.Plan.Marshal()
	if err != nil {
		tp.t.Fatal(err)
	}
	p := filepath.Join(tp.Dir, tp.Name+".json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tp.t.Fatal(err)
	}
	return p
}

// ConfinedNS creates /run/netns/Name as a bare namespace (lo up, no
// firewall) for tests of the tunnel alone; removed at the end of the test.
func (tp *Topology) ConfinedNS() *netns.NetNS {
	tp.t.Helper()
	ns, err := netns.New()
	if err != nil {
		tp.t.Fatal(err)
	}
	path := plan.NetnsPath(tp.Name)
	if err := ns.Pin(path); err != nil {
		ns.Close()
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() {
		netns.Unpin(path)
		ns.Close()
	})
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.Fd()))
	if err != nil {
		tp.t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		tp.t.Fatal(err)
	}
	must(tp.t, h.LinkSetUp(lo))
	return ns
}

func (tp *Topology) cleanup() {
	if tp.t.Failed() {
		for _, o := range tp.outputs {
			if b, err := os.ReadFile(o); err == nil && len(b) > 0 {
				tp.t.Logf("output of %s:\n%s", filepath.Base(o), b)
			}
		}
	}
	for _, pid := range tp.pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// Give the kernel a moment to reap and tear down the TUN.
	for _, pid := range tp.pids {
		for i := 0; i < 100; i++ {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if l, err := netlink.LinkByName(tp.HostIf); err == nil {
		netlink.LinkDel(l)
	}
	netns.Unpin(plan.NetnsPath(tp.Server))
	if tp.ServerNS != nil {
		tp.ServerNS.Close()
	}
	os.Remove(filepath.Join(uapiDir, tp.ServerIf+".sock"))
}

// Query is one line of the DNS log; Echo one line of the echo log.
type Query struct {
	Server string `json:"server"`
	Client string `json:"client"`
	Proto  string `json:"proto"`
	QName  string `json:"qname"`
}

// Queries returns the DNS queries the server saw.
func (tp *Topology) Queries() []Query { return readLog[Query](tp.t, tp.DNSLog) }

// Echoes returns the echo requests the server saw (QName empty).
func (tp *Topology) Echoes() []Query { return readLog[Query](tp.t, tp.EchoLog) }

func readLog[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e T
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, e)
	}
	return out
}

// Exec runs `ip netns exec NS args...` and returns combined output.
func Exec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

var (
	binMu  sync.Mutex
	binDir string
	bins   = map[string]string{}
)

// Binary builds package pkg (relative to the repository root) once per
// test binary and returns the path. The directory is on the sandbox's
// tmpfs /run, so it vanishes with the sandbox.
func Binary(t testing.TB, name, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := bins[pkg]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("/run", "vpnc-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	p := filepath.Join(binDir, name)
	cmd := exec.Command("go", "build", "-o", p, pkg)
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	bins[pkg] = p
	return p
}

func waitFor(t testing.TB, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitFor polls ok every 10 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func addr(p netip.Prefix) *netlink.Addr {
	n := ipNet(p)
	return &netlink.Addr{IPNet: &n}
}

func ipNet(p netip.Prefix) net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
