package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// tick is the body of the e2e tests' ticker service: a TCP echo through
// the tunnel every period, forever, one line per attempt with the probe's
// own wall-clock timestamp (so recovery times do not depend on when the
// journal stored the line).
func tick(period, addr string, timeout time.Duration) {
	every, err := time.ParseDuration(period)
	if err != nil || every <= 0 {
		fmt.Fprintln(os.Stderr, "tick: bad period:", period)
		os.Exit(2)
	}
	for {
		start := time.Now()
		err := tcpEcho(addr, timeout)
		took := time.Since(start)
		if err != nil {
			fmt.Printf("TICK %d fail %d %v\n", start.UnixMilli(), took.Milliseconds(), err)
		} else {
			fmt.Printf("TICK %d ok %d\n", start.UnixMilli(), took.Milliseconds())
		}
		if d := every - took; d > 0 {
			time.Sleep(d)
		}
	}
}

type target struct {
	name, kind, addr string
	ok, fail         int
	firstOK, lastOK  time.Time
}

// loop tries every target in turn, as fast as each answers or times
// out, for the given duration, and prints one line per target:
// "NAME ok=N fail=M firstok=UNIXMS lastok=UNIXMS".
func loop(dur string, specs []string, timeout time.Duration) {
	d, err := time.ParseDuration(dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loop: bad duration:", dur)
		os.Exit(2)
	}
	var ts []*target
	for _, s := range specs {
		name, rest, ok1 := strings.Cut(s, "=")
		kind, addr, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			fmt.Fprintln(os.Stderr, "loop: want NAME=KIND:ADDR:PORT, got", s)
			os.Exit(2)
		}
		ts = append(ts, &target{name: name, kind: kind, addr: addr})
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, t := range ts {
			var err error
			switch t.kind {
			case "tcp":
				err = tcpEcho(t.addr, timeout)
			case "udp":
				err = udpEcho(t.addr, timeout)
			case "dns":
				err = dnsQuery("udp", t.addr, "loop.example", timeout)
			default:
				fmt.Fprintln(os.Stderr, "loop: unknown kind", t.kind)
				os.Exit(2)
			}
			now := time.Now()
			if err != nil {
				t.fail++
				continue
			}
			t.ok++
			if t.firstOK.IsZero() {
				t.firstOK = now
			}
			t.lastOK = now
		}
	}
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	for _, t := range ts {
		fmt.Printf("%s ok=%d fail=%d firstok=%d lastok=%d\n", t.name, t.ok, t.fail, ms(t.firstOK), ms(t.lastOK))
	}
}
