// Command vpnc-probe is the end-to-end tests' traffic probe. It runs inside
// a confined service's cgroup (systemd-run with the drop-in's properties)
// and tries exactly one network path, printing OPEN or BLOCKED:
//
//	vpnc-probe dns  udp|tcp ADDR:PORT NAME   DNS A query
//	vpnc-probe tcp  ADDR:PORT                TCP connect + echo round trip
//	vpnc-probe udp  ADDR:PORT                UDP datagram + echo reply
//	vpnc-probe resolve NAME                  getaddrinfo through the C-library-like Go resolver
//	vpnc-probe serve-fd                      socket-activated server (fd 3): answers
//	                                         every connection with "netns:INODE"
//	vpnc-probe tick EVERY ADDR:PORT          forever: a TCP echo every EVERY, one line
//	                                         per attempt: "TICK <unix ms> ok|fail <ms> [error]"
//	vpnc-probe loop FOR NAME=KIND:ADDR...    tight loop over the targets for FOR (KIND tcp, udp,
//	                                         dns = a UDP DNS query); prints per-target counts
//
// Exit status: 0 OPEN, 1 BLOCKED, 2 usage error. Each probe is bounded by
// -timeout so a dropped packet cannot hang a test.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 2*time.Second, "per-probe timeout")
	flag.Parse()
	a := flag.Args()
	var err error
	switch {
	case len(a) == 4 && a[0] == "dns":
		err = dnsQuery(a[1], a[2], a[3], *timeout)
	case len(a) == 2 && a[0] == "tcp":
		err = tcpEcho(a[1], *timeout)
	case len(a) == 2 && a[0] == "udp":
		err = udpEcho(a[1], *timeout)
	case len(a) == 2 && a[0] == "resolve":
		err = resolve(a[1], *timeout)
	case len(a) == 1 && a[0] == "serve-fd":
		serveFD()
	case len(a) == 3 && a[0] == "tick":
		tick(a[1], a[2], *timeout)
	case len(a) >= 3 && a[0] == "loop":
		loop(a[1], a[2:], *timeout)
		return
	default:
		fmt.Fprintln(os.Stderr, "usage: vpnc-probe [-timeout D] dns udp|tcp ADDR:PORT NAME | tcp ADDR:PORT | udp ADDR:PORT | resolve NAME")
		os.Exit(2)
	}
	if err != nil {
		fmt.Printf("BLOCKED %v\n", err)
		os.Exit(1)
	}
	fmt.Println("OPEN")
}

func dnsQuery(proto, addr, name string, timeout time.Duration) error {
	msg := buildQuery(name)
	conn, err := net.DialTimeout(proto, addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if proto == "tcp" {
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
		msg = append(l[:], msg...)
	}
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if n < 12 {
		return errors.New("short answer")
	}
	return nil
}

func buildQuery(name string) []byte {
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range splitLabels(name) {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

func splitLabels(name string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if i > start {
				out = append(out, name[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func tcpEcho(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	_, err = io.ReadAtLeast(conn, buf, 1)
	return err
}

func udpEcho(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("udp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	_, err = conn.Read(buf)
	return err
}

func resolve(name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, addrs)
	return nil
}

// serveFD serves the listening socket systemd passed as fd 3 and tells each
// client which network namespace the serving process is in.
func serveFD() {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var st syscall.Stat_t
	syscall.Stat("/proc/self/ns/net", &st)
	for {
		conn, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprintf(conn, "netns:%d\n", st.Ino)
		conn.Close()
	}
}
