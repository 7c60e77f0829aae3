package ct

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The "stays up" harness: a real confined ticker service, faults of the
// tunnel, the provider and the uplink, and the evidence (ticks, unit
// state samples, timestamped captures).

// TickerUnit is a service that sends a TCP echo through the tunnel every
// 100 ms, forever, and logs each attempt with its own timestamp.
func TickerUnit(target string) string { return TickerUnitEvery(target, "100ms", "300ms") }

// TickerUnitEvery is TickerUnit with another period and per-attempt
// timeout (the benchmarks tick every 10 ms).
func TickerUnitEvery(target, every, timeout string) string {
	return fmt.Sprintf("[Unit]\nDescription=confined ticker\n[Service]\nExecStart=/usr/local/bin/vpnc-probe -timeout %s tick %s %s\nDynamicUser=yes\n", timeout, every, target)
}

// Tick is one attempt of the ticker.
type Tick struct {
	At   time.Time // the attempt started
	OK   bool
	Took time.Duration // until the echo came back (or the attempt failed)
}

// Ticks reads every tick unit has logged (its journal).
func (c *Container) Ticks(unit string) []Tick {
	r := c.Run("journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit)
	var out []Tick
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "TICK" {
			continue
		}
		ms, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		k := Tick{At: time.UnixMilli(ms), OK: f[2] == "ok"}
		if len(f) > 3 {
			took, _ := strconv.Atoi(f[3])
			k.Took = time.Duration(took) * time.Millisecond
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// FirstOK returns the first successful tick at or after t.
func FirstOK(ticks []Tick, t time.Time) (time.Time, bool) {
	for _, k := range ticks {
		if k.OK && !k.At.Before(t) {
			return k.At, true
		}
	}
	return time.Time{}, false
}

// LastOKBefore returns the last successful tick before t.
func LastOKBefore(ticks []Tick, t time.Time) (time.Time, bool) {
	var last time.Time
	for _, k := range ticks {
		if !k.At.Before(t) {
			break
		}
		if k.OK {
			last = k.At
		}
	}
	return last, !last.IsZero()
}

// WaitTickOK waits until unit logged a successful tick at or after t.
func (c *Container) WaitTickOK(unit string, t time.Time, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		if at, ok := FirstOK(c.Ticks(unit), t); ok {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ProviderSilent makes the provider's WireGuard server drop everything
// (on) or answer again (off), with nftables in the provider namespace: the
// server process lives on, it just never answers.
func (c *Container) ProviderSilent(on bool) error {
	script := fmt.Sprintf(`ip netns exec vpnsrv nft -f - <<'EOF'
table inet vpnc_silent {
	chain in { type filter hook input priority -10; policy accept; udp dport %[1]d counter drop; }
	chain out { type filter hook output priority -10; policy accept; udp sport %[1]d counter drop; }
}
EOF`, WGPort)
	if !on {
		script = "ip netns exec vpnsrv nft delete table inet vpnc_silent"
	}
	if r := c.Sh(script); r.Code != 0 {
		return fmt.Errorf("provider silent=%v: %s", on, r)
	}
	return nil
}

// Uplink sets the host's end of the uplink veth up or down.
func (c *Container) Uplink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if r := c.Run("ip", "link", "set", UplinkIf, state); r.Code != 0 {
		return fmt.Errorf("uplink %s: %s", state, r)
	}
	return nil
}

// Sample is a unit's state at one moment.
type Sample struct {
	At                          time.Time
	PID                         int
	Active, Sub, Freezer, Extra string
}

// Sampler records a unit's MainPID, ActiveState, SubState and
// FreezerState every 50 ms from inside the container (a transient unit).
type Sampler struct {
	c    *Container
	unit string
	name string
	file string
}

// StartSampler starts sampling unit.
func (c *Container) StartSampler(name, unit string) (*Sampler, error) {
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	s := &Sampler{c: c, unit: unit, name: "vpnc-sampler-" + name, file: "/run/vpnc-test/sampler-" + name + ".log"}
	// systemctl show prints properties in its own order: key=value.
	script := fmt.Sprintf(`while :; do t=$(date +%%s%%3N); echo "$t $(systemctl show -p MainPID -p ActiveState -p SubState -p FreezerState %s | tr '\n' ' ')"; sleep 0.05; done >> %s`, unit, s.file)
	if r := c.Run("systemd-run", "--quiet", "--unit="+s.name, "/bin/sh", "-c", script); r.Code != 0 {
		return nil, fmt.Errorf("start sampler: %s", r)
	}
	return s, nil
}

// Stop ends sampling.
func (s *Sampler) Stop() { s.c.Run("systemctl", "stop", s.name) }

// Samples returns what was sampled so far.
func (s *Sampler) Samples() []Sample {
	b, _ := s.c.ReadFile(s.file)
	var out []Sample
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		ms, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		kv := map[string]string{}
		for _, x := range f[1:] {
			k, v, _ := strings.Cut(x, "=")
			kv[k] = v
		}
		pid, _ := strconv.Atoi(kv["MainPID"])
		out = append(out, Sample{At: time.UnixMilli(ms), PID: pid, Active: kv["ActiveState"], Sub: kv["SubState"], Freezer: kv["FreezerState"]})
	}
	return out
}

// Between returns the samples in [from, to).
func Between(ss []Sample, from, to time.Time) []Sample {
	var out []Sample
	for _, s := range ss {
		if !s.At.Before(from) && s.At.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// Packet is one captured packet with its capture time.
type Packet struct {
	At   time.Time
	Line string
}

// StopTimed ends a capture and returns every packet with its time
// (tcpdump -tt), without any filtering.
func (cp *Capture) StopTimed() []Packet {
	time.Sleep(300 * time.Millisecond)
	cp.c.Run("systemctl", "stop", cp.unit)
	r := cp.c.Run("tcpdump", "-tt", "-n", "-r", cp.file)
	var out []Packet
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, Packet{At: time.UnixMicro(int64(sec * 1e6)), Line: l})
	}
	return out
}

// JournalSince returns the journal lines of unit since t (short-precise).
func (c *Container) JournalSince(unit string, since time.Time) string {
	return c.Run("journalctl", "--no-pager", "-q", "-o", "short-precise", "-u", unit, "--since", "@"+strconv.FormatInt(since.Unix(), 10)).Stdout
}

// Prop returns one property of a unit.
func (c *Container) Prop(unit, prop string) string {
	return strings.TrimSpace(c.Run("systemctl", "show", "-P", prop, unit).Stdout)
}
