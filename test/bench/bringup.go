package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func init() {
	extraMeasures = append(extraMeasures,
		measure{name: "P2", title: "bring-up / teardown", root: true, run: benchBringup},
		measure{name: "P4", title: "firewall scale", root: true, run: benchFirewallScale},
		measure{name: "P5", title: "data path", root: true, run: benchDataPath},
		measure{name: "P3", title: "fail-closed reaction", root: true, run: benchReaction},
	)
}

// sh runs a shell command (test scaffolding and the reference-style
// baseline only; our helpers are exec'd directly).
func sh(script string) error {
	out, err := exec.Command("/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// benchPlan is a typical namespace: strict DNS, allowAllTunnel, one peer,
// userspace backend (this host has no WireGuard module).
func benchPlan(name, keyFile string) *plan.Namespace {
	return &plan.Namespace{
		Version: plan.Version, Name: name, Source: "/bench/" + name + ".yaml",
		DNS:    plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.123.0.1")}},
		Egress: plan.Egress{Mode: plan.EgressAllowAllTunnel, AllowEssentialICMP: true},
		WireGuard: plan.WireGuard{
			Interface: "wgb" + name[len(name)-1:], Backend: plan.BackendUserspace, AllowedIPsAsRoutes: true,
			PrivateKey: plan.KeySource{File: keyFile},
			Addresses:  []netip.Prefix{netip.MustParsePrefix("10.123.0.10/32")},
			Peers: []plan.Peer{{PublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
				Endpoint:   &plan.Endpoint{Host: "10.213.0.2", Port: 51820},
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
		},
	}
}

// notifySocket is a NOTIFY_SOCKET for the tunnel helper, so "up" ends
// exactly when it reports READY=1 (peers, addresses and routes exist).
type notifySocket struct {
	path string
	conn *net.UnixConn
}

func newNotify(dir string) (*notifySocket, error) {
	p := filepath.Join(dir, "notify.sock")
	os.Remove(p)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &notifySocket{path: p, conn: c}, nil
}

func (n *notifySocket) waitReady(d time.Duration) error {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for {
		n.conn.SetReadDeadline(deadline)
		k, err := n.conn.Read(buf)
		if err != nil {
			return fmt.Errorf("no READY=1: %w", err)
		}
		if strings.Contains(string(buf[:k]), "READY=1") {
			return nil
		}
	}
}

// startTunnel starts the tunnel helper and returns once it reported
// READY=1 (peers, addresses and routes exist); on failure nothing runs.
func startTunnel(bin, planPath, name string, notify *notifySocket) (*exec.Cmd, error) {
	wg := exec.Command(bin, "-plan", planPath, "run", name)
	wg.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.path)
	if err := wg.Start(); err != nil {
		return nil, err
	}
	if err := notify.waitReady(10 * time.Second); err != nil {
		wg.Process.Kill()
		wg.Wait()
		return nil, err
	}
	return wg, nil
}

func benchBringup(repo, build string, rounds int) error {
	dir, err := os.MkdirTemp("", "vpnc-bench-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key := filepath.Join(dir, "key")
	if err := sh("wg genkey > " + key); err != nil {
		return err
	}
	n := benchPlan("benchup1", key)
	b, _ := n.Marshal()
	planPath := filepath.Join(dir, "plan.json")
	os.WriteFile(planPath, b, 0o644)
	rules := filepath.Join(dir, "rules.nft")
	os.WriteFile(rules, []byte(firewall.Build(n).Render()), 0o644)
	nsBin, _ := filepath.Abs(filepath.Join(build, "vpn-confinement-netns"))
	wgBin, _ := filepath.Abs(filepath.Join(build, "vpn-confinement-wireguard"))
	notify, err := newNotify(dir)
	if err != nil {
		return err
	}
	defer notify.conn.Close()

	ours := func() (up, down time.Duration, err error) {
		t0 := time.Now()
		if out, err := exec.Command(nsBin, "-plan", planPath, "-state-dir", dir, "up", n.Name).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("netns up: %v %s", err, out)
		}
		wg, err := startTunnel(wgBin, planPath, n.Name, notify)
		if err != nil {
			return 0, 0, err
		}
		up = time.Since(t0)
		t1 := time.Now()
		wg.Process.Signal(syscall.SIGTERM)
		wg.Wait()
		exec.Command(wgBin, "-plan", planPath, "down", n.Name).Run()
		if out, err := exec.Command(nsBin, "-plan", planPath, "-state-dir", dir, "down", n.Name).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("netns down: %v %s", err, out)
		}
		return up, time.Since(t1), nil
	}
	// The reference module's way: a shell chain of ip/nft/wg commands,
	// wireguard-go created in the host namespace and moved in.
	shellUp := fmt.Sprintf(`ip netns add benchsh
ip -n benchsh link set lo up
nft -c -f %[1]s
ip netns exec benchsh nft delete table inet vpn_confinement 2>/dev/null || true
ip netns exec benchsh nft -f %[1]s
WG_PROCESS_FOREGROUND=1 wireguard-go wgsh >/dev/null 2>&1 &
echo $! > %[2]s/wg.pid
for i in $(seq 400); do [ -S /run/wireguard/wgsh.sock ] && break; sleep 0.005; done
wg set wgsh private-key %[3]s peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= endpoint 10.213.0.2:51820 allowed-ips 0.0.0.0/0
ip link set wgsh netns benchsh
ip -n benchsh addr add 10.123.0.10/32 dev wgsh
ip -n benchsh link set wgsh up
ip -n benchsh route add default dev wgsh`, rules, dir, key)
	shellDown := fmt.Sprintf(`ip netns exec benchsh nft delete table inet vpn_confinement 2>/dev/null || true
ip netns del benchsh
kill $(cat %[1]s/wg.pid); while kill -0 $(cat %[1]s/wg.pid) 2>/dev/null; do sleep 0.002; done`, dir)
	shell := func() (up, down time.Duration, err error) {
		t0 := time.Now()
		if err := sh(shellUp); err != nil {
			sh(shellDown)
			return 0, 0, err
		}
		up = time.Since(t0)
		t1 := time.Now()
		if err := sh(shellDown); err != nil {
			return 0, 0, err
		}
		return up, time.Since(t1), nil
	}
	var oursUp, oursDown, shUp, shDown []time.Duration
	for r := 0; r < rounds+1; r++ {
		u, d, err := ours()
		if err != nil {
			return err
		}
		su, sd, err := shell()
		if err != nil {
			return err
		}
		if r == 0 {
			continue // warm-up
		}
		oursUp, oursDown = append(oursUp, u), append(oursDown, d)
		shUp, shDown = append(shUp, su), append(shDown, sd)
	}
	for _, c := range []struct {
		what      string
		o, s      []time.Duration
		limit     time.Duration
		limitNote string
	}{
		{"up", oursUp, shUp, 4 * time.Millisecond, "~4 ms physical limit (perf-limit.md)"},
		{"down", oursDown, shDown, 28 * time.Millisecond, "~28 ms limit (TUN close waits in rcu_barrier)"},
	} {
		om, olo, ohi := stats(c.o)
		sm, slo, shi := stats(c.s)
		speedup := float64(sm) / float64(om)
		add(Row{Measure: "P2", Case: "reference shell chain, " + c.what, Median: fmtDur(sm), Spread: spread(slo, shi), Ratio: "1.00×"})
		ofLimit := float64(om) / float64(c.limit)
		add(Row{Measure: "P2", Case: "our helpers, " + c.what, Median: fmtDur(om), Spread: spread(olo, ohi),
			Ratio: fmt.Sprintf("%.1f× faster", speedup), Goal: "≥ 10× faster; ≤ 1.5× limit",
			Verdict: fmt.Sprintf("%s; %.1f× of limit", verdict(speedup >= 10 && ofLimit <= 1.5), ofLimit),
			Note:    fmt.Sprintf("%s; includes two helper process starts (netns + tunnel) and READY=1 over sd_notify", c.limitNote)})
	}
	return nil
}
