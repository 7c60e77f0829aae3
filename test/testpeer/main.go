// Command vpnc-testpeer is the project's stand-in for a VPN provider's
// services: run it inside the server namespace of a test (for example with
// `ip netns exec SRV vpnc-testpeer ...`) and it answers DNS and echoes TCP
// and UDP, logging every DNS query and echo so tests can prove which path a
// packet took (or that nothing arrived).
//
//	-dns LIST        DNS responders, UDP and TCP, on each ADDR:PORT
//	-tcp-echo LIST   TCP echo; each connection first gets "peer CLIENT\n"
//	-udp-echo LIST   UDP echo (the datagram comes back unchanged)
//	-answer IP       the address every A query is answered with
//	-log FILE        one JSON line per DNS query
//	-echo-log FILE   one JSON line per echo connection/datagram (optional)
//	-ready FILE      written once every listener is up
//
// LIST is comma-separated. ":PORT" means every address (except IPv6
// link-local) configured in the namespace when the peer starts; binding
// each one, instead of a wildcard, lets the log name the address a query
// was sent to. Standard library only, so it builds anywhere.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// entry is one log line.
type entry struct {
	Time   string `json:"time"`
	Server string `json:"server"`
	Client string `json:"client"`
	Proto  string `json:"proto"`
	QName  string `json:"qname,omitempty"`
	QType  uint16 `json:"qtype,omitempty"`
}

type logFile struct {
	mu sync.Mutex
	f  *os.File
}

func openLog(path string) (*logFile, error) {
	if path == "" {
		return &logFile{}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &logFile{f: f}, nil
}

func (l *logFile) write(e entry) {
	if l.f == nil {
		return
	}
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.Write(append(b, '\n'))
}

func main() {
	dnsList := flag.String("dns", "", "DNS responders (UDP+TCP): comma-separated ADDR:PORT or :PORT")
	tcpList := flag.String("tcp-echo", "", "TCP echo servers")
	udpList := flag.String("udp-echo", "", "UDP echo servers")
	answer := flag.String("answer", "10.123.0.77", "address for every A answer")
	logPath := flag.String("log", "", "DNS query log (JSON lines)")
	echoLogPath := flag.String("echo-log", "", "echo log (JSON lines)")
	ready := flag.String("ready", "", "file written when all listeners are up")
	flag.Parse()
	if err := run(*dnsList, *tcpList, *udpList, *answer, *logPath, *echoLogPath, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "vpnc-testpeer:", err)
		os.Exit(1)
	}
}

func run(dnsList, tcpList, udpList, answer, logPath, echoLogPath, ready string) error {
	ans, err := netip.ParseAddr(answer)
	if err != nil || !ans.Is4() {
		return fmt.Errorf("-answer must be an IPv4 address (got %q)", answer)
	}
	dnsLog, err := openLog(logPath)
	if err != nil {
		return err
	}
	echoLog, err := openLog(echoLogPath)
	if err != nil {
		return err
	}
	dnsAddrs, err := expand(dnsList)
	if err != nil {
		return err
	}
	tcpAddrs, err := expand(tcpList)
	if err != nil {
		return err
	}
	udpAddrs, err := expand(udpList)
	if err != nil {
		return err
	}
	for _, a := range dnsAddrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return fmt.Errorf("listen dns udp %s: %w", a, err)
		}
		go serveDNSUDP(pc, ans, dnsLog)
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("listen dns tcp %s: %w", a, err)
		}
		go serveTCP(l, func(c net.Conn) { serveDNSTCP(c, ans, dnsLog) })
	}
	for _, a := range tcpAddrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("listen tcp echo %s: %w", a, err)
		}
		go serveTCP(l, func(c net.Conn) { tcpEcho(c, echoLog) })
	}
	for _, a := range udpAddrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return fmt.Errorf("listen udp echo %s: %w", a, err)
		}
		go udpEcho(pc, echoLog)
	}
	if ready != "" {
		tmp := filepath.Join(filepath.Dir(ready), "."+filepath.Base(ready)+".tmp")
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, ready); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// expand turns a list into listen addresses; ":PORT" becomes one address
// per local (non-link-local) address.
func expand(list string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host, port, err := net.SplitHostPort(item)
		if err != nil {
			return nil, fmt.Errorf("bad address %q: %w", item, err)
		}
		if host != "" {
			out = append(out, item)
			continue
		}
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, net.JoinHostPort(ipn.IP.String(), port))
		}
	}
	return out, nil
}

