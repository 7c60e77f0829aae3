package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// genFixture writes a config dir of n namespaces with s services each.
func genFixture(dir string, n, s int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var svcs string
		for j := 0; j < s; j++ {
			svcs += fmt.Sprintf("  - unit: app-%d-%d.service\n", i, j)
		}
		y := fmt.Sprintf(`dns:
  servers: [10.64.0.1]
publishToHost:
  tcp: [8080]
egress:
  mode: allowList
  allowedCidrs: [10.0.0.0/8, 192.0.2.0/24]
  allowedTcpPorts: [443]
wireguard:
  interface: wg%d
  privateKeyFile: /etc/vpn-confinement.d/keys/ns%d.key
  addresses: [10.%d.%d.2/32]
  peers:
    - publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0]
services:
%s`, i, i, 64+i/256%64, i%256, svcs)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ns%d.yaml", i)), []byte(y), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchGenerator is P1: the generator runs on every boot and daemon-reload.
func benchGenerator(build string, rounds int) {
	bin, _ := filepath.Abs(filepath.Join(build, "vpn-confinement-generator"))
	// /run/systemd/generator is a tmpfs; measure on one too (/dev/shm).
	tmp, err := os.MkdirTemp("/dev/shm", "vpnc-bench-gen-")
	if err != nil {
		add(Row{Measure: "P1", Case: "generator", Verdict: "error: " + err.Error()})
		return
	}
	defer os.RemoveAll(tmp)
	cases := []struct {
		name string
		n, s int
	}{{"1 ns × 1 service", 1, 1}, {"100 ns × 10 services", 100, 10}, {"1000 ns × 1 service", 1000, 1}}
	times := make([][]time.Duration, len(cases))
	for i, c := range cases {
		if err := genFixture(filepath.Join(tmp, fmt.Sprint(i)), c.n, c.s); err != nil {
			add(Row{Measure: "P1", Case: c.name, Verdict: "error: " + err.Error()})
			return
		}
	}
	run := func(i int, out string) (time.Duration, error) {
		os.RemoveAll(out)
		cmd := exec.Command(bin, "-no-kmsg", out)
		cmd.Env = append(os.Environ(), "VPN_CONFINEMENT_CONFIG_DIR="+filepath.Join(tmp, fmt.Sprint(i)),
			"VPN_CONFINEMENT_UNIT_PATH=/nonexistent", "VPN_CONFINEMENT_STATE_DIR=/nonexistent")
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %s", err, out)
		}
		return time.Since(t0), nil
	}
	for r := 0; r < rounds+2; r++ {
		for i := range cases {
			d, err := run(i, filepath.Join(tmp, "out"))
			if err != nil {
				add(Row{Measure: "P1", Case: cases[i].name, Verdict: "error: " + err.Error()})
				return
			}
			if r >= 2 { // two warm-up rounds (page cache, binary loading)
				times[i] = append(times[i], d)
			}
		}
	}
	base, _, _ := stats(times[0])
	for i, c := range cases {
		med, lo, hi := stats(times[i])
		ratio := float64(med) / float64(base)
		row := Row{Measure: "P1", Case: "generator " + c.name, Median: fmtDur(med), Spread: spread(lo, hi), Ratio: fmt.Sprintf("%.2f×", ratio)}
		switch i {
		case 1:
			row.Goal = "≤ 3× of 1×1"
			row.Verdict = verdict(ratio <= 3)
		case 2:
			row.Goal = "(growth)"
			row.Note = fmt.Sprintf("%.1f µs per namespace above the 1×1 cost", float64(med-base)/1000/float64(c.n-1))
		}
		add(row)
	}
}
