package natpmp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Opcodes (RFC 6886 §3.2, §3.3). A reply carries the request's opcode with
// the top bit set.
const (
	opExternalAddress = 0
	opMapUDP          = 1
	opMapTCP          = 2
	opReply           = 128
)

// Sizes of successful replies. Error replies may be shorter (§3.5: an
// "unsupported version" reply is the 8-byte header), so the size is checked
// only after the result code.
const (
	headerSize          = 8 // version, opcode, result code, epoch
	externalAddressSize = 12
	mappingSize         = 16
)

// MaxLifetime is the longest mapping lifetime this client requests or
// accepts. A reply granting more is refused as malformed rather than
// capped: no port-forwarding VPN grants a day (ProtonVPN grants 60 s), a
// value like 0xffffffff is a broken gateway or a corrupted packet, and
// believing it would stop renewals for days.
const MaxLifetime = 24 * time.Hour

func externalAddressRequest() []byte { return []byte{0, opExternalAddress} }

func mappingRequest(op byte, internal, external uint16, lifetimeSec uint32) []byte {
	b := make([]byte, 12)
	b[1] = op // b[0] version 0, b[2:4] reserved, must be 0
	binary.BigEndian.PutUint16(b[4:], internal)
	binary.BigEndian.PutUint16(b[6:], external)
	binary.BigEndian.PutUint32(b[8:], lifetimeSec)
	return b
}

// header checks what every reply must satisfy and returns the epoch. Its
// order matters: a non-zero result code is reported even for a short error
// reply, but only after version and opcode proved the packet is a reply to
// this request at all.
func header(b []byte, reqOp byte, size int) (epoch uint32, err error) {
	if len(b) < 4 {
		return 0, malformed(ErrTruncated, b, "%d bytes, shorter than the 4-byte minimum", len(b))
	}
	if b[0] != 0 {
		hint := ""
		if b[0] == 2 {
			hint = " (a PCP server, RFC 6887, that does not speak NAT-PMP)"
		}
		return 0, malformed(ErrWrongVersion, b, "version %d, want 0%s", b[0], hint)
	}
	if want := reqOp | opReply; b[1] != want {
		return 0, malformed(ErrWrongOpcode, b, "opcode %d, want %d", b[1], want)
	}
	if code := ResultCode(binary.BigEndian.Uint16(b[2:4])); code != Success {
		return 0, &ResultError{Op: opName(reqOp), Code: code}
	}
	switch {
	case len(b) < size:
		return 0, malformed(ErrTruncated, b, "%d bytes, want %d", len(b), size)
	case len(b) > size:
		return 0, malformed(ErrOversized, b, "%d bytes, want %d", len(b), size)
	}
	return binary.BigEndian.Uint32(b[4:8]), nil
}

func parseExternalAddress(b []byte) (netip.Addr, uint32, error) {
	epoch, err := header(b, opExternalAddress, externalAddressSize)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return netip.AddrFrom4([4]byte(b[8:12])), epoch, nil
}

// parseMapping decodes a mapping reply and checks it against the request:
// same internal port, and for a request that creates a mapping (lifetime >
// 0) a real external port and a granted lifetime in (0, MaxLifetime]. A
// deletion (lifetime 0) is answered with port 0 and lifetime 0 (§3.4), so
// those checks do not apply to it.
func parseMapping(b []byte, reqOp byte, internal uint16, lifetimeSec uint32) (Mapping, error) {
	epoch, err := header(b, reqOp, mappingSize)
	if err != nil {
		return Mapping{}, err
	}
	m := Mapping{
		Proto:    opName(reqOp),
		Internal: binary.BigEndian.Uint16(b[8:10]),
		External: binary.BigEndian.Uint16(b[10:12]),
		Lifetime: time.Duration(binary.BigEndian.Uint32(b[12:16])) * time.Second,
		Epoch:    epoch,
	}
	if m.Internal != internal {
		return Mapping{}, malformed(ErrWrongInternalPort, b, "internal port %d, requested %d", m.Internal, internal)
	}
	if lifetimeSec == 0 {
		return m, nil
	}
	switch {
	case m.Lifetime == 0:
		return Mapping{}, malformed(ErrBadLifetime, b, "granted lifetime 0 for a request of %d s (the mapping does not exist)", lifetimeSec)
	case m.Lifetime > MaxLifetime:
		return Mapping{}, malformed(ErrBadLifetime, b, "granted lifetime %d s, more than the %v this client believes", m.Lifetime/time.Second, MaxLifetime)
	case m.External == 0:
		return Mapping{}, malformed(ErrZeroPort, b, "external port 0 with lifetime %d s", m.Lifetime/time.Second)
	}
	return m, nil
}

func opName(op byte) string {
	switch op {
	case opExternalAddress:
		return "external address"
	case opMapUDP:
		return "udp"
	case opMapTCP:
		return "tcp"
	}
	return fmt.Sprintf("opcode %d", op)
}
