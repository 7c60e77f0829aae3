// Package natpmp is a NAT-PMP (RFC 6886) client, written for the one place
// this project uses it: asking a VPN provider's tunnel gateway (ProtonVPN:
// 10.2.0.1) for a forwarded port, from inside the confined namespace.
//
// Each request uses a fresh, unconnected UDP socket. Unconnected so that a
// reply from another address than the gateway reaches us and can be
// counted and logged before it is discarded (on a connected socket the
// kernel would drop it silently, and a wrong gateway address would look
// like plain silence). The socket has IP_RECVERR set, so an ICMP port
// unreachable from the gateway still surfaces as ECONNREFUSED, which is
// how a gateway without NAT-PMP answers (natpmpc shows it as "errno=111").
//
// Replies are validated strictly (version, opcode, size, result code,
// internal port, external port, lifetime); every failure is a typed error
// that says what was wrong. Retransmission follows §3.1: 250 ms, doubling,
// 9 tries (the ninth waits 64 s, about 128 s in all), cut short by the
// context; callers renewing a short lease should pass a deadline.
package natpmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// DefaultPort is the NAT-PMP server port (§3).
const DefaultPort = 5351

// Defaults of the retransmission schedule (§3.1).
const (
	DefaultInitialTimeout = 250 * time.Millisecond
	DefaultMaxTries       = 9
)

// Client talks to one NAT-PMP gateway. The zero values of the optional
// fields select the RFC defaults.
type Client struct {
	// Gateway is the gateway's IPv4 address (NAT-PMP has no IPv6).
	Gateway netip.Addr
	// Port is the gateway's NAT-PMP port; 0 means DefaultPort.
	Port uint16
	// Local is the source address to bind, e.g. the tunnel address
	// (optional; policy-routed setups need it, a confined namespace does
	// not).
	Local netip.Addr
	// ListenPacket opens the socket for one request; nil means Listen.
	// Tests and callers that must open the socket in another network
	// namespace set it (and should call Listen from it to keep
	// ECONNREFUSED reporting).
	ListenPacket func(ctx context.Context) (net.PacketConn, error)
	// InitialTimeout is the first wait for a reply; 0 means 250 ms.
	InitialTimeout time.Duration
	// MaxTries bounds the transmissions of one request; 0 means 9.
	MaxTries int
	// Logf, if set, receives a line for every discarded stray reply.
	Logf func(format string, args ...any)
}

// Mapping is a granted port mapping.
type Mapping struct {
	Proto    string // "udp" or "tcp"
	Internal uint16
	External uint16
	Lifetime time.Duration
	Epoch    uint32 // seconds since the gateway's mapping table was reset
}

// ExternalAddress asks for the gateway's public IPv4 address (§3.2).
func (c *Client) ExternalAddress(ctx context.Context) (netip.Addr, uint32, error) {
	reply, err := c.exchange(ctx, externalAddressRequest())
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("natpmp external address: %w", err)
	}
	addr, epoch, err := parseExternalAddress(reply)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("natpmp external address: %w", err)
	}
	return addr, epoch, nil
}

// Map requests a mapping (§3.3) of proto ("udp" or "tcp") from internal
// to requestedExternal (a suggestion the gateway may ignore) for lifetime,
// rounded up to whole seconds. Lifetime 0 deletes the mapping (§3.4).
func (c *Client) Map(ctx context.Context, proto string, internal, requestedExternal uint16, lifetime time.Duration) (Mapping, error) {
	var op byte
	switch proto {
	case "udp":
		op = opMapUDP
	case "tcp":
		op = opMapTCP
	default:
		return Mapping{}, fmt.Errorf("natpmp map: protocol %q, want udp or tcp", proto)
	}
	if lifetime < 0 || lifetime > MaxLifetime {
		return Mapping{}, fmt.Errorf("natpmp map: lifetime %v outside [0, %v]", lifetime, MaxLifetime)
	}
	sec := uint32((lifetime + time.Second - 1) / time.Second)
	what := fmt.Sprintf("natpmp map %s %d→%d for %d s", proto, internal, requestedExternal, sec)
	reply, err := c.exchange(ctx, mappingRequest(op, internal, requestedExternal, sec))
	if err != nil {
		return Mapping{}, fmt.Errorf("%s: %w", what, err)
	}
	m, err := parseMapping(reply, op, internal, sec)
	if err != nil {
		return Mapping{}, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

func (c *Client) gateway() (netip.AddrPort, error) {
	if !c.Gateway.Is4() && !c.Gateway.Is4In6() {
		return netip.AddrPort{}, fmt.Errorf("gateway %v is not an IPv4 address", c.Gateway)
	}
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	return netip.AddrPortFrom(c.Gateway.Unmap(), port), nil
}

// exchange sends req until a reply from the gateway arrives, and returns
// that reply unvalidated.
func (c *Client) exchange(ctx context.Context, req []byte) ([]byte, error) {
	gw, err := c.gateway()
	if err != nil {
		return nil, err
	}
	listen := c.ListenPacket
	if listen == nil {
		listen = func(ctx context.Context) (net.PacketConn, error) { return Listen(ctx, c.Local) }
	}
	pc, err := listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("open socket: %w", err)
	}
	defer pc.Close()
	if err := ctx.Err(); err != nil {
		return nil, err // do not send a request nobody will wait for
	}
	// A read blocked in the kernel does not see the context; moving the
	// deadline into the past wakes it.
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	timeout, tries := c.InitialTimeout, c.MaxTries
	if timeout <= 0 {
		timeout = DefaultInitialTimeout
	}
	if tries <= 0 {
		tries = DefaultMaxTries
	}
	tErr := &TimeoutError{Gateway: gw}
	start := time.Now()
	dst := net.UDPAddrFromAddrPort(gw)
	buf := make([]byte, 64) // larger than any reply, so oversized ones are seen
	for try := 1; try <= tries; try, timeout = try+1, timeout*2 {
		tErr.Tries = try
		if _, err := pc.WriteTo(req, dst); err != nil {
			return nil, sendError(err)
		}
		if err := pc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, err
		}
		// The context may have ended before the deadline above replaced
		// the one its AfterFunc set.
		if err := ctx.Err(); err != nil {
			return nil, ctxError(tErr, err, start)
		}
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return nil, ctxError(tErr, cerr, start)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return nil, sendError(err)
			}
			src := addrPort(from)
			if src.Addr() != gw.Addr() {
				c.stray(tErr, src, gw)
				continue
			}
			return append([]byte(nil), buf[:n]...), nil
		}
	}
	tErr.Waited = time.Since(start)
	return nil, tErr
}

func (c *Client) stray(tErr *TimeoutError, src, gw netip.AddrPort) {
	tErr.Strays++
	seen := false
	for _, s := range tErr.StraySources {
		seen = seen || s == src
	}
	if !seen && len(tErr.StraySources) < 4 {
		tErr.StraySources = append(tErr.StraySources, src)
	}
	if c.Logf != nil {
		c.Logf("natpmp: ignored a reply from %s: not the gateway %s", src, gw.Addr())
	}
}

func ctxError(tErr *TimeoutError, err error, start time.Time) error {
	if errors.Is(err, context.DeadlineExceeded) {
		tErr.Waited = time.Since(start)
		tErr.Cause = err
		return tErr
	}
	return err
}

func sendError(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ErrNoNATPMP
	}
	return err
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
