// Command vpnc-demo is `make demo`: it boots a throwaway systemd container,
// installs the built tool the way `make install` does, brings up a
// confinement namespace against a local test VPN provider, runs a confined
// service and shows what a user wants to see — egress through the tunnel,
// DNS pinned, the kill switch holding when the tunnel drops — then tears
// everything down. It must run inside test/sandbox.sh (the Makefile does
// that), so nothing touches the host's network.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

var failed bool

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func check(ok bool, format string, args ...any) {
	mark := "  [ok]  "
	if !ok {
		mark, failed = "  [FAIL]", true
	}
	fmt.Printf(mark+" "+format+"\n", args...)
}

func show(s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Println("        " + l)
	}
}

func main() {
	repo := flag.String("repo", ".", "repository root")
	build := flag.String("build", "build", "build dir (make build B=...)")
	tools := flag.String("tools", "build", "dir with vpnc-probe and vpnc-testpeer")
	flag.Parse()
	if os.Getenv("VPNC_SANDBOX") != "1" {
		fmt.Fprintln(os.Stderr, "vpnc-demo: run it through `make demo` (inside test/sandbox.sh)")
		os.Exit(2)
	}
	if err := run(*repo, *build, *tools); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
	if failed {
		fmt.Println("\nSome checks FAILED.")
		os.Exit(1)
	}
	fmt.Println("\nAll checks passed; the container and everything in it are gone.")
}

