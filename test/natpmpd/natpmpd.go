// Package natpmpd is a scriptable NAT-PMP (RFC 6886) responder for tests:
// a stand-in for ProtonVPN's tunnel gateway. It hands out one forwarded
// port the Proton way (a request for internal 0 → external 1 is granted
// with the server's current port, the same number for UDP and TCP, lifetime
// capped at 60 s), and it can be told to misbehave: refuse, go silent,
// answer from a wrong source address, or send malformed replies.
//
// It encodes packets itself, independently of internal/portfwd/natpmp, so
// tests of that client against this server cross-check two encodings, and
// the root test runs Debian's natpmpc against it as a third opinion.
//
// Only loopback or test-namespace addresses are ever used: Start listens
// where Config.Listen says and replies to whoever asked.
package natpmpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Fault is how the server treats one request.
type Fault int

// Faults. Normal is the zero value.
const (
	Normal         Fault = iota
	Refuse               // result code 2, "not authorized/refused"
	Silent               // no reply at all
	WrongSource          // the correct reply, but sent from Config.Stray only
	StrayThenReply       // a copy from Config.Stray first, then the correct reply
	WrongOpcode          // opcode of another request
	WrongVersion         // version 2 (what a PCP-only server would say)
	Truncated            // the reply cut short by 4 bytes
	Oversized            // the reply with 4 extra bytes
	ZeroPort             // mapping reply with external port 0 and a lifetime
	HugeLifetime         // mapping reply with lifetime 0xffffffff
)

var faultNames = map[Fault]string{
	Normal: "normal", Refuse: "refuse", Silent: "silent", WrongSource: "wrong-source",
	StrayThenReply: "stray-then-reply", WrongOpcode: "wrong-opcode", WrongVersion: "wrong-version",
	Truncated: "truncated", Oversized: "oversized", ZeroPort: "zero-port", HugeLifetime: "huge-lifetime",
}

func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// ParseFault parses a Fault's String form.
func ParseFault(s string) (Fault, error) {
	for f, name := range faultNames {
		if name == s {
			return f, nil
		}
	}
	var names []string
	for f := Normal; f <= HugeLifetime; f++ {
		names = append(names, f.String())
	}
	return 0, fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(names, ", "))
}

// Config configures a Server. Zero values select the defaults.
type Config struct {
	// Listen is the UDP address to serve, default "127.0.0.1:0". Debian's
	// natpmpc always sends to port 5351.
	Listen string
	// Stray is where WrongSource replies come from, default "127.0.0.2:0"
	// (any 127/8 address works on Linux loopback without configuring it).
	Stray string
	// External is the public address reported, default 198.51.100.7.
	// Newer natpmpc releases reject reserved ranges; use a public-looking
	// address with them.
	External netip.Addr
	// Port is the first forwarded port handed out, default 38534.
	Port uint16
	// MaxLifetime caps granted lifetimes in seconds, default 60 (Proton).
	MaxLifetime uint32
}

// Request is one request the server received.
type Request struct {
	N        int // 1-based, counting every packet received
	From     netip.AddrPort
	Raw      []byte
	Version  byte
	Op       byte
	Internal uint16 // mapping requests only
	External uint16
	Lifetime uint32
	Fault    Fault // what the server did with it
}

// Server is a running responder.
type Server struct {
	conn, stray *net.UDPConn
	cfg         Config
	start       time.Time
	done        chan struct{}

	mu       sync.Mutex
	queue    []Fault
	at       map[int]Fault
	mode     Fault // for requests beyond the queue
	changes  map[int]uint16
	port     uint16
	rounds   int
	requests []Request
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Stray == "" {
		cfg.Stray = "127.0.0.2:0"
	}
	if !cfg.External.IsValid() {
		cfg.External = netip.MustParseAddr("198.51.100.7")
	}
	if cfg.Port == 0 {
		cfg.Port = 38534
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = 60
	}
	conn, err := listen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	stray, err := listen(cfg.Stray)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Server{
		conn: conn, stray: stray, cfg: cfg, start: time.Now(), done: make(chan struct{}),
		at: map[int]Fault{}, changes: map[int]uint16{}, port: cfg.Port,
	}
	go s.serve()
	return s, nil
}

func listen(addr string) (*net.UDPConn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("natpmpd: listen address: %w", err)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("natpmpd: %w", err)
	}
	return conn, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// StrayAddr is the address WrongSource replies come from.
func (s *Server) StrayAddr() netip.AddrPort { return s.stray.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close stops the server and waits for it.
func (s *Server) Close() error {
	err := errors.Join(s.conn.Close(), s.stray.Close())
	<-s.done
	return err
}

// Script queues faults for the next requests, one request each, after the
// ones already queued; requests beyond the queue get the mode (SetMode).
func (s *Server) Script(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, faults...)
}

// ScriptAt sets the fault for the nth request (1-based, every packet
// counts). It takes precedence over the queue.
func (s *Server) ScriptAt(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[n] = f
}

// SetMode sets the fault for every request that neither ScriptAt nor the
// queue decides (Normal by default): SetMode(Silent) makes the gateway go
// quiet until SetMode(Normal).
func (s *Server) SetMode(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = f
}

