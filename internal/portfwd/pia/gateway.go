package pia

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// DefaultPort is the gateway API's port.
const DefaultPort = 19999

// DefaultTimeout bounds one gateway request when the context has no
// earlier deadline (the official script uses curl -m 5).
const DefaultTimeout = 10 * time.Second

// Gateway is the port-forwarding API of one PIA server.
type Gateway struct {
	// Addr is the address dialled: the tunnel gateway (the official
	// scripts' PF_GATEWAY, server_vip in the addKey answer).
	Addr netip.Addr
	// Hostname is the server's certificate name (PF_HOSTNAME, the
	// region server's CN), used as TLS ServerName and in the URL.
	Hostname string
	// Port defaults to DefaultPort.
	Port uint16
	// RootCAs verifies the gateway: PIA's CA (see LoadCA), not the system
	// roots.
	RootCAs *x509.CertPool
	// Dial, if set, opens the TCP connection (another namespace, tests);
	// it is always asked for Addr:Port.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	once   sync.Once
	client *http.Client
}

// LoadCA reads PEM certificates (PIA's ca.rsa.4096.crt) into a pool.
func LoadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pia CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pia CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}

func (g *Gateway) port() uint16 {
	if g.Port == 0 {
		return DefaultPort
	}
	return g.Port
}

func (g *Gateway) httpClient() *http.Client {
	g.once.Do(func() {
		target := netip.AddrPortFrom(g.Addr, g.port()).String()
		dial := g.Dial
		if dial == nil {
			dial = (&net.Dialer{Timeout: DefaultTimeout}).DialContext
		}
		g.client = &http.Client{
			Transport: &http.Transport{
				// Whatever the URL says, connect to the gateway address.
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return dial(ctx, network, target)
				},
				TLSClientConfig: &tls.Config{
					RootCAs:    g.RootCAs,
					ServerName: g.Hostname,
					MinVersion: tls.VersionTLS12,
				},
				Proxy:               nil, // never through an HTTP proxy from the environment
				TLSHandshakeTimeout: DefaultTimeout,
				DisableKeepAlives:   true, // one request every 15 minutes
			},
			// The API does not redirect; following one would send the
			// secrets in the query elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return g.client
}

func (g *Gateway) check() error {
	switch {
	case !g.Addr.IsValid():
		return errors.New("pia: no gateway address")
	case g.Hostname == "":
		return errors.New("pia: no gateway host name (the certificate's name, e.g. the region server's CN)")
	case g.RootCAs == nil:
		return errors.New("pia: no CA to verify the gateway (ca.rsa.4096.crt)")
	}
	return nil
}

func (g *Gateway) get(ctx context.Context, op string, query url.Values, secrets []string, v *reply) (int, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	u := url.URL{
		Scheme:   "https",
		Host:     net.JoinHostPort(g.Hostname, strconv.Itoa(int(g.port()))),
		Path:     "/" + op,
		RawQuery: query.Encode(),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("pia %s: %w", op, clean(err, secrets))
	}
	return do(g.httpClient(), req, op, secrets, v)
}

// GetSignature asks for a port: GET /getSignature?token=.
func (g *Gateway) GetSignature(ctx context.Context, token string) (Signature, error) {
	secrets := []string{token}
	var r reply
	code, err := g.get(ctx, "getSignature", url.Values{"token": {token}}, secrets, &r)
	if err != nil {
		return Signature{}, err
	}
	secrets = append(secrets, r.Payload, r.Signature)
	if code != http.StatusOK || r.Status != "OK" {
		return Signature{}, &APIError{Op: "getSignature", HTTPStatus: code, Status: r.Status, Message: redact(r.Message, secrets)}
	}
	if r.Payload == "" || r.Signature == "" {
		return Signature{}, errors.New("pia getSignature: answer without payload or signature")
	}
	pl, err := decodePayload(r.Payload)
	if err != nil {
		return Signature{}, fmt.Errorf("pia getSignature: %w", err)
	}
	return Signature{Port: pl.Port, Expires: pl.Expires, Payload: r.Payload, Signature: r.Signature}, nil
}

// BindPort binds (or keeps bound) the signature's port: GET
// /bindPort?payload=&signature=. HTTP 409 yields an error wrapping
// ErrPortBusy.
func (g *Gateway) BindPort(ctx context.Context, sig Signature) error {
	secrets := []string{sig.Payload, sig.Signature}
	if pl, err := decodePayload(sig.Payload); err == nil {
		secrets = append(secrets, pl.Token)
	}
	var r reply
	code, err := g.get(ctx, "bindPort", url.Values{"payload": {sig.Payload}, "signature": {sig.Signature}}, secrets, &r)
	if err != nil && code != http.StatusConflict {
		return err
	}
	msg := redact(r.Message, secrets)
	switch {
	case code == http.StatusConflict:
		if msg == "" {
			msg = "HTTP 409"
		}
		return fmt.Errorf("pia bindPort port %d: %s: %w", sig.Port, msg, ErrPortBusy)
	case code != http.StatusOK || r.Status != "OK":
		return &APIError{Op: "bindPort", HTTPStatus: code, Status: r.Status, Message: msg}
	}
	return nil
}