func serveTCP(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			handle(c)
		}()
	}
}

func tcpEcho(c net.Conn, log *logFile) {
	log.write(entry{Server: c.LocalAddr().String(), Client: c.RemoteAddr().String(), Proto: "tcp"})
	// The peer address first: tests read which source address arrived.
	fmt.Fprintf(c, "peer %s\n", c.RemoteAddr())
	io.Copy(c, c)
}

func udpEcho(pc net.PacketConn, log *logFile) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		log.write(entry{Server: pc.LocalAddr().String(), Client: from.String(), Proto: "udp"})
		pc.WriteTo(buf[:n], from)
	}
}

func serveDNSUDP(pc net.PacketConn, ans netip.Addr, log *logFile) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q, err := parseQuery(buf[:n])
		if err != nil {
			continue
		}
		log.write(entry{Server: pc.LocalAddr().String(), Client: from.String(), Proto: "udp", QName: q.name, QType: q.qtype})
		pc.WriteTo(q.answer(ans), from)
	}
}

func serveDNSTCP(c net.Conn, ans netip.Addr, log *logFile) {
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		q, err := parseQuery(msg)
		if err != nil {
			return
		}
		log.write(entry{Server: c.LocalAddr().String(), Client: c.RemoteAddr().String(), Proto: "tcp", QName: q.name, QType: q.qtype})
		resp := q.answer(ans)
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// query is the part of a DNS query we answer: header and first question.
type query struct {
	id       uint16
	flags    uint16
	question []byte // the question section as received (name, type, class)
	name     string
	qtype    uint16
	qclass   uint16
}

func parseQuery(b []byte) (*query, error) {
	if len(b) < 12 {
		return nil, errors.New("short message")
	}
	q := &query{id: binary.BigEndian.Uint16(b), flags: binary.BigEndian.Uint16(b[2:])}
	if q.flags&0x8000 != 0 || binary.BigEndian.Uint16(b[4:]) < 1 {
		return nil, errors.New("not a query")
	}
	var labels []string
	i := 12
	for {
		if i >= len(b) {
			return nil, errors.New("truncated name")
		}
		l := int(b[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(b) {
			return nil, errors.New("bad label") // compression never appears in a query name
		}
		labels = append(labels, string(b[i:i+l]))
		i += l
	}
	if i+4 > len(b) {
		return nil, errors.New("truncated question")
	}
	q.qtype = binary.BigEndian.Uint16(b[i:])
	q.qclass = binary.BigEndian.Uint16(b[i+2:])
	q.question = b[12 : i+4]
	q.name = strings.Join(labels, ".")
	return q, nil
}

// answer builds the response: one A record for A (or ANY) IN queries,
// NOERROR without answers (NODATA) for anything else.
func (q *query) answer(a netip.Addr) []byte {
	withA := q.qclass == 1 && (q.qtype == 1 || q.qtype == 255)
	flags := uint16(0x8000) | q.flags&0x7900 | 0x0080 // QR, opcode+RD copied, RA
	var an uint16
	if withA {
		an = 1
	}
	out := binary.BigEndian.AppendUint16(nil, q.id)
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1) // QDCOUNT
	out = binary.BigEndian.AppendUint16(out, an)
	out = binary.BigEndian.AppendUint16(out, 0) // NSCOUNT
	out = binary.BigEndian.AppendUint16(out, 0) // ARCOUNT
	out = append(out, q.question...)
	if withA {
		out = append(out, 0xc0, 0x0c)               // pointer to the question name
		out = binary.BigEndian.AppendUint16(out, 1) // A
		out = binary.BigEndian.AppendUint16(out, 1) // IN
		out = binary.BigEndian.AppendUint32(out, 60)
		out = binary.BigEndian.AppendUint16(out, 4)
		ip := a.As4()
		out = append(out, ip[:]...)
	}
	return out
}
