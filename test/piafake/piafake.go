// Package piafake is a stand-in for Private Internet Access's port
// forwarding for tests: the account API's token endpoint and a server's
// gateway API (getSignature, bindPort), both over HTTPS with certificates
// from a CA made here, so the client under test verifies TLS against "its
// own" CA exactly as it does against PIA's.
//
// Answer shapes follow pia-foss/manual-connections port_forwarding.sh and
// gluetun (the same sources internal/portfwd/pia was written from), but
// the encoding here is independent of that package: a payload is
// base64(JSON{token, port, expires_at}) and a signature is an HMAC of the
// payload, so a bindPort with a forged or altered payload is refused.
package piafake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// CA is a throwaway certificate authority.
type CA struct {
	PEM  []byte // the CA certificate, for a client's trust store
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: cert, key: key}, nil
}

// Issue makes a server certificate for the host names and IP addresses.
// PIA's gateway certificates name the server (no IP), so the gateway gets
// a name only; the client dials the IP and verifies the name.
func (ca *CA) Issue(names []string, ips []net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := ""
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn}, DNSNames: names, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return n
}

// Grant is a signature the gateway will hand out: its port and how long
// it is valid.
type Grant struct {
	Port    uint16
	Expires time.Duration
}

// Event is one request either server answered.
type Event struct {
	Time   time.Time `json:"time"`
	Op     string    `json:"op"` // "token", "getSignature", "bindPort"
	From   string    `json:"from"`
	Host   string    `json:"host"` // the Host header (the gateway's name)
	SNI    string    `json:"sni,omitempty"`
	Port   uint16    `json:"port,omitempty"`
	Status int       `json:"status"`
	Note   string    `json:"note,omitempty"`
}

// Service is the account API and one gateway, sharing the tokens.
type Service struct {
	// Username and Password are the only account the token API accepts.
	Username, Password string
	// DefaultGrant is handed out when the queue is empty.
	DefaultGrant Grant

	key []byte // HMAC key of the signatures

	mu     sync.Mutex
	tokens map[string]bool
	queue  []Grant
	busy   map[uint16]bool
	events []Event
}

// New returns a service for one account.
func New(username, password string) *Service {
	key := make([]byte, 32)
	rand.Read(key)
	return &Service{
		Username: username, Password: password,
		DefaultGrant: Grant{Port: 47001, Expires: 60 * 24 * time.Hour},
		key:          key, tokens: map[string]bool{}, busy: map[uint16]bool{},
	}
}

// Queue adds grants for the next getSignature calls, in order.
func (s *Service) Queue(g ...Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, g...)
}

// SetBusy makes bindPort for port answer 409 "port is busy" (or stop).
func (s *Service) SetBusy(port uint16, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy[port] = busy
}

// Events returns a copy of what was asked so far.
func (s *Service) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

func (s *Service) record(r *http.Request, e Event) {
	e.Time, e.From, e.Host = time.Now(), r.RemoteAddr, r.Host
	if r.TLS != nil {
		e.SNI = r.TLS.ServerName
	}
	s.events = append(s.events, e)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// TokenHandler is POST /api/client/v2/token (form username, password).
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/api/client/v2/token" {
			s.record(r, Event{Op: "token", Status: 404, Note: r.Method + " " + r.URL.Path})
			reply(w, http.StatusNotFound, map[string]string{"message": "not found"})
			return
		}
		r.ParseForm()
		if r.PostForm.Get("username") != s.Username || r.PostForm.Get("password") != s.Password {
			s.record(r, Event{Op: "token", Status: 401, Note: "bad credentials"})
			reply(w, http.StatusUnauthorized, map[string]string{"message": "Authorization failed"})
			return
		}
		b := make([]byte, 16)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		s.tokens[tok] = true
		s.record(r, Event{Op: "token", Status: 200})
		reply(w, http.StatusOK, map[string]string{"token": tok})
	})
}

type payload struct {
	Token   string    `json:"token"`
	Port    uint16    `json:"port"`
	Expires time.Time `json:"expires_at"`
}

func (s *Service) sign(p string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(p))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// GatewayHandler is the gateway's GET /getSignature?token= and GET
// /bindPort?payload=&signature=.
func (s *Service) GatewayHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		q := r.URL.Query()
		switch r.URL.Path {
		case "/getSignature":
			if !s.tokens[q.Get("token")] {
				s.record(r, Event{Op: "getSignature", Status: 200, Note: "invalid token"})
				reply(w, http.StatusOK, map[string]string{"status": "ERROR", "message": "invalid token"})
				return
			}
			g := s.DefaultGrant
			if len(s.queue) > 0 {
				g, s.queue = s.queue[0], s.queue[1:]
			}
			pb, _ := json.Marshal(payload{Token: q.Get("token"), Port: g.Port, Expires: time.Now().Add(g.Expires).UTC()})
			p := base64.StdEncoding.EncodeToString(pb)
			s.record(r, Event{Op: "getSignature", Status: 200, Port: g.Port})
			reply(w, http.StatusOK, map[string]string{"status": "OK", "payload": p, "signature": s.sign(p)})
		case "/bindPort":
			p := q.Get("payload")
			if !hmac.Equal([]byte(q.Get("signature")), []byte(s.sign(p))) {
				s.record(r, Event{Op: "bindPort", Status: 200, Note: "bad signature"})
				reply(w, http.StatusOK, map[string]string{"status": "ERROR", "message": "invalid signature"})
				return
			}
			raw, _ := base64.StdEncoding.DecodeString(p)
			var pl payload
			json.Unmarshal(raw, &pl)
			switch {
			case !time.Now().Before(pl.Expires):
				s.record(r, Event{Op: "bindPort", Status: 200, Port: pl.Port, Note: "expired"})
				reply(w, http.StatusOK, map[string]string{"status": "ERROR", "message": "signature expired"})
			case s.busy[pl.Port]:
				s.record(r, Event{Op: "bindPort", Status: 409, Port: pl.Port, Note: "busy"})
				reply(w, http.StatusConflict, map[string]string{"status": "ERROR",
					"message": fmt.Sprintf("port %d is busy. Request a new signature.", pl.Port)})
			default:
				s.record(r, Event{Op: "bindPort", Status: 200, Port: pl.Port})
				reply(w, http.StatusOK, map[string]string{"status": "OK", "message": "port scheduled for add"})
			}
		default:
			s.record(r, Event{Op: r.URL.Path, Status: 404})
			reply(w, http.StatusNotFound, map[string]string{"status": "ERROR", "message": "not found"})
		}
	})
}
