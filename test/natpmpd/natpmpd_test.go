package natpmpd

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// exchange sends req to s from a fresh socket and returns the reply, or
// nil after 200 ms of silence.
func exchange(t *testing.T, s *Server, req []byte) []byte {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mapReq(op byte, internal, external uint16, life uint32) []byte {
	b := []byte{0, op, 0, 0}
	b = binary.BigEndian.AppendUint16(b, internal)
	b = binary.BigEndian.AppendUint16(b, external)
	return binary.BigEndian.AppendUint32(b, life)
}

// TestRFCBehaviour: what a real NAT-PMP server does with odd requests
// (RFC 6886 §3.5), so that tests against this server mean something.
func TestRFCBehaviour(t *testing.T) {
	s := start(t)
	tests := []struct {
		name string
		req  []byte
		want []byte // nil: no reply
	}{
		{"external address", []byte{0, 0}, []byte{0, 128, 0, 0, 0, 0, 0, 0, 198, 51, 100, 7}},
		{"proton udp", mapReq(1, 0, 1, 60), []byte{0, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0x96, 0x86, 0, 0, 0, 60}},
		{"lifetime capped", mapReq(2, 0, 1, 3600), []byte{0, 130, 0, 0, 0, 0, 0, 0, 0, 0, 0x96, 0x86, 0, 0, 0, 60}},
		{"delete", mapReq(1, 0, 0, 0), []byte{0, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"version 1", []byte{1, 0}, []byte{0, 128, 0, 1, 0, 0, 0, 0}},
		{"unknown opcode", []byte{0, 7, 1, 2}, []byte{0, 135, 0, 5}},
		{"a reply is ignored", []byte{0, 128, 0, 0}, nil},
		{"short mapping ignored", mapReq(1, 0, 1, 60)[:10], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, s, tt.req)
			if got != nil {
				binary.BigEndian.PutUint32(got[4:8], 0) // epoch varies
				if len(tt.want) == 4 {
					got = got[:4]
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reply mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScript(t *testing.T) {
	s := start(t)
	s.Script(Refuse, Silent)
	s.ScriptAt(4, Truncated)
	s.ChangePortAt(2, 40000)
	r1 := exchange(t, s, mapReq(1, 0, 1, 60)) // round 1, refused
	r2 := exchange(t, s, mapReq(1, 0, 1, 60)) // round 2, silent
	r3 := exchange(t, s, mapReq(2, 0, 1, 60)) // round 2's TCP
	r4 := exchange(t, s, mapReq(1, 0, 1, 60)) // round 3, truncated
	if r1 == nil || binary.BigEndian.Uint16(r1[2:4]) != 2 {
		t.Errorf("refused reply % x", r1)
	}
	if r2 != nil {
		t.Errorf("silent reply % x", r2)
	}
	if r3 == nil || binary.BigEndian.Uint16(r3[10:12]) != 40000 {
		t.Errorf("round 2 tcp reply % x, want port 40000", r3)
	}
	if len(r4) != 12 {
		t.Errorf("truncated reply % x", r4)
	}
	var faults []Fault
	for _, r := range s.Requests() {
		faults = append(faults, r.Fault)
	}
	if diff := cmp.Diff([]Fault{Refuse, Silent, Normal, Truncated}, faults); diff != "" {
		t.Errorf("faults (-want +got):\n%s", diff)
	}
}

func TestParseFault(t *testing.T) {
	for f := Normal; f <= HugeLifetime; f++ {
		got, err := ParseFault(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFault(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFault("loud"); err == nil {
		t.Error("unknown fault accepted")
	}
}

func TestModeAndChangeNext(t *testing.T) {
	s := start(t)
	s.Script(Refuse)
	s.SetMode(Silent)
	if r := exchange(t, s, mapReq(1, 0, 1, 60)); r == nil || binary.BigEndian.Uint16(r[2:4]) != 2 {
		t.Errorf("queued fault before the mode: reply % x, want refused", r)
	}
	if r := exchange(t, s, mapReq(1, 0, 1, 60)); r != nil {
		t.Errorf("silent mode: reply % x", r)
	}
	s.SetMode(Normal)
	// Rounds so far: 2 (both UDP requests created a mapping, replies or not).
	if got := s.ChangePortNext(40001); got != 3 {
		t.Errorf("ChangePortNext = round %d, want 3", got)
	}
	if r := exchange(t, s, mapReq(2, 0, 1, 60)); r == nil || binary.BigEndian.Uint16(r[10:12]) != 38534 {
		t.Errorf("TCP of round 2: % x, want the old port", r)
	}
	for _, op := range []byte{1, 2} {
		if r := exchange(t, s, mapReq(op, 0, 1, 60)); r == nil || binary.BigEndian.Uint16(r[10:12]) != 40001 {
			t.Errorf("op %d of round 3: % x, want port 40001", op, r)
		}
	}
}