func run(repo, build, tools string) error {
	step("Booting systemd as PID 1 in a throwaway container")
	t0 := time.Now()
	c, err := ct.Start(filepath.Join(repo, "test", "e2e"), "demo", nil)
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Printf("        %s in %v\n", strings.TrimSpace(c.Run("systemctl", "--version").Stdout[:12]), time.Since(t0).Round(time.Millisecond))
	if err := c.Install(repo, build, filepath.Join(tools, "vpnc-probe"), filepath.Join(tools, "vpnc-testpeer")); err != nil {
		return err
	}
	fmt.Println("        installed with `make install` (generator, helpers, vpn-ns@/vpn-wg@/vpn-pin@ templates)")

	step("A local test VPN provider: userspace WireGuard peer, DNS resolvers and echo servers behind a veth \"internet\"")
	w, err := c.SetupWorld("demo")
	if err != nil {
		return err
	}
	p := w.Peers["demo"]
	fmt.Printf("        provider endpoint %s:%d, tunnel resolver %s, another resolver %s\n", ct.SrvUplink, ct.WGPort, ct.SrvTunnel, ct.SrvOtherNS)

	step("An admin drops /etc/vpn-confinement.d/demo.yaml and runs systemctl daemon-reload")
	c.WriteFile("/etc/systemd/system/torrent.service", []byte("[Unit]\nDescription=an ordinary service to confine\n[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"), 0o644)
	yaml := w.NamespaceYAML(p, "wgdemo", "services:\n  - unit: torrent.service\n")
	if err := w.InstallNamespace(p, yaml); err != nil {
		return err
	}
	show(strings.ReplaceAll(yaml, p.Private, "(key in keys/demo.key)"))
	c.Run("systemctl", "daemon-reload")
	di := c.Run("systemctl", "cat", "torrent.service").Stdout
	check(strings.Contains(di, "NetworkNamespacePath=/run/netns/demo"), "the generator added a drop-in to torrent.service (systemctl cat):")
	for _, l := range strings.Split(di, "\n") {
		if strings.HasPrefix(l, "NetworkNamespacePath") || strings.HasPrefix(l, "BindsTo") || strings.HasPrefix(l, "BindReadOnlyPaths") || strings.HasPrefix(l, "CapabilityBoundingSet") {
			show(l)
		}
	}

	step("systemctl start torrent.service (pulls in vpn-ns@demo and vpn-wg@demo)")
	t1 := time.Now()
	r := c.Run("systemctl", "start", "torrent.service")
	check(r.Code == 0 && c.Active("torrent.service") == "active", "torrent.service active after %v", time.Since(t1).Round(time.Millisecond))
	pid := c.MainPID("torrent.service")
	check(c.NetnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)) == c.NetnsInode("/run/netns/demo"), "its network namespace is /run/netns/demo")
	show(c.Run("ip", "-n", "demo", "-br", "addr").Stdout)

	step("Egress goes through the tunnel")
	ok, res := c.Probe("torrent.service", "tcp", ct.SrvTunnel+":7")
	check(ok, "TCP to %s:7 through the tunnel: %s", ct.SrvTunnel, strings.TrimSpace(res.Stdout))
	hs := c.Run("wg", "show", "wgdemo", "latest-handshakes").Stdout
	check(strings.TrimSpace(hs) != "", "WireGuard handshake done (%s)", strings.TrimSpace(hs))
	log := w.EchoLog()
	check(strings.Contains(log, `"client":"`+p.Address+`:`), "the provider saw the connection come from the tunnel address %s", p.Address)
	hostOK := c.Run("/usr/local/bin/vpnc-probe", "tcp", ct.HostUplink+":7").Code == 0
	ok, _ = c.Probe("torrent.service", "tcp", ct.HostUplink+":7")
	check(hostOK && !ok, "a server on the host's own uplink (%s:7) answers the host but not the confined service", ct.HostUplink)

	step("DNS is pinned to the tunnel's resolver")
	rc := c.Run("nsenter", "-t", fmt.Sprint(pid), "-m", "cat", "/etc/resolv.conf").Stdout
	check(strings.Contains(rc, "nameserver "+ct.SrvTunnel), "the service's /etc/resolv.conf:")
	show(rc)
	ok, _ = c.Probe("torrent.service", "resolve", "example.org")
	check(ok, "name resolution works (through %s)", ct.SrvTunnel)
	for _, target := range []string{"udp " + ct.SrvOtherNS + ":53", "tcp " + ct.SrvOtherNS + ":853", "udp " + ct.SrvUplink + ":53"} {
		f := strings.Fields(target)
		ok, _ = c.Probe("torrent.service", "dns", f[0], f[1], "leak.example")
		check(!ok, "DNS to %s is blocked", target)
	}

	step("The kill switch holds while the tunnel is down; the service stays up (onTunnelLoss: block)")
	cp, err := c.StartCapture("demo")
	if err != nil {
		return err
	}
	pid0 := c.MainPID("torrent.service")
	c.Run("systemctl", "stop", "vpn-wg@demo.service")
	check(c.Active("torrent.service") == "active" && c.MainPID("torrent.service") == pid0, "tunnel stopped → torrent.service keeps running (PID %d)", pid0)
	blocked, res := c.ProbeWith(ct.ProbeOpts{Unit: "torrent.service", NoStart: true}, "tcp", ct.SrvTunnel+":7")
	check(!blocked, "from inside the service nothing gets out without the tunnel: %s", strings.TrimSpace(res.Stdout))
	probe := c.Run("ip", "netns", "exec", "demo", "/usr/local/bin/vpnc-probe", "-timeout", "1s", "tcp", ct.SrvUplink+":7")
	check(probe.Code != 0, "inside the namespace nothing gets out without the tunnel: %s", strings.TrimSpace(probe.Stdout))
	c.Run("systemctl", "start", "vpn-wg@demo.service")
	ok, _ = c.Probe("torrent.service", "tcp", ct.SrvTunnel+":7")
	check(ok, "tunnel started again → the same service's traffic flows again, no restart")

	step("A crashed tunnel comes back by itself")
	t1 = time.Now()
	c.Run("systemctl", "kill", "-s", "KILL", "vpn-wg@demo.service")
	back := false
	for time.Since(t1) < 15*time.Second && !back {
		back, _ = c.ProbeWith(ct.ProbeOpts{Unit: "torrent.service", NoStart: true}, "tcp", ct.SrvTunnel+":7")
	}
	check(back && c.MainPID("torrent.service") == pid0, "tunnel process killed → traffic back after %v, torrent.service never stopped (PID %d)", time.Since(t1).Round(10*time.Millisecond), c.MainPID("torrent.service"))
	pkts := cp.Stop()
	check(len(pkts) == 0 && cp.ControlSeen, "packets on the uplink outside the WireGuard flow meanwhile: %d (the capture's control packet was seen: %v)", len(pkts), cp.ControlSeen)

	step("Tearing down")
	return nil
}
