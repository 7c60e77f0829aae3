package wireguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestBuildConfig(t *testing.T) {
	priv, psk := genKey(t), genKey(t)
	pub1, pub2 := genKey(t).PublicKey(), genKey(t).PublicKey()
	wg := &plan.WireGuard{
		ListenPort: 51821,
		FwMark:     7,
		Pinning:    &plan.Pinning{FwMark: 0x5f82c3c0, Table: "vpnc_pin_x"},
		Peers: []plan.Peer{
			{PublicKey: pub1.String(), Endpoint: &plan.Endpoint{Host: "vpn.example", Port: 51820},
				AllowedIPs: []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0")}, PersistentKeepalive: 25},
			{PublicKey: pub2.String(), AllowedIPs: []netip.Prefix{pfx("10.9.0.0/16")}},
		},
	}
	keys := &Keys{Private: Secret{priv}, Preshared: []*Secret{{psk}, nil}}
	eps := []netip.AddrPort{netip.MustParseAddrPort("[::ffff:198.51.100.7]:51820"), {}}
	got, err := BuildConfig(wg, keys, eps)
	if err != nil {
		t.Fatal(err)
	}
	port, mark, ka25, ka0 := 51821, 0x5f82c3c0, 25*time.Second, time.Duration(0)
	want := wgtypes.Config{
		PrivateKey:   &priv,
		ListenPort:   &port,
		FirewallMark: &mark,
		ReplacePeers: true,
		Peers: []wgtypes.PeerConfig{
			{PublicKey: pub1, PresharedKey: &psk, Endpoint: &net.UDPAddr{IP: net.IPv4(198, 51, 100, 7).To4(), Port: 51820},
				PersistentKeepaliveInterval: &ka25, ReplaceAllowedIPs: true,
				AllowedIPs: []net.IPNet{
					{IP: net.IP{0, 0, 0, 0}, Mask: net.CIDRMask(0, 32)},
					{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
				}},
			{PublicKey: pub2, PersistentKeepaliveInterval: &ka0, ReplaceAllowedIPs: true,
				AllowedIPs: []net.IPNet{{IP: net.IP{10, 9, 0, 0}, Mask: net.CIDRMask(16, 32)}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BuildConfig (-want +got):\n%s", diff)
	}

	// Without pinning the configured mark is used; no listen port means
	// "random" (left unset).
	wg.Pinning, wg.ListenPort = nil, 0
	got, err = BuildConfig(wg, keys, eps)
	if err != nil {
		t.Fatal(err)
	}
	if *got.FirewallMark != 7 || got.ListenPort != nil {
		t.Errorf("mark %d, listen port %v; want 7, unset", *got.FirewallMark, got.ListenPort)
	}

	wg.Peers[1].PublicKey = "not a key"
	if _, err := BuildConfig(wg, keys, eps); err == nil {
		t.Error("bad public key accepted")
	}
}

func TestRoutesAndAddresses(t *testing.T) {
	n := &plan.Namespace{WireGuard: plan.WireGuard{
		AllowedIPsAsRoutes: true,
		Addresses:          []netip.Prefix{pfx("10.64.0.2/32"), pfx("fd00::2/128")},
		Peers: []plan.Peer{
			{AllowedIPs: []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0")}},
			{AllowedIPs: []netip.Prefix{pfx("0.0.0.0/0"), pfx("10.0.0.0/8")}},
		},
	}}
	// IPv6 disabled: IPv6 routes and addresses are left out instead of
	// failing the tunnel (reference defect §8.4).
	if diff := cmp.Diff([]netip.Prefix{pfx("0.0.0.0/0"), pfx("10.0.0.0/8")}, Routes(n), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}
	if got := Addresses(n); len(got) != 1 || got[0] != pfx("10.64.0.2/32") {
		t.Errorf("Addresses = %v", got)
	}
	n.IPv6 = true
	if got := Routes(n); len(got) != 3 {
		t.Errorf("Routes with IPv6 = %v", got)
	}
	if got := Addresses(n); len(got) != 2 {
		t.Errorf("Addresses with IPv6 = %v", got)
	}
	n.WireGuard.AllowedIPsAsRoutes = false
	if got := Routes(n); got != nil {
		t.Errorf("Routes without allowedIPsAsRoutes = %v", got)
	}
}

type fakeResolver struct {
	answers map[string][]netip.Addr
	err     error
	calls   int
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	a, ok := f.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

func TestResolveEndpoints(t *testing.T) {
	r := &fakeResolver{answers: map[string][]netip.Addr{
		"dual.test": {netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:203.0.113.5"), netip.MustParseAddr("203.0.113.6")},
		"v6.test":   {netip.MustParseAddr("2001:db8::2")},
	}}
	peers := []plan.Peer{
		{Endpoint: &plan.Endpoint{Host: "198.51.100.1", Port: 1}},
		{},
		{Endpoint: &plan.Endpoint{Host: "dual.test", Port: 2}},
		{Endpoint: &plan.Endpoint{Host: "v6.test", Port: 3}},
	}
	got, err := ResolveEndpoints(context.Background(), r, peers)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.1:1"), {},
		netip.MustParseAddrPort("203.0.113.5:2"), netip.MustParseAddrPort("[2001:db8::2]:3"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if r.calls != 2 {
		t.Errorf("resolver called %d times; literals must not be looked up", r.calls)
	}
	if len(PinSet(got)) != 3 {
		t.Errorf("PinSet = %v", PinSet(got))
	}
	r.err = errors.New("SERVFAIL")
	if _, err := ResolveEndpoints(context.Background(), r, peers); err == nil {
		t.Error("resolution failure not reported")
	}
}

func TestRefreshSchedule(t *testing.T) {
	host := func(h string, s int) plan.Peer {
		return plan.Peer{Endpoint: &plan.Endpoint{Host: h, Port: 1}, EndpointRefreshSeconds: s}
	}
	peers := []plan.Peer{host("a.test", 30), host("b.test", 0), host("192.0.2.1", 5), {}, host("c.test", 10)}
	want := []time.Duration{30 * time.Second, 5 * time.Second, 0, 0, 10 * time.Second}
	for i, w := range want {
		if got := RefreshInterval(peers, i); got != w {
			t.Errorf("peer %d: interval %s, want %s", i, got, w)
		}
	}
}
