//go:build linux

package natpmp

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vpn-confinement/vpn-confinement/test/natpmpd/pmpnet"
)

// TestMiniupnpd checks the client against a real NAT-PMP server, Debian's
// miniupnpd (nftables build), in the Proton-shaped test network: the
// gateway namespace gets a "WAN" veth with 1.2.3.4 (no traffic leaves the
// namespace) and the nftables chains miniupnpd fills in.
//
// It also shows that the Proton convention is not RFC 6886: an RFC
// server refuses internal port 0 with a lifetime (result 2), which is why
// MapProton is Proton-only.
func TestMiniupnpd(t *testing.T) {
	for _, bin := range []string{"miniupnpd", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s not installed (apt-get install miniupnpd-nftables nftables)", bin)
		}
	}
	tp := pmpnet.NewTopology(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "wan1"}
	if err := pmpnet.Handle(t, tp.GW).LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	pmpnet.LinkUp(t, tp.GW, "wan1")
	pmpnet.LinkUp(t, tp.GW, "wan0", "1.2.3.4/24")

	dir := t.TempDir()
	ruleset := `table inet filter {
	chain miniupnpd {
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
	chain forward {
		type filter hook forward priority 0; policy drop;
		jump miniupnpd
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
	}
}
`
	nft := exec.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(ruleset)
	var nftOut bytes.Buffer
	nft.Stdout, nft.Stderr = &nftOut, &nftOut
	if err := pmpnet.Command(tp.GW, nft)(); err != nil {
		t.Fatal(err)
	}
	if err := nft.Wait(); err != nil {
		t.Fatalf("nft: %v\n%s", err, nftOut.String())
	}
	conf := filepath.Join(dir, "miniupnpd.conf")
	os.WriteFile(conf, []byte(`ext_ifname=wan0
listening_ip=`+tp.GWIf+`
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
system_uptime=no
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1024-65535 10.2.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`), 0o644)
	var log bytes.Buffer
	d := exec.Command("miniupnpd", "-d", "-f", conf, "-P", filepath.Join(dir, "pid"))
	d.Stdout, d.Stderr = &log, &log
	if err := pmpnet.Command(tp.GW, d)(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Process.Kill()
		d.Wait()
		if t.Failed() {
			t.Logf("miniupnpd log:\n%s", log.String())
		}
	})

	c := &Client{Gateway: ProtonGateway, InitialTimeout: 50 * time.Millisecond, MaxTries: 6,
		ListenPacket: pmpnet.ListenIn(tp.Client, Listen)}
	ctx := context.Background()

	// miniupnpd needs a moment to open its socket: until then the
	// gateway answers port unreachable.
	var addr netip.Addr
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if addr, _, err = c.ExternalAddress(ctx); !errors.Is(err, ErrNoNATPMP) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if addr != netip.MustParseAddr("1.2.3.4") {
		t.Errorf("external address %v", addr)
	}

	m, err := c.Map(ctx, "udp", 6881, 6881, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.Internal != 6881 || m.External != 6881 || m.Lifetime != time.Minute {
		t.Errorf("udp mapping %+v", m)
	}
	// No suggestion: miniupnpd uses the internal port.
	m, err = c.Map(ctx, "tcp", 7000, 0, time.Minute)
	if err != nil || m.External != 7000 {
		t.Errorf("tcp mapping %+v, %v", m, err)
	}
	// The mapping really exists: miniupnpd wrote its DNAT rule.
	list := exec.Command("nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")
	var rules bytes.Buffer
	list.Stdout = &rules
	if err := pmpnet.Command(tp.GW, list)(); err == nil {
		list.Wait()
	}
	if !strings.Contains(rules.String(), "dnat ip to 10.2.0.2:6881") {
		t.Errorf("no DNAT rule for the mapping:\n%s", rules.String())
	}

	// The Proton request, refused by an RFC server.
	_, err = c.MapProton(ctx)
	var re *ResultError
	if !errors.As(err, &re) || re.Code != NotAuthorized {
		t.Errorf("MapProton against miniupnpd: %v, want result 2", err)
	}

	// Deleting: lifetime 0 is answered with port 0 and lifetime 0.
	m, err = c.Map(ctx, "udp", 6881, 0, 0)
	if err != nil || m.External != 0 || m.Lifetime != 0 {
		t.Errorf("delete: %+v, %v", m, err)
	}
	if err := c.UnmapProton(ctx); err != nil {
		t.Errorf("delete all: %v", err)
	}
}
