// Command natpmpd runs the test NAT-PMP responder (package natpmpd) until
// SIGINT or SIGTERM, logging each request to stderr. For tests and demos
// in throwaway namespaces only.
//
//	natpmpd -listen 10.2.0.1:5351 -port 38534 -faults silent,refuse -change 3:40000
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5351", "UDP address to serve")
	stray := flag.String("stray", "127.0.0.2:0", "source address of wrong-source replies (an address of this namespace)")
	external := flag.String("external", "198.51.100.7", "public address to report")
	port := flag.Uint("port", 38534, "first forwarded port")
	lifetime := flag.Uint("lifetime", 60, "maximum granted lifetime (s)")
	faults := flag.String("faults", "", "comma-separated faults for the first requests, in order")
	change := flag.String("change", "", "ROUND:PORT[,ROUND:PORT...]: hand out PORT from that round on")
	flag.Parse()
	if err := run(*listen, *stray, *external, *port, *lifetime, *faults, *change); err != nil {
		fmt.Fprintln(os.Stderr, "natpmpd:", err)
		os.Exit(1)
	}
}

func run(listen, stray, external string, port, lifetime uint, faults, change string) error {
	ext, err := netip.ParseAddr(external)
	if err != nil {
		return err
	}
	if port == 0 || port > 65535 || lifetime > 1<<32-1 {
		return fmt.Errorf("port %d or lifetime %d out of range", port, lifetime)
	}
	s, err := natpmpd.Start(natpmpd.Config{
		Listen: listen, Stray: stray, External: ext, Port: uint16(port), MaxLifetime: uint32(lifetime),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, name := range split(faults) {
		f, err := natpmpd.ParseFault(name)
		if err != nil {
			return err
		}
		s.Script(f)
	}
	for _, c := range split(change) {
		round, p, ok := strings.Cut(c, ":")
		r, err1 := strconv.Atoi(round)
		n, err2 := strconv.ParseUint(p, 10, 16)
		if !ok || err1 != nil || err2 != nil || r < 1 || n == 0 {
			return fmt.Errorf("-change %q: want ROUND:PORT", c)
		}
		s.ChangePortAt(r, uint16(n))
	}
	fmt.Fprintf(os.Stderr, "natpmpd: serving on %s\n", s.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	logged := 0
	for {
		select {
		case <-sig:
			return nil
		case <-tick.C:
			reqs := s.Requests()
			for _, r := range reqs[logged:] {
				fmt.Fprintf(os.Stderr, "natpmpd: #%d from %s: version %d op %d internal %d external %d lifetime %d: %s\n",
					r.N, r.From, r.Version, r.Op, r.Internal, r.External, r.Lifetime, r.Fault)
			}
			logged = len(reqs)
		}
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
