package natpmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
)

// These tests talk to test/natpmpd on 127.0.0.1 (strays come from
// 127.0.0.2), so they need no root and touch no real network.

func startServer(t *testing.T) *natpmpd.Server {
	t.Helper()
	s, err := natpmpd.Start(natpmpd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client returns a fast client: 10 ms doubling for 4 tries (150 ms).
func client(s *natpmpd.Server) *Client {
	return &Client{Gateway: s.Addr().Addr(), Port: s.Addr().Port(), InitialTimeout: 10 * time.Millisecond, MaxTries: 4}
}

func TestExternalAddress(t *testing.T) {
	s := startServer(t)
	addr, _, err := client(s).ExternalAddress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if addr != netip.MustParseAddr("198.51.100.7") {
		t.Errorf("address %v", addr)
	}
}

func TestMapProton(t *testing.T) {
	s := startServer(t)
	p, err := client(s).MapProton(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Port() != 38534 || p.Lifetime() != 60*time.Second || p.UDP.Proto != "udp" || p.TCP.Proto != "tcp" {
		t.Errorf("pair %+v", p)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Op != 1 || reqs[1].Op != 2 {
		t.Fatalf("requests %+v", reqs)
	}
	for _, r := range reqs {
		if r.Internal != 0 || r.External != 1 || r.Lifetime != 60 {
			t.Errorf("request %+v, want 0→1 for 60 s", r)
		}
	}
}

func TestMapProtonPortChange(t *testing.T) {
	s := startServer(t)
	s.ChangePortAt(3, 40000)
	c := client(s)
	var ports []uint16
	for range 4 {
		p, err := c.MapProton(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p.Port())
	}
	if fmt.Sprint(ports) != "[38534 38534 40000 40000]" {
		t.Errorf("ports %v", ports)
	}
}

func TestMapProtonMismatch(t *testing.T) {
	s := startServer(t)
	c := client(s)
	// Change the port between the UDP and the TCP request.
	c.ListenPacket = func(ctx context.Context) (net.PacketConn, error) {
		if len(s.Requests()) == 1 {
			s.SetPort(40001)
		}
		return Listen(ctx, netip.Addr{})
	}
	_, err := c.MapProton(context.Background())
	if !errors.Is(err, ErrPortMismatch) || !strings.Contains(err.Error(), "udp 38534, tcp 40001") {
		t.Errorf("error %v", err)
	}
}

func TestUnmapProton(t *testing.T) {
	s := startServer(t)
	if err := client(s).UnmapProton(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Requests() {
		if r.Internal != 0 || r.Lifetime != 0 {
			t.Errorf("request %+v, want internal 0 lifetime 0", r)
		}
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		fault natpmpd.Fault
		is    error
		says  string
	}{
		{natpmpd.WrongOpcode, ErrWrongOpcode, "opcode 130, want 129"},
		{natpmpd.WrongVersion, ErrWrongVersion, "version 2"},
		{natpmpd.Truncated, ErrTruncated, "12 bytes, want 16"},
		{natpmpd.Oversized, ErrOversized, "20 bytes, want 16"},
		{natpmpd.ZeroPort, ErrZeroPort, "external port 0"},
		{natpmpd.HugeLifetime, ErrBadLifetime, "4294967295 s"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			s := startServer(t)
			s.Script(tt.fault)
			_, err := client(s).MapProton(context.Background())
			if !errors.Is(err, tt.is) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %v: want %v saying %q", err, tt.is, tt.says)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	s := startServer(t)
	s.Script(natpmpd.Normal, natpmpd.Refuse) // UDP granted, TCP refused
	_, err := client(s).MapProton(context.Background())
	var re *ResultError
	if !errors.As(err, &re) || re.Code != NotAuthorized || re.Op != "tcp" {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "result 2 (not authorized/refused)") {
		t.Errorf("error %q", err)
	}
}

func TestSilentRetransmits(t *testing.T) {
	s := startServer(t)
	s.Script(natpmpd.Silent, natpmpd.Silent, natpmpd.Silent)
	c := client(s)
	start := time.Now()
	p, err := c.MapProton(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 10 + 20 + 40 ms of waiting before the fourth transmission.
	if el := time.Since(start); el < 70*time.Millisecond {
		t.Errorf("answered after %v: retransmitted too fast", el)
	}
	if p.Port() != 38534 || len(s.Requests()) != 5 {
		t.Errorf("port %d after %d requests", p.Port(), len(s.Requests()))
	}
}

func TestTimeout(t *testing.T) {
	s := startServer(t)
	s.Script(natpmpd.Silent, natpmpd.Silent, natpmpd.Silent, natpmpd.Silent)
	_, err := client(s).Map(context.Background(), "udp", 0, 1, time.Minute)
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v", err)
	}
	if te.Tries != 4 || te.Strays != 0 || te.Waited < 150*time.Millisecond {
		t.Errorf("timeout %+v", te)
	}
	if !strings.Contains(err.Error(), "after 4 tries") || !strings.Contains(err.Error(), "is the gateway address right") {
		t.Errorf("error %q", err)
	}
}

// TestWrongSource: replies from another address are discarded (RFC 6886
// §3.1) but counted and logged, and they are the clue in the error.
func TestWrongSource(t *testing.T) {
	s := startServer(t)
	s.Script(natpmpd.WrongSource, natpmpd.WrongSource, natpmpd.WrongSource, natpmpd.WrongSource)
	c := client(s)
	var mu sync.Mutex
	var logged []string
	c.Logf = func(f string, a ...any) { mu.Lock(); logged = append(logged, fmt.Sprintf(f, a...)); mu.Unlock() }
	_, err := c.Map(context.Background(), "udp", 0, 1, time.Minute)
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("error %v", err)
	}
	stray := s.StrayAddr()
	if te.Strays != 4 || len(te.StraySources) != 1 || te.StraySources[0] != stray {
		t.Errorf("timeout %+v, want 4 strays from %v", te, stray)
	}
	if !strings.Contains(err.Error(), "ignored 4 replies from "+stray.String()) {
		t.Errorf("error %q", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 4 || !strings.Contains(logged[0], "not the gateway 127.0.0.1") {
		t.Errorf("logged %q", logged)
	}
}

func TestStrayThenReply(t *testing.T) {
	s := startServer(t)
	s.Script(natpmpd.StrayThenReply)
	c := client(s)
	strays := 0
	c.Logf = func(string, ...any) { strays++ }
	m, err := c.Map(context.Background(), "udp", 0, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.External != 38534 || strays != 1 || len(s.Requests()) != 1 {
		t.Errorf("mapping %+v, %d strays, %d requests", m, strays, len(s.Requests()))
	}
}

// TestConnectionRefused: nothing listens on the port, the kernel answers
// with ICMP port unreachable, and the client says what that means at once
// instead of timing out.
func TestConnectionRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	c := &Client{Gateway: netip.MustParseAddr("127.0.0.1"), Port: uint16(port), InitialTimeout: time.Second}
	start := time.Now()
	_, err = c.MapProton(context.Background())
	if !errors.Is(err, ErrNoNATPMP) {
		t.Fatalf("error %v", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("took %v: the refusal should end the exchange at once", el)
	}
	for _, want := range []string{"connection refused", "no NAT-PMP", "P2P servers only"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestContext(t *testing.T) {
	s := startServer(t)
	for range 20 {
		s.Script(natpmpd.Silent)
	}
	c := client(s)
	c.InitialTimeout, c.MaxTries = time.Second, 9

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Map(ctx, "udp", 0, 1, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Errorf("deadline: error %v", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("deadline honoured after %v", el)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	_, err = c.Map(ctx, "udp", 0, 1, time.Minute)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancel: error %v", err)
	}
}

func TestBadArguments(t *testing.T) {
	c := &Client{Gateway: netip.MustParseAddr("127.0.0.1")}
	ctx := context.Background()
	if _, err := c.Map(ctx, "sctp", 0, 1, time.Minute); err == nil {
		t.Error("protocol sctp accepted")
	}
	if _, err := c.Map(ctx, "udp", 0, 1, 25*time.Hour); err == nil {
		t.Error("lifetime 25 h accepted")
	}
	c.Gateway = netip.MustParseAddr("fe80::1")
	if _, err := c.Map(ctx, "udp", 0, 1, time.Minute); err == nil || !strings.Contains(err.Error(), "not an IPv4") {
		t.Errorf("IPv6 gateway: %v", err)
	}
}

func TestLifetimeRoundsUp(t *testing.T) {
	s := startServer(t)
	if _, err := client(s).Map(context.Background(), "tcp", 0, 1, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests()[0].Lifetime; got != 2 {
		t.Errorf("requested %d s, want 2", got)
	}
}
