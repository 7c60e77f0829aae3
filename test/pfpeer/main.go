// Command vpnc-pfpeer is the test VPN provider's port forwarding: run it
// inside the provider namespace of a test and it answers NAT-PMP the way
// ProtonVPN's gateway does (test/natpmpd) and PIA's gateway and token APIs
// over HTTPS with a CA of its own (test/piafake). A control socket lets a
// test change the gateway's behaviour while a lease runs.
//
//	vpnc-pfpeer serve -control SOCK [flags]   run the servers (see -h)
//	vpnc-pfpeer ctl SOCK WORDS...             one control command, prints the answer
//	vpnc-pfpeer connect [-timeout D] [-hold D] ADDR:PORT
//	                                          TCP connect only (no data), prints OPEN or BLOCKED
//
// Control commands:
//
//	natpmp mode FAULT            fault for every request from now on (normal, silent, truncated, ...)
//	natpmp change-next PORT      hand out PORT from the next mapping round on; answers the round
//	natpmp requests              the requests so far, one JSON object a line
//	pia queue PORT:VALID[,...]   the next getSignature calls grant these (VALID: a Go duration)
//	pia busy PORT on|off         bindPort for PORT answers 409 "port is busy"
//	pia events                   the token and gateway requests so far, one JSON object a line
//
// For tests and demos in throwaway namespaces only.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
	"github.com/vpn-confinement/vpn-confinement/test/piafake"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "ctl":
		err = ctl(os.Args[2:])
	case "connect":
		os.Exit(connect(os.Args[2:]))
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpnc-pfpeer:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vpnc-pfpeer serve -control SOCK [flags] | ctl SOCK WORDS... | connect [-timeout D] [-hold D] ADDR:PORT")
	os.Exit(2)
}

