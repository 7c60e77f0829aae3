package qbittorrent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

const secret = "SECRET-pw"

// fake is a qBittorrent WebUI as far as this adapter uses it, following
// webapplication.cpp and authcontroller.cpp of 4.5–5.1 (gen51) and 5.2
// (gen52): cookie name, login answers, 403 without a session, ban after
// failed logins, CSRF check of Origin/Referer against Host.
type fake struct {
	mu       sync.Mutex
	gen52    bool
	webPort  int
	bypass   bool
	maxFails int // ban after this many failed logins (0: never)
	ignore   bool
	sessions map[string]bool
	fails    int
	logins   int
	port     int
	random   bool
	upnp     bool
	csrfHits int
}

func newFake() *fake {
	return &fake{webPort: 8080, sessions: map[string]bool{}, port: 6881, random: true, upnp: true}
}

func (f *fake) cookie() string {
	if f.gen52 {
		return fmt.Sprintf("QBT_SID_%d", f.webPort)
	}
	return "SID"
}

func (f *fake) crossSite(r *http.Request) bool {
	for _, h := range []string{"Origin", "Referer"} {
		v := r.Header.Get(h)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		return err != nil || u.Host != r.Host
	}
	return false // neither header: qBittorrent lets API clients through
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crossSite(r) {
		f.csrfHits++
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "Unauthorized")
		return
	}
	session := false
	if c, err := r.Cookie(f.cookie()); err == nil {
		session = f.sessions[c.Value]
	}
	if f.bypass {
		session = true
	}
	switch r.URL.Path {
	case "/api/v2/auth/login":
		f.logins++
		if f.maxFails > 0 && f.fails >= f.maxFails {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "Your IP address has been banned after too many failed authentication attempts.")
			return
		}
		if session {
			f.ok(w)
			return
		}
		if r.PostFormValue("username") != "admin" || r.PostFormValue("password") != secret {
			f.fails++
			if f.gen52 {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, "Fails.")
			return
		}
		id := fmt.Sprintf("sid%d", len(f.sessions)+1)
		f.sessions[id] = true
		http.SetCookie(w, &http.Cookie{Name: f.cookie(), Value: id, Path: "/", HttpOnly: true})
		f.ok(w)
	case "/api/v2/app/setPreferences":
		if !session {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "Forbidden")
			return
		}
		var prefs map[string]any
		if err := json.Unmarshal([]byte(r.PostFormValue("json")), &prefs); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !f.ignore {
			// appcontroller.cpp: random_port true means port 0, else listen_port.
			if rp, ok := prefs["random_port"].(bool); ok && rp {
				f.port = 0
			} else if lp, ok := prefs["listen_port"].(float64); ok {
				f.port = int(lp)
			}
			if u, ok := prefs["upnp"].(bool); ok {
				f.upnp = u
			}
		}
		if f.gen52 {
			w.WriteHeader(http.StatusNoContent)
		}
	case "/api/v2/app/preferences":
		if !session {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"listen_port": f.port, "random_port": f.port == 0, "upnp": f.upnp})
	default:
		http.NotFound(w, r)
	}
}

func (f *fake) ok(w http.ResponseWriter) {
	if f.gen52 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	fmt.Fprint(w, "Ok.")
}

func serve(t *testing.T, f *fake) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

var admin = &credentials.Credentials{Username: "admin", Password: secret}

func TestSetPortBothGenerations(t *testing.T) {
	for _, gen52 := range []bool{false, true} {
		t.Run(fmt.Sprintf("gen52=%v", gen52), func(t *testing.T) {
			f := newFake()
			f.gen52 = gen52
			c, err := New(serve(t, f), admin, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := c.SetPort(ctx, 38534); err != nil {
				t.Fatal(err)
			}
			if f.port != 38534 || f.upnp || f.logins != 1 {
				t.Errorf("port %d upnp %v after %d logins", f.port, f.upnp, f.logins)
			}
			if p, err := c.Port(ctx); err != nil || p != 38534 {
				t.Errorf("Port = %d, %v", p, err)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if f.port != 0 || f.logins != 1 {
				t.Errorf("after Close: port %d, %d logins", f.port, f.logins)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	for _, gen52 := range []bool{false, true} {
		f := newFake()
		f.gen52 = gen52
		c, _ := New(serve(t, f), &credentials.Credentials{Username: "admin", Password: "SECRET-wrong"}, nil)
		err := c.SetPort(context.Background(), 38534)
		if !errors.Is(err, apps.ErrUnauthorized) {
			t.Errorf("gen52=%v: error %v", gen52, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestBanned(t *testing.T) {
	f := newFake()
	f.maxFails, f.fails = 3, 3
	c, _ := New(serve(t, f), admin, nil)
	if err := c.SetPort(context.Background(), 1); !errors.Is(err, apps.ErrBanned) {
		t.Errorf("error %v", err)
	}
}

func TestBypass(t *testing.T) {
	f := newFake()
	f.bypass = true
	c, _ := New(serve(t, f), nil, nil)
	if err := c.SetPort(context.Background(), 40000); err != nil {
		t.Fatal(err)
	}
	if f.logins != 0 || f.port != 40000 {
		t.Errorf("%d logins, port %d", f.logins, f.port)
	}
	// Without bypass and without credentials: a login is required.
	f.bypass = false
	err := c.SetPort(context.Background(), 40001)
	if !errors.Is(err, apps.ErrAuthRequired) {
		t.Errorf("error %v", err)
	}
}

// TestSessionLost: qBittorrent restarted, the cookie is stale; the
// adapter logs in again once.
func TestSessionLost(t *testing.T) {
	f := newFake()
	f.gen52 = true
	c, _ := New(serve(t, f), admin, nil)
	ctx := context.Background()
	if err := c.SetPort(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.sessions = map[string]bool{}
	f.mu.Unlock()
	if err := c.SetPort(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	if f.logins != 2 || f.port != 1001 {
		t.Errorf("%d logins, port %d", f.logins, f.port)
	}
}

func TestNotApplied(t *testing.T) {
	f := newFake()
	f.ignore = true
	c, _ := New(serve(t, f), admin, nil)
	err := c.SetPort(context.Background(), 38534)
	var na *apps.NotAppliedError
	if !errors.As(err, &na) || !errors.Is(err, apps.ErrNotApplied) || na.Got != 6881 {
		t.Errorf("error %v", err)
	}
}

// TestCSRF: the headers the adapter sends pass the check; a base URL that
// is not how the server is reached (another host name) fails it with 401.
func TestCSRF(t *testing.T) {
	f := newFake()
	base := serve(t, f)
	c, _ := New(base+"/", admin, nil) // trailing slash is fine
	if err := c.SetPort(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	if f.csrfHits != 0 {
		t.Errorf("%d CSRF rejections", f.csrfHits)
	}
	// Send matching Host but mismatching Origin, as a misconfigured
	// reverse proxy would.
	c2, _ := New(base, admin, &http.Client{Transport: rewriteOrigin{}})
	err := c2.SetPort(context.Background(), 6)
	if err == nil || f.csrfHits == 0 {
		t.Errorf("error %v, %d CSRF rejections", err, f.csrfHits)
	}
}

type rewriteOrigin struct{}

func (rewriteOrigin) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Origin", "http://evil.example:8080")
	return http.DefaultTransport.RoundTrip(r)
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := New(u, nil, nil); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