// ChangePortNext makes the server hand out port from the next round on
// (the next UDP mapping request that creates a mapping, i.e. the next
// renewal of a running lease), so the UDP and TCP halves of one round
// always agree. It returns that round's number.
func (s *Server) ChangePortNext(port uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes[s.rounds+1] = port
	return s.rounds + 1
}

// ChangePortAt makes the server hand out port from round n on. A round
// starts with each UDP mapping request that creates a mapping, so with the
// Proton sequence (UDP, then TCP, every 45 s) round 1 is the first
// mapping and round n+1 the nth renewal; TCP gets the port of its round.
func (s *Server) ChangePortAt(n int, port uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes[n] = port
}

// SetPort changes the port handed out from now on.
func (s *Server) SetPort(port uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.port = port
}

// Requests returns a copy of the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED left over from a reply to a closed client
		}
		replies := s.handle(append([]byte(nil), buf[:n]...), from)
		for _, r := range replies {
			conn := s.conn
			if r.stray {
				conn = s.stray
			}
			conn.WriteToUDPAddrPort(r.b, from)
		}
	}
}

type reply struct {
	b     []byte
	stray bool
}

// handle decides the replies to one request. It follows RFC 6886 where a
// real server would (§3.5: version ≠ 0 gets "unsupported version", an
// unknown opcode gets the request echoed with result 5, replies and short
// packets are ignored), then applies the scripted fault.
func (s *Server) handle(b []byte, from netip.AddrPort) []reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := Request{N: len(s.requests) + 1, From: from, Raw: b}
	fault := s.mode
	if f, ok := s.at[req.N]; ok {
		fault = f
	} else if len(s.queue) > 0 {
		fault, s.queue = s.queue[0], s.queue[1:]
	}
	req.Fault = fault
	defer func() { s.requests = append(s.requests, req) }()
	if len(b) < 2 {
		return nil
	}
	req.Version, req.Op = b[0], b[1]
	epoch := uint32(time.Since(s.start) / time.Second)
	var out []byte
	switch {
	case req.Op >= 128:
		return nil // a reply sent to us; §3.5 says ignore
	case req.Version != 0:
		out = header(req.Op, 1, epoch)
	case req.Op == 0 && len(b) == 2:
		out = header(0, 0, epoch)
		out = append(out, s.cfg.External.AsSlice()...)
	case (req.Op == 1 || req.Op == 2) && len(b) == 12:
		req.Internal = binary.BigEndian.Uint16(b[4:6])
		req.External = binary.BigEndian.Uint16(b[6:8])
		req.Lifetime = binary.BigEndian.Uint32(b[8:12])
		out = s.mapping(req, epoch)
	case req.Op > 2:
		out = append([]byte(nil), b...)
		out[1] |= 128
		binary.BigEndian.PutUint16(out[2:4], 5)
	default:
		return nil // wrong size for its opcode
	}
	return applyFault(fault, out)
}

func (s *Server) mapping(req Request, epoch uint32) []byte {
	out := header(req.Op, 0, epoch)
	var ext uint16
	life := min(req.Lifetime, s.cfg.MaxLifetime)
	if req.Lifetime > 0 {
		if req.Op == 1 {
			s.rounds++
			if p, ok := s.changes[s.rounds]; ok {
				s.port = p
			}
		}
		ext = s.port
	}
	out = binary.BigEndian.AppendUint16(out, req.Internal)
	out = binary.BigEndian.AppendUint16(out, ext)
	return binary.BigEndian.AppendUint32(out, life)
}

func header(op byte, result uint16, epoch uint32) []byte {
	b := []byte{0, op | 128}
	b = binary.BigEndian.AppendUint16(b, result)
	return binary.BigEndian.AppendUint32(b, epoch)
}

func applyFault(f Fault, out []byte) []reply {
	mut := func(fn func([]byte) []byte) []reply { return []reply{{b: fn(append([]byte(nil), out...))}} }
	switch f {
	case Silent:
		return nil
	case Refuse:
		return mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:4], 2); return b })
	case WrongSource:
		return []reply{{b: out, stray: true}}
	case StrayThenReply:
		return []reply{{b: out, stray: true}, {b: out}}
	case WrongOpcode:
		return mut(func(b []byte) []byte { b[1] ^= 3; return b }) // 128↔131, 129↔130
	case WrongVersion:
		return mut(func(b []byte) []byte { b[0] = 2; return b })
	case Truncated:
		return mut(func(b []byte) []byte { return b[:len(b)-4] })
	case Oversized:
		return mut(func(b []byte) []byte { return append(b, 0, 0, 0, 0) })
	case ZeroPort:
		return mut(func(b []byte) []byte {
			if len(b) == 16 {
				binary.BigEndian.PutUint16(b[10:12], 0)
			}
			return b
		})
	case HugeLifetime:
		return mut(func(b []byte) []byte {
			if len(b) == 16 {
				binary.BigEndian.PutUint32(b[12:16], 0xffffffff)
			}
			return b
		})
	}
	return []reply{{b: out}}
}
