package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// iperf runs a TCP throughput test from namespace ns to addr and returns
// bits per second received by the server.
func iperf(ns, addr string, secs int) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "iperf3", "-c", addr, "-t", fmt.Sprint(secs), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v %s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

func medianF(xs []float64) (med, lo, hi float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

// allowListPlan builds an allowList namespace whose only reachable
// destination is server:5201, hidden among n random CIDRs and 100 ports.
func allowListPlan(n int, iface string) *plan.Namespace {
	rng := rand.New(rand.NewSource(int64(n)))
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.50.0.1/32")}
	for len(cidrs) < n {
		a := netip.AddrFrom4([4]byte{byte(100 + rng.Intn(100)), byte(rng.Intn(256)), byte(rng.Intn(256)), 0})
		cidrs = append(cidrs, netip.PrefixFrom(a, 24))
	}
	ports := []uint16{5201}
	for p := uint16(20000); len(ports) < 100; p++ {
		ports = append(ports, p)
	}
	return &plan.Namespace{Name: "fw", DNS: plan.DNS{Mode: plan.DNSStrict, Servers: []netip.Addr{netip.MustParseAddr("10.50.0.53")}},
		Egress:    plan.Egress{Mode: plan.EgressAllowList, AllowedCIDRs: cidrs, AllowedTCPPorts: ports, AllowEssentialICMP: true},
		WireGuard: plan.WireGuard{Interface: iface}}
}

// benchFirewallScale is P4: 10, 1,000 and 10,000 CIDRs × 100 ports — one
// transaction load time versus `nft -f` of the same ruleset, and TCP
// throughput through the namespace versus a 1-CIDR allowList.
func benchFirewallScale(repo, build string, rounds int) error {
	if err := sh(`ip netns add p4c; ip netns add p4s
ip -n p4c link set lo up; ip -n p4s link set lo up
ip link add wgfw netns p4c type veth peer name srv0 netns p4s
ip -n p4c addr add 10.50.0.2/24 dev wgfw; ip -n p4s addr add 10.50.0.1/24 dev srv0
ip -n p4c link set wgfw up; ip -n p4s link set srv0 up
ip netns exec p4s iperf3 -s -D -B 10.50.0.1`); err != nil {
		return err
	}
	defer sh("pkill -f 'iperf3 -s -D -B 10.50.0.1'; ip netns del p4c; ip netns del p4s")
	ns, err := netns.Open("/run/netns/p4c")
	if err != nil {
		return err
	}
	defer ns.Close()
	dir, _ := os.MkdirTemp("", "vpnc-p4-")
	defer os.RemoveAll(dir)
	secs := 2
	iters := max(5, rounds/4)
	for _, size := range []int{10, 1000, 10000} {
		big, small := firewall.Build(allowListPlan(size, "wgfw")), firewall.Build(allowListPlan(1, "wgfw"))
		rendered := filepath.Join(dir, "big.nft")
		os.WriteFile(rendered, []byte(big.Render()), 0o644)
		var ours, nft []time.Duration
		var tBig, tSmall []float64
		for r := 0; r < iters; r++ {
			// Load time into a fresh namespace: ours vs nft -f.
			fresh, err := netns.New()
			if err != nil {
				return err
			}
			t0 := time.Now()
			if err := firewall.Apply(fresh, big); err != nil {
				return err
			}
			ours = append(ours, time.Since(t0))
			fresh.Close()
			sh("ip netns add p4tmp")
			t0 = time.Now()
			if err := sh("ip netns exec p4tmp nft -f " + rendered); err != nil {
				return err
			}
			nft = append(nft, time.Since(t0))
			sh("ip netns del p4tmp")
			// Throughput with the big and the 1-CIDR ruleset, alternating.
			order := []struct {
				rs  *firewall.Ruleset
				out *[]float64
			}{{small, &tSmall}, {big, &tBig}}
			if r%2 == 1 { // alternate which runs first
				order[0], order[1] = order[1], order[0]
			}
			for _, c := range order {
				if err := firewall.Apply(ns, c.rs); err != nil {
					return err
				}
				bps, err := iperf("p4c", "10.50.0.1", secs)
				if err != nil {
					return err
				}
				*c.out = append(*c.out, bps)
			}
		}
		om, olo, ohi := stats(ours)
		nm, _, _ := stats(nft)
		add(Row{Measure: "P4", Case: fmt.Sprintf("load %d CIDRs × 100 ports (nft -f: %s)", size, fmtDur(nm)), Median: fmtDur(om), Spread: spread(olo, ohi),
			Ratio: fmt.Sprintf("%.1f× faster", float64(nm)/float64(om)), Goal: "one transaction", Verdict: "met",
			Note: fmt.Sprintf("%d merged ranges in one batch", big.Set(firewall.SetAllowedV4).Len())})
		bm, blo, bhi := medianF(tBig)
		sm, _, _ := medianF(tSmall)
		ratio := bm / sm
		add(Row{Measure: "P4", Case: fmt.Sprintf("TCP throughput, %d CIDRs vs 1", size), Median: fmt.Sprintf("%.2f Gbit/s", bm/1e9),
			Spread: fmt.Sprintf("%.2f–%.2f", blo/1e9, bhi/1e9), Ratio: fmt.Sprintf("%.1f %%", 100*ratio), Goal: "≥ 95 %", Verdict: verdict(ratio >= 0.95)})
	}
	return nil
}

// benchDataPath is P5: TCP throughput through the userspace WireGuard
// tunnel with our firewall loaded versus the same tunnel without it.
func benchDataPath(repo, build string, rounds int) error {
	dir, err := os.MkdirTemp("", "vpnc-p5-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	setup := fmt.Sprintf(`cd %[1]s
wg genkey > srv.key; wg pubkey < srv.key > srv.pub; wg genkey > cli.key; wg pubkey < cli.key > cli.pub
ip netns add p5srv; ip -n p5srv link set lo up
ip link add p5up type veth peer name srv0 netns p5srv
ip addr add 10.213.0.1/24 dev p5up; ip link set p5up up
ip -n p5srv addr add 10.213.0.2/24 dev srv0; ip -n p5srv link set srv0 up
WG_PROCESS_FOREGROUND=1 ip netns exec p5srv wireguard-go wgp5 >/dev/null 2>&1 & echo $! > srv.pid
for i in $(seq 200); do [ -S /run/wireguard/wgp5.sock ] && break; sleep 0.01; done
wg set wgp5 private-key srv.key listen-port 51820 peer $(cat cli.pub) allowed-ips 10.123.0.10/32
ip -n p5srv addr add 10.123.0.1/24 dev wgp5; ip -n p5srv link set wgp5 up
ip netns exec p5srv iperf3 -s -D -B 10.123.0.1`, dir)
	if err := sh(setup); err != nil {
		return err
	}
	defer sh(fmt.Sprintf("pkill -f 'iperf3 -s -D -B 10.123.0.1'; kill $(cat %s/srv.pid); ip netns del p5srv; ip link del p5up 2>/dev/null; true", dir))
	srvPub, _ := os.ReadFile(filepath.Join(dir, "srv.pub"))
	n := benchPlan("benchdp5", filepath.Join(dir, "cli.key"))
	n.WireGuard.Peers[0].PublicKey = strings.TrimSpace(string(srvPub))
	b, _ := n.Marshal()
	planPath := filepath.Join(dir, "plan.json")
	os.WriteFile(planPath, b, 0o644)
	rules := filepath.Join(dir, "rules.nft")
	os.WriteFile(rules, []byte(firewall.Build(n).Render()), 0o644)
	nsBin, _ := filepath.Abs(filepath.Join(build, "vpn-confinement-netns"))
	wgBin, _ := filepath.Abs(filepath.Join(build, "vpn-confinement-wireguard"))
	if out, err := exec.Command(nsBin, "-plan", planPath, "-state-dir", dir, "up", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("netns up: %v %s", err, out)
	}
	defer exec.Command(nsBin, "-plan", planPath, "-state-dir", dir, "down", n.Name).Run()
	notify, err := newNotify(dir)
	if err != nil {
		return err
	}
	defer notify.conn.Close()
	wg, err := startTunnel(wgBin, planPath, n.Name, notify)
	if err != nil {
		return err
	}
	defer func() { wg.Process.Signal(syscall.SIGTERM); wg.Wait() }()
	var with, without []float64
	measureWith := func() error {
		bps, err := iperf(n.Name, "10.123.0.1", 3)
		with = append(with, bps)
		return err
	}
	measureWithout := func() error {
		sh("ip netns exec " + n.Name + " nft delete table inet vpn_confinement")
		bps, err := iperf(n.Name, "10.123.0.1", 3)
		sh("ip netns exec " + n.Name + " nft -f " + rules)
		without = append(without, bps)
		return err
	}
	for r := 0; r < max(5, rounds/4); r++ {
		first, second := measureWith, measureWithout
		if r%2 == 1 { // alternate which runs first
			first, second = second, first
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	wm, wlo, whi := medianF(with)
	om, olo, ohi := medianF(without)
	add(Row{Measure: "P5", Case: "tunnel TCP throughput, no firewall", Median: fmt.Sprintf("%.0f Mbit/s", om/1e6), Spread: fmt.Sprintf("%.0f–%.0f", olo/1e6, ohi/1e6), Ratio: "100 %"})
	ratio := wm / om
	add(Row{Measure: "P5", Case: "tunnel TCP throughput, with our firewall", Median: fmt.Sprintf("%.0f Mbit/s", wm/1e6), Spread: fmt.Sprintf("%.0f–%.0f", wlo/1e6, whi/1e6),
		Ratio: fmt.Sprintf("%.1f %%", 100*ratio), Goal: "≥ 97 %", Verdict: verdict(ratio >= 0.97), Note: "userspace wireguard-go on both ends (no kernel module here); iperf3, 3 s per run, alternating"})
	return nil
}
