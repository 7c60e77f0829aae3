//go:build linux

package natpmpd_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/natpmp"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd"
	"github.com/vpn-confinement/vpn-confinement/test/natpmpd/pmpnet"
)

// Root tests: Debian's natpmpc (libnatpmp) against this responder, and our
// client over a veth pair, in namespaces made here inside test/sandbox.sh
// (nothing touches the sandbox's own namespace, let alone the machine's).
//
// natpmpc always sends to port 5351 and works against 127.0.0.1 as well as
// a real gateway address; both are covered. Debian 12's natpmpc
// (20150609) prints "liftime", later releases "lifetime".

var mapped = regexp.MustCompile(`Mapped public port (\d+) protocol (UDP|TCP) to local port 0 lif(?:e)?time 60\n`)

func needNatpmpc(t *testing.T) {
	t.Helper()
	testutil.RequireSandbox(t)
	if _, err := exec.LookPath("natpmpc"); err != nil {
		t.Skip("skipping: natpmpc not installed (apt-get install natpmpc)")
	}
}

// natpmpc runs natpmpc in ns (a child forked from a thread inside ns
// starts there) and returns its combined output and error.
func natpmpc(t *testing.T, ns *netns.NetNS, args ...string) (string, error) {
	t.Helper()
	var out []byte
	var runErr error
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, runErr = exec.CommandContext(ctx, "natpmpc", args...).CombinedOutput()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out), runErr
}

func wantMapped(t *testing.T, out string, port uint16, proto string) {
	t.Helper()
	m := mapped.FindStringSubmatch(out)
	if m == nil || m[1] != fmt.Sprint(port) || m[2] != proto {
		t.Errorf("natpmpc output does not show port %d %s:\n%s", port, proto, out)
	}
}

func TestNatpmpcLoopback(t *testing.T) {
	needNatpmpc(t)
	ns := pmpnet.NewNS(t)
	// 1.2.3.4: newer natpmpc refuses reserved ranges as public addresses.
	s := pmpnet.StartIn(t, ns, natpmpd.Config{Listen: "127.0.0.1:5351", External: netip.MustParseAddr("1.2.3.4")})
	s.ChangePortAt(2, 40000)

	out, err := natpmpc(t, ns, "-a", "1", "0", "udp", "60", "-g", "127.0.0.1")
	if err != nil {
		t.Fatalf("natpmpc: %v\n%s", err, out)
	}
	wantMapped(t, out, 38534, "UDP")
	if !strings.Contains(out, "Public IP address : 1.2.3.4") {
		t.Errorf("no public address in:\n%s", out)
	}
	out, err = natpmpc(t, ns, "-a", "1", "0", "tcp", "60", "-g", "127.0.0.1")
	if err != nil {
		t.Fatalf("natpmpc: %v\n%s", err, out)
	}
	wantMapped(t, out, 38534, "TCP")
	// Round 2: the "renewal" gets the new port, as Proton may do.
	out, err = natpmpc(t, ns, "-a", "1", "0", "udp", "60", "-g", "127.0.0.1")
	if err != nil {
		t.Fatalf("natpmpc: %v\n%s", err, out)
	}
	wantMapped(t, out, 40000, "UDP")

	// What natpmpc makes of the faults: refusal is an error (libnatpmp
	// NATPMP_ERR_NOTAUTHORIZED, -51), as in our client.
	s.Script(natpmpd.Normal, natpmpd.Refuse)
	out, err = natpmpc(t, ns, "-a", "1", "0", "udp", "60", "-g", "127.0.0.1")
	if err == nil || !strings.Contains(out, "returned -51") {
		t.Errorf("refused: natpmpc err %v:\n%s", err, out)
	}
}

// TestNatpmpcNoServer shows the ground truth behind natpmp.ErrNoNATPMP:
// with nothing on udp 5351 natpmpc fails at once with errno 111
// (connection refused), the message Proton users see with a key made
// without NAT-PMP.
func TestNatpmpcNoServer(t *testing.T) {
	needNatpmpc(t)
	ns := pmpnet.NewNS(t)
	start := time.Now()
	out, err := natpmpc(t, ns, "-a", "1", "0", "udp", "60", "-g", "127.0.0.1")
	if err == nil || !strings.Contains(out, "errno=111") {
		t.Errorf("natpmpc err %v:\n%s", err, out)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("natpmpc took %v", el)
	}
}

// TestVeth is the realistic shape: the gateway 10.2.0.1 (Proton's address)
// in one namespace, the client 10.2.0.2 in another, a veth between them;
// 10.2.0.3 is a second gateway-side address that stray replies come from.
func TestVeth(t *testing.T) {
	needNatpmpc(t)
	tp := pmpnet.NewTopology(t)
	clNS := tp.Client
	s := pmpnet.StartIn(t, tp.GW, natpmpd.Config{Listen: "10.2.0.1:5351", Stray: "10.2.0.3:5351", External: netip.MustParseAddr("1.2.3.4")})

	out, err := natpmpc(t, clNS, "-a", "1", "0", "udp", "60", "-g", "10.2.0.1")
	if err != nil {
		t.Fatalf("natpmpc: %v\n%s", err, out)
	}
	wantMapped(t, out, 38534, "UDP")

	c := &natpmp.Client{
		Gateway:        natpmp.ProtonGateway,
		InitialTimeout: 20 * time.Millisecond,
		MaxTries:       4,
		ListenPacket:   pmpnet.ListenIn(clNS, natpmp.Listen),
	}
	ctx := context.Background()
	p, err := c.MapProton(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Port() != 38534 {
		t.Errorf("port %d", p.Port())
	}
	if r := s.Requests(); r[len(r)-1].From.Addr() != netip.MustParseAddr("10.2.0.2") {
		t.Errorf("request came from %v", r[len(r)-1].From)
	}

	// Strays from 10.2.0.3 are counted, the real reply then accepted.
	s.Script(natpmpd.WrongSource, natpmpd.StrayThenReply)
	strays := 0
	c.Logf = func(string, ...any) { strays++ }
	if _, err := c.Map(ctx, "udp", 0, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if strays != 2 {
		t.Errorf("%d strays logged, want 2", strays)
	}

	// natpmpc agrees that a stray is not an answer: it waits for more.
	s.Script(natpmpd.WrongSource)
	out, err = natpmpc(t, clNS, "-a", "1", "0", "udp", "60", "-g", "10.2.0.1")
	if err != nil {
		t.Fatalf("natpmpc: %v\n%s", err, out)
	}
	wantMapped(t, out, 38534, "UDP")

	// With the server gone the gateway answers ICMP port unreachable.
	s.Close()
	_, err = c.MapProton(ctx)
	if !errors.Is(err, natpmp.ErrNoNATPMP) {
		t.Errorf("after close: %v", err)
	}
}
