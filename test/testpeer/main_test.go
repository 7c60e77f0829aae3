package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDNSWithGoResolver checks the hand-written DNS against a real client
// (Go's resolver, UDP and TCP) on loopback; no root needed.
func TestDNSWithGoResolver(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "dns.log")
	lf, err := openLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ans := netip.MustParseAddr("10.123.0.77")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveDNSUDP(pc, ans, lf)
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serveTCP(l, func(c net.Conn) { serveDNSTCP(c, ans, lf) })

	for _, proto := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, proto, pc.LocalAddr().String())
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err := r.LookupNetIP(ctx, "ip4", proto+".leak.example")
		cancel()
		if err != nil {
			t.Fatalf("%s lookup: %v", proto, err)
		}
		if len(got) != 1 || got[0] != ans {
			t.Errorf("%s answer %v, want %v", proto, got, ans)
		}
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Server != pc.LocalAddr().String() || !strings.HasPrefix(e.Client, "127.0.0.1:") {
			t.Errorf("log entry %+v", e)
		}
		seen[e.Proto+" "+e.QName] = true
	}
	for _, w := range []string{"udp udp.leak.example", "tcp tcp.leak.example"} {
		if !seen[w] {
			t.Errorf("query %q not logged (log: %v)", w, seen)
		}
	}
}

func TestParseQueryRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		make([]byte, 11),
		{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, // a response
		{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c},       // compressed name
		{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b'},      // truncated label
	} {
		if _, err := parseQuery(b); err == nil {
			t.Errorf("parseQuery(%v) accepted", b)
		}
	}
}

func TestAAAAIsNoData(t *testing.T) {
	q := []byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'x', 0, 0, 28, 0, 1}
	pq, err := parseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	r := pq.answer(netip.MustParseAddr("10.0.0.1"))
	if r[0] != 0xab || r[1] != 0xcd || r[2]&0x80 == 0 || r[7] != 0 || len(r) != len(q) {
		t.Errorf("AAAA answer %x", r)
	}
}
