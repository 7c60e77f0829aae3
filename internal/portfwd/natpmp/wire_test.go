package natpmp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRequests(t *testing.T) {
	if diff := cmp.Diff([]byte{0, 0}, externalAddressRequest()); diff != "" {
		t.Errorf("external address request (-want +got):\n%s", diff)
	}
	// natpmpc -a 1 0 udp 60 sends exactly this (RFC 6886 §3.3 layout).
	want := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 60}
	if diff := cmp.Diff(want, mappingRequest(opMapUDP, 0, 1, 60)); diff != "" {
		t.Errorf("mapping request (-want +got):\n%s", diff)
	}
}

func TestParseExternalAddress(t *testing.T) {
	b := []byte{0, 128, 0, 0, 0, 0, 1, 2, 185, 159, 157, 7}
	addr, epoch, err := parseExternalAddress(b)
	if err != nil {
		t.Fatal(err)
	}
	if addr != netip.MustParseAddr("185.159.157.7") || epoch != 258 {
		t.Errorf("got %v epoch %d", addr, epoch)
	}
}

func TestParseMapping(t *testing.T) {
	b := []byte{0, 129, 0, 0, 0, 0, 0, 9, 0, 0, 0x96, 0x86, 0, 0, 0, 60}
	got, err := parseMapping(b, opMapUDP, 0, 60)
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{Proto: "udp", Internal: 0, External: 38534, Lifetime: 60 * time.Second, Epoch: 9}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	// A deletion is answered with port 0 and lifetime 0, which is fine.
	del := []byte{0, 130, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := parseMapping(del, opMapTCP, 0, 0); err != nil {
		t.Errorf("deletion reply: %v", err)
	}
}

// TestMalformed lists every check of a reply with the kind it must
// report; the detail strings are what an operator reads in the journal.
func TestMalformed(t *testing.T) {
	good := func() []byte { return []byte{0, 129, 0, 0, 0, 0, 0, 9, 0, 0, 0x96, 0x86, 0, 0, 0, 60} }
	edit := func(f func([]byte) []byte) []byte { return f(good()) }
	tests := []struct {
		name   string
		b      []byte
		kind   error
		detail string
	}{
		{"empty", nil, ErrTruncated, "0 bytes"},
		{"three bytes", []byte{0, 129, 0}, ErrTruncated, "shorter than the 4-byte minimum"},
		{"truncated", good()[:12], ErrTruncated, "12 bytes, want 16"},
		{"oversized", append(good(), 0), ErrOversized, "17 bytes, want 16"},
		{"version 1", edit(func(b []byte) []byte { b[0] = 1; return b }), ErrWrongVersion, "version 1, want 0"},
		{"pcp", edit(func(b []byte) []byte { b[0] = 2; return b }), ErrWrongVersion, "PCP"},
		{"request echoed", edit(func(b []byte) []byte { b[1] = 1; return b }), ErrWrongOpcode, "opcode 1, want 129"},
		{"tcp reply to udp", edit(func(b []byte) []byte { b[1] = 130; return b }), ErrWrongOpcode, "opcode 130, want 129"},
		{"internal port", edit(func(b []byte) []byte { b[9] = 7; return b }), ErrWrongInternalPort, "internal port 7, requested 0"},
		{"zero port", edit(func(b []byte) []byte { b[10], b[11] = 0, 0; return b }), ErrZeroPort, "external port 0 with lifetime 60 s"},
		{"zero lifetime", edit(func(b []byte) []byte { b[15] = 0; return b }), ErrBadLifetime, "granted lifetime 0"},
		{"huge lifetime", edit(func(b []byte) []byte { copy(b[12:], []byte{255, 255, 255, 255}); return b }), ErrBadLifetime, "4294967295 s"},
		{"just over a day", edit(func(b []byte) []byte { copy(b[12:], []byte{0, 1, 0x51, 0x81}); return b }), ErrBadLifetime, "86401 s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMapping(tt.b, opMapUDP, 0, 60)
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, tt.kind) {
				t.Fatalf("error %v: want ErrMalformed and %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not say %q", err, tt.detail)
			}
		})
	}
	// Exactly a day is still believed.
	day := edit(func(b []byte) []byte { copy(b[12:], []byte{0, 1, 0x51, 0x80}); return b })
	if _, err := parseMapping(day, opMapUDP, 0, 60); err != nil {
		t.Errorf("lifetime 86400: %v", err)
	}
}

// TestResultCodes checks the RFC names, and that a short error reply (the
// 8-byte form §3.5 allows) reports its result code, not its size.
func TestResultCodes(t *testing.T) {
	names := map[ResultCode]string{
		UnsupportedVersion: "unsupported version",
		NotAuthorized:      "not authorized/refused",
		NetworkFailure:     "network failure",
		OutOfResources:     "out of resources",
		UnsupportedOpcode:  "unsupported opcode",
		9:                  "unknown result code",
	}
	for code, name := range names {
		for _, size := range []int{8, 16} {
			b := make([]byte, size)
			b[1] = 129
			b[3] = byte(code)
			_, err := parseMapping(b, opMapUDP, 0, 60)
			var re *ResultError
			if !errors.As(err, &re) || re.Code != code {
				t.Fatalf("code %d, %d bytes: error %v", code, size, err)
			}
			if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "udp") {
				t.Errorf("code %d: %q does not name %q", code, err, name)
			}
		}
	}
}