type servers struct {
	pmp *natpmpd.Server
	pia *piafake.Service
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	control := fs.String("control", "", "control socket path (required)")
	ready := fs.String("ready", "", "file written once everything listens")
	pmpAddr := fs.String("natpmp", "", "NAT-PMP address, e.g. 10.123.0.1:5351")
	pmpStray := fs.String("natpmp-stray", "127.0.0.2:0", "source of wrong-source replies (an address of this namespace)")
	pmpPort := fs.Uint("natpmp-port", 38534, "first forwarded port")
	pmpLife := fs.Uint("natpmp-lifetime", 60, "maximum granted lifetime (s)")
	// Debian 12's natpmpc prints any address; later libnatpmp releases
	// refuse reserved ranges such as 198.51.100.0/24.
	pmpExt := fs.String("natpmp-external", "1.2.3.4", "public address reported")
	piaAddr := fs.String("pia", "", "PIA gateway API address, e.g. 10.123.0.1:19999")
	piaHost := fs.String("pia-hostname", "pf-test.privacy.network", "the gateway certificate's name")
	tokenAddr := fs.String("token", "", "token API address, e.g. 10.123.0.77:443")
	tokenHost := fs.String("token-hostname", "token.pia.test", "the token server certificate's name")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) here")
	user := fs.String("pia-user", "p1234567", "the account's user name")
	pass := fs.String("pia-password", "", "the account's password")
	piaPort := fs.Uint("pia-port", 47001, "port granted when no grant is queued")
	fs.Parse(args)
	if *control == "" {
		return errors.New("-control is required")
	}
	s := &servers{}
	if *pmpAddr != "" {
		ext, err := netip.ParseAddr(*pmpExt)
		if err != nil {
			return err
		}
		s.pmp, err = natpmpd.Start(natpmpd.Config{
			Listen: *pmpAddr, Stray: *pmpStray, External: ext,
			Port: uint16(*pmpPort), MaxLifetime: uint32(*pmpLife),
		})
		if err != nil {
			return err
		}
		defer s.pmp.Close()
		go logRequests(s.pmp)
	}
	if *piaAddr != "" || *tokenAddr != "" {
		ca, err := piafake.NewCA("vpnc test PIA CA")
		if err != nil {
			return err
		}
		if *caOut != "" {
			if err := os.WriteFile(*caOut, ca.PEM, 0o644); err != nil {
				return err
			}
		}
		s.pia = piafake.New(*user, *pass)
		s.pia.DefaultGrant.Port = uint16(*piaPort)
		for _, h := range []struct {
			addr, name string
			handler    http.Handler
		}{{*piaAddr, *piaHost, s.pia.GatewayHandler()}, {*tokenAddr, *tokenHost, s.pia.TokenHandler()}} {
			if h.addr == "" {
				continue
			}
			cert, err := ca.Issue([]string{h.name}, nil)
			if err != nil {
				return err
			}
			ln, err := tls.Listen("tcp4", h.addr, &tls.Config{Certificates: []tls.Certificate{cert}})
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
		}
	}
	os.Remove(*control)
	ln, err := net.Listen("unix", *control)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.handle(c)
		}
	}()
	if *ready != "" {
		if err := os.WriteFile(*ready, nil, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, "vpnc-pfpeer: serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

// logRequests writes each NAT-PMP request to stderr (the journal of the
// unit the test started this in).
func logRequests(s *natpmpd.Server) {
	logged := 0
	for range time.Tick(100 * time.Millisecond) {
		reqs := s.Requests()
		for _, r := range reqs[logged:] {
			fmt.Fprintf(os.Stderr, "natpmp #%d from %s: op %d internal %d external %d lifetime %d: %s\n",
				r.N, r.From, r.Op, r.Internal, r.External, r.Lifetime, r.Fault)
		}
		logged = len(reqs)
	}
}

func (s *servers) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	out, err := s.command(strings.Fields(line))
	if err != nil {
		fmt.Fprintf(c, "ERROR %v\n", err)
		return
	}
	fmt.Fprint(c, out)
}

func (s *servers) command(w []string) (string, error) {
	if len(w) < 2 {
		return "", errors.New("want: natpmp|pia COMMAND ...")
	}
	switch {
	case w[0] == "natpmp" && s.pmp == nil, w[0] == "pia" && s.pia == nil:
		return "", fmt.Errorf("%s is not served", w[0])
	}
	switch strings.Join(w[:2], " ") {
	case "natpmp mode":
		if len(w) != 3 {
			return "", errors.New("natpmp mode FAULT")
		}
		f, err := natpmpd.ParseFault(w[2])
		if err != nil {
			return "", err
		}
		s.pmp.SetMode(f)
		return "ok\n", nil
	case "natpmp change-next":
		p, err := port(w, 2)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("round %d\n", s.pmp.ChangePortNext(p)), nil
	case "natpmp requests":
		var b strings.Builder
		for _, r := range s.pmp.Requests() {
			j, _ := json.Marshal(map[string]any{"n": r.N, "from": r.From.String(), "op": r.Op, "internal": r.Internal,
				"external": r.External, "lifetime": r.Lifetime, "fault": r.Fault.String()})
			b.Write(append(j, '\n'))
		}
		return b.String(), nil
	case "pia queue":
		if len(w) != 3 {
			return "", errors.New("pia queue PORT:VALID[,...]")
		}
		var gs []piafake.Grant
		for _, g := range strings.Split(w[2], ",") {
			ps, ds, ok := strings.Cut(g, ":")
			p, err1 := strconv.ParseUint(ps, 10, 16)
			d, err2 := time.ParseDuration(ds)
			if !ok || err1 != nil || err2 != nil || p == 0 {
				return "", fmt.Errorf("grant %q: want PORT:DURATION", g)
			}
			gs = append(gs, piafake.Grant{Port: uint16(p), Expires: d})
		}
		s.pia.Queue(gs...)
		return "ok\n", nil
	case "pia busy":
		p, err := port(w, 2)
		if err != nil || len(w) != 4 || (w[3] != "on" && w[3] != "off") {
			return "", errors.New("pia busy PORT on|off")
		}
		s.pia.SetBusy(p, w[3] == "on")
		return "ok\n", nil
	case "pia events":
		var b strings.Builder
		for _, e := range s.pia.Events() {
			j, _ := json.Marshal(e)
			b.Write(append(j, '\n'))
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("unknown command %q", strings.Join(w, " "))
}

func port(w []string, i int) (uint16, error) {
	if len(w) <= i {
		return 0, errors.New("missing port")
	}
	p, err := strconv.ParseUint(w[i], 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("bad port %q", w[i])
	}
	return uint16(p), nil
}

func ctl(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: vpnc-pfpeer ctl SOCK WORDS...")
	}
	c, err := net.DialTimeout("unix", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(c, strings.Join(args[1:], " ")); err != nil {
		return err
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	os.Stdout.Write(out)
	if strings.HasPrefix(string(out), "ERROR") {
		return errors.New("command failed")
	}
	return nil
}

// connect opens a TCP connection and keeps it for -hold (so the far side
// can be inspected with ss), sending nothing: a torrent client's port
// answers no echo, and accepting is what counts.
func connect(args []string) int {
	fs := flag.NewFlagSet("connect", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "connect timeout")
	hold := fs.Duration("hold", 0, "keep the connection open this long")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		fmt.Printf("BLOCKED %v\n", err)
		return 1
	}
	fmt.Printf("OPEN %s -> %s\n", c.LocalAddr(), c.RemoteAddr())
	time.Sleep(*hold)
	c.Close()
	return 0
}
