package piafake

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/pia"
)

// start serves h over TLS with a certificate for name from ca.
func start(t *testing.T, ca *CA, name string, h http.Handler) netip.AddrPort {
	t.Helper()
	cert, err := ca.Issue([]string{name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String())
}

// TestAgainstClient cross-checks the fake with internal/portfwd/pia: token,
// signature, bind, 409, an altered payload, expiry.
func TestAgainstClient(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	s := New("p1234567", "s3cret")
	s.Queue(Grant{Port: 47001, Expires: time.Hour}, Grant{Port: 47002, Expires: -time.Second})
	gw := start(t, ca, "pf-test.privacy.network", s.GatewayHandler())
	tok := start(t, ca, "token.pia.test", s.TokenHandler())

	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := pia.LoadCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	// The token server is reached by name; resolve that name to the test
	// server the way the namespace's DNS would.
	tc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tok.String())
		},
	}}
	ts := &pia.TokenSource{Credentials: credentials.Credentials{Username: "p1234567", Password: "s3cret"},
		URL: "https://token.pia.test/api/client/v2/token", Client: tc}
	g := &pia.Gateway{Addr: gw.Addr(), Port: gw.Port(), Hostname: "pf-test.privacy.network", RootCAs: pool}
	fw := &pia.Forwarder{Gateway: g, Token: ts.Token}
	ctx := context.Background()

	l, err := fw.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Port != 47001 {
		t.Errorf("port %d, want 47001", l.Port)
	}
	s.SetBusy(47001, true)
	if _, err := fw.Renew(ctx, l); !errors.Is(err, pia.ErrPortBusy) || !errors.Is(err, lease.ErrReacquire) {
		t.Errorf("renew of a busy port: %v", err)
	}
	// The next signature has already expired: the client refuses it.
	if _, err := fw.Acquire(ctx); err == nil {
		t.Errorf("acquire of an expired grant succeeded")
	}
	// Wrong password: no token.
	ts.Credentials.Password = "wrong"
	if _, err := ts.Token(ctx); err == nil {
		t.Errorf("token with a wrong password")
	}
	var ops []string
	for _, e := range s.Events() {
		ops = append(ops, e.Op+":"+http.StatusText(e.Status)+":"+e.Note)
		if e.Op != "token" && e.Host != "pf-test.privacy.network:"+strconv.Itoa(int(gw.Port())) {
			t.Errorf("event %+v: Host is not the gateway's name", e)
		}
	}
	want := []string{"token:OK:", "getSignature:OK:", "bindPort:OK:", "bindPort:Conflict:busy",
		"token:OK:", "getSignature:OK:", "token:Unauthorized:bad credentials"}
	if len(ops) != len(want) {
		t.Fatalf("events %q, want %q", ops, want)
	}
	for i := range want {
		if ops[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, ops[i], want[i])
		}
	}
}
