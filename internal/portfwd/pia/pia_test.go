package pia

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
)

// Secrets used by the fakes; no error or log may contain them.
const (
	password  = "PASSWORD-s3cr3t&x=1"
	token     = "TOKEN-abc123+/="
	signature = "SIGNATURE-xyz789"
	hostname  = "nl-amsterdam.privacy.network"
)

var secrets = []string{password, token, signature}

func noSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range append(secrets, "TOKEN", "SIGNATURE", "PASSWORD") {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error leaks %q: %v", s, err)
		}
	}
}

// testCA makes a CA and a server certificate for hostname only (no IP
// SAN, like PIA's: dialling the IP must still verify by name).
func testCA(t *testing.T) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test PIA CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hostname},
		DNSNames:  []string{hostname},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeGateway implements getSignature and bindPort the way PIA's servers
// answer (shapes from the official script and gluetun).
type fakeGateway struct {
	mu       sync.Mutex
	port     uint16
	expires  time.Time
	busy     int       // answer the next n bindPort calls with 409
	status   string    // non-empty: getSignature answers this status
	nextPort uint16    // non-zero: the next getSignature hands out this port
	nextExp  time.Time // with nextPort: and this expiry
	binds    int
	sigs     int
	lastHost string
}

func (f *fakeGateway) payload() string {
	b, _ := json.Marshal(map[string]any{"token": token, "port": f.port, "expires_at": f.expires})
	return base64.StdEncoding.EncodeToString(b)
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastHost = r.Host
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	switch r.URL.Path {
	case "/getSignature":
		f.sigs++
		if q.Get("token") != token {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"status":"ERROR","message":"invalid token"}`)
			return
		}
		if f.status != "" {
			fmt.Fprintf(w, `{"status":%q,"message":"no port forwarding on this server for token %s"}`, f.status, token)
			return
		}
		if f.nextPort != 0 {
			f.port, f.nextPort = f.nextPort, 0
			if !f.nextExp.IsZero() {
				f.expires, f.nextExp = f.nextExp, time.Time{}
			}
		}
		fmt.Fprintf(w, `{"status":"OK","payload":%q,"signature":%q}`, f.payload(), signature)
	case "/bindPort":
		f.binds++
		if q.Get("payload") != f.payload() || q.Get("signature") != signature {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"ERROR","message":"bad payload or signature"}`)
			return
		}
		if f.busy > 0 {
			f.busy--
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"status":"ERROR","message":"port %d is busy. Request a new signature with payload %s"}`, f.port, q.Get("payload"))
			return
		}
		fmt.Fprint(w, `{"status":"OK","message":"port scheduled for add"}`)
	default:
		http.NotFound(w, r)
	}
}

func startGateway(t *testing.T, f *fakeGateway) *Gateway {
	t.Helper()
	caPEM, cert := testCA(t)
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.rsa.4096.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	return &Gateway{Addr: ap.Addr(), Port: ap.Port(), Hostname: hostname, RootCAs: pool}
}

func TestSignatureAndBind(t *testing.T) {
	exp := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Second)
	f := &fakeGateway{port: 47047, expires: exp}
	g := startGateway(t, f)
	ctx := context.Background()
	sig, err := g.GetSignature(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Port != 47047 || !sig.Expires.Equal(exp) || sig.Signature != signature {
		t.Errorf("signature %v", sig)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, sig); strings.Contains(s, signature) || strings.Contains(s, sig.Payload) {
			t.Errorf("%s prints the secrets: %s", verb, s)
		}
	}
	if err := g.BindPort(ctx, sig); err != nil {
		t.Fatal(err)
	}
	// The URL names the host (for the certificate), the dial goes to the IP.
	if want := fmt.Sprintf("%s:%d", hostname, g.Port); f.lastHost != want {
		t.Errorf("Host %q, want %q", f.lastHost, want)
	}

	f.busy = 1
	err = g.BindPort(ctx, sig)
	if !errors.Is(err, ErrPortBusy) || !errors.Is(err, lease.ErrReacquire) || !strings.Contains(err.Error(), "port 47047 is busy") {
		t.Errorf("busy: %v", err)
	}
	noSecrets(t, err)
}

func TestGatewayErrors(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()

	t.Run("bad token", func(t *testing.T) {
		g := startGateway(t, &fakeGateway{port: 1, expires: exp})
		_, err := g.GetSignature(ctx, "TOKEN-wrong")
		var ae *APIError
		if !errors.As(err, &ae) || ae.HTTPStatus != 401 || !strings.Contains(err.Error(), "invalid token") {
			t.Errorf("error %v", err)
		}
		noSecrets(t, err)
	})
	t.Run("status not OK", func(t *testing.T) {
		g := startGateway(t, &fakeGateway{port: 1, expires: exp, status: "ERROR"})
		_, err := g.GetSignature(ctx, token)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != "ERROR" || !strings.Contains(err.Error(), "no port forwarding on this server for token (hidden)") {
			t.Errorf("error %v", err)
		}
		noSecrets(t, err)
	})
	t.Run("wrong host name", func(t *testing.T) {
		g := startGateway(t, &fakeGateway{port: 1, expires: exp})
		g.Hostname = "de-frankfurt.privacy.network"
		_, err := g.GetSignature(ctx, token)
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Errorf("error %v, want a host name mismatch", err)
		}
		noSecrets(t, err)
	})
	t.Run("untrusted", func(t *testing.T) {
		g := startGateway(t, &fakeGateway{port: 1, expires: exp})
		g.RootCAs = x509.NewCertPool()
		other, _ := testCA(t)
		g.RootCAs.AppendCertsFromPEM(other)
		_, err := g.GetSignature(ctx, token)
		var ue x509.UnknownAuthorityError
		if !errors.As(err, &ue) {
			t.Errorf("error %v, want unknown authority", err)
		}
		noSecrets(t, err)
	})
	t.Run("unreachable", func(t *testing.T) {
		g := startGateway(t, &fakeGateway{port: 1, expires: exp})
		g.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, fmt.Errorf("dial %s: connection refused", addr)
		}
		_, err := g.GetSignature(ctx, token)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "getSignature") {
			t.Errorf("error %v", err)
		}
		noSecrets(t, err)
	})
	t.Run("missing config", func(t *testing.T) {
		for _, g := range []*Gateway{{Hostname: "h", RootCAs: x509.NewCertPool()}, {Addr: netip.MustParseAddr("127.0.0.1"), RootCAs: x509.NewCertPool()}, {Addr: netip.MustParseAddr("127.0.0.1"), Hostname: "h"}} {
			if _, err := g.GetSignature(ctx, token); err == nil {
				t.Errorf("gateway %+v accepted", g)
			}
		}
	})
}

func TestPayload(t *testing.T) {
	good := base64.StdEncoding.EncodeToString([]byte(`{"token":"t","port":5,"expires_at":"2026-07-01T10:00:00.123456789Z"}`))
	pl, err := decodePayload(good)
	if err != nil || pl.Port != 5 || pl.Expires.Nanosecond() != 123456789 {
		t.Errorf("payload %+v, %v", pl, err)
	}
	if _, err := decodePayload(strings.TrimRight(good, "=")); err != nil {
		t.Errorf("unpadded: %v", err)
	}
	for name, p := range map[string]string{
		"not base64": "!!!",
		"not json":   base64.StdEncoding.EncodeToString([]byte("TOKEN-x")),
		"no port":    base64.StdEncoding.EncodeToString([]byte(`{"token":"TOKEN-x","expires_at":"2026-07-01T10:00:00Z"}`)),
		"no expiry":  base64.StdEncoding.EncodeToString([]byte(`{"token":"TOKEN-x","port":5}`)),
	} {
		_, err := decodePayload(p)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		noSecrets(t, err)
	}
}

func TestLoadCA(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ca")
	os.WriteFile(p, []byte("not a certificate\n"), 0o644)
	if _, err := LoadCA(p); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("error %v", err)
	}
}

// fakeTokenAPI answers POST username/password like PIA's v2 token API.
func fakeTokenAPI(t *testing.T) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/client/v2/token" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.PostFormValue("username") != "p1234567" || r.PostFormValue("password") != password {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"authentication failed"}`)
			return
		}
		fmt.Fprintf(w, `{"token":%q}`, token)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestToken(t *testing.T) {
	srv := fakeTokenAPI(t)
	ts := &TokenSource{
		Credentials: credentials.Credentials{Username: "p1234567", Password: password},
		URL:         srv.URL + "/api/client/v2/token",
		Client:      srv.Client(),
	}
	got, err := ts.Token(context.Background())
	if err != nil || got != token {
		t.Fatalf("token %q, %v", got, err)
	}
	ts.Credentials.Password = "PASSWORD-wrong"
	_, err = ts.Token(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != 401 || !strings.Contains(err.Error(), "wrong user name or password") {
		t.Errorf("error %v", err)
	}
	noSecrets(t, err)

	// A transport error must not quote the request (net/http's errors
	// would); the password is in the body, the URL here has none, but the
	// path is checked anyway.
	ts.Client = http.DefaultClient // does not trust the test CA
	ts.Credentials.Password = password
	_, err = ts.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted token API: %v", err)
	}
	noSecrets(t, err)

	ts.Credentials = credentials.Credentials{Password: password}
	if _, err := ts.Token(context.Background()); err == nil {
		t.Error("no user name accepted")
	}
}

func TestRedactEscapedForms(t *testing.T) {
	err := clean(fmt.Errorf("Get \"https://h/getSignature?token=%s\": boom", "TOKEN-abc123%2B%2F%3D"), []string{token})
	noSecrets(t, err)
	if !strings.Contains(err.Error(), "(hidden)") {
		t.Errorf("not redacted: %v", err)
	}
}
