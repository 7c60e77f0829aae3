package natpmp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ErrNoNATPMP means the gateway answered the request with ICMP port
// unreachable (ECONNREFUSED): nothing listens on its NAT-PMP port. With
// ProtonVPN that is the usual symptom of a WireGuard key generated without
// "NAT-PMP (Port Forwarding)" or of a server that is not a P2P server.
var ErrNoNATPMP = errors.New("connection refused: the gateway has no NAT-PMP " +
	"(ProtonVPN: the key/server must have NAT-PMP enabled, P2P servers only)")

// ErrTimeout is matched by a *TimeoutError.
var ErrTimeout = errors.New("no NAT-PMP reply")

// ErrMalformed is matched by every *ReplyError; the Err* kinds below say
// which check failed.
var ErrMalformed = errors.New("malformed NAT-PMP reply")

// Kinds of malformed replies.
var (
	ErrTruncated         = errors.New("truncated")
	ErrOversized         = errors.New("oversized")
	ErrWrongVersion      = errors.New("wrong version")
	ErrWrongOpcode       = errors.New("wrong opcode")
	ErrWrongInternalPort = errors.New("wrong internal port")
	ErrZeroPort          = errors.New("external port 0")
	ErrBadLifetime       = errors.New("bad lifetime")
)

// ReplyError is a reply that failed validation.
type ReplyError struct {
	Kind   error  // one of the Err* kinds
	Detail string // what was wrong, with the values seen
	Packet []byte // the reply as received
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("malformed NAT-PMP reply: %s (% x)", e.Detail, e.Packet)
}

// Unwrap makes errors.Is match both ErrMalformed and the kind.
func (e *ReplyError) Unwrap() []error { return []error{ErrMalformed, e.Kind} }

func malformed(kind error, b []byte, format string, args ...any) error {
	return &ReplyError{Kind: kind, Detail: fmt.Sprintf(format, args...), Packet: append([]byte(nil), b...)}
}

// ResultCode is a NAT-PMP result code (RFC 6886 §3.5).
type ResultCode uint16

// Result codes.
const (
	Success            ResultCode = 0
	UnsupportedVersion ResultCode = 1
	NotAuthorized      ResultCode = 2 // "Not Authorized/Refused"
	NetworkFailure     ResultCode = 3
	OutOfResources     ResultCode = 4
	UnsupportedOpcode  ResultCode = 5
)

func (c ResultCode) String() string {
	switch c {
	case Success:
		return "success"
	case UnsupportedVersion:
		return "unsupported version"
	case NotAuthorized:
		return "not authorized/refused"
	case NetworkFailure:
		return "network failure"
	case OutOfResources:
		return "out of resources"
	case UnsupportedOpcode:
		return "unsupported opcode"
	}
	return "unknown result code"
}

// ResultError is a well-formed reply whose result code is not Success.
type ResultError struct {
	Op   string // "udp", "tcp" or "external address"
	Code ResultCode
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("gateway refused %s request: result %d (%s)", e.Op, uint16(e.Code), e.Code)
}

// TimeoutError is returned when no valid reply came: every try timed out,
// or the context's deadline came first (then Unwrap also yields
// context.DeadlineExceeded).
type TimeoutError struct {
	Gateway netip.AddrPort
	Tries   int
	Waited  time.Duration
	// Strays counts replies that came from another address than the
	// gateway; RFC 6886 §3.1 says to discard them, which this client
	// does, but they are the best clue when the configured gateway is
	// wrong.
	Strays       int
	StraySources []netip.AddrPort // distinct sources, at most a few
	Cause        error            // the context error, if any
}

func (e *TimeoutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no NAT-PMP reply from %s after %d tries (%.1f s)", e.Gateway, e.Tries, e.Waited.Seconds())
	if e.Strays > 0 {
		srcs := make([]string, len(e.StraySources))
		for i, s := range e.StraySources {
			srcs[i] = s.String()
		}
		fmt.Fprintf(&b, "; ignored %d replies from %s (not the gateway)", e.Strays, strings.Join(srcs, ", "))
	} else {
		fmt.Fprintf(&b, " (is the gateway address right, and is udp port %d to it allowed?)", e.Gateway.Port())
	}
	return b.String()
}

// Unwrap makes errors.Is match ErrTimeout and the context error.
func (e *TimeoutError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrTimeout, e.Cause}
	}
	return []error{ErrTimeout}
}

// ErrPortMismatch is returned by MapProton when the UDP and TCP mappings
// got different external ports: an application can listen on one port
// number only.
var ErrPortMismatch = errors.New("udp and tcp mappings got different external ports")
