package transmission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

// fake follows libtransmission 3.00 rpc-server.c: basic auth before the
// session id check, 409 with the current id, and the id rotating when the
// test says so; rpcimpl.c's session-set/session-get/port-test.
type fake struct {
	mu         sync.Mutex
	auth       bool
	sessionID  string
	n409       int
	port       int
	random     bool
	forwarding bool
	ignore     bool
	open       bool
	methods    []string
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth {
		u, p, ok := r.BasicAuth()
		if !ok || u != "tr" || p != "SECRET-pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="Transmission"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "<p>Unauthorized User. 1 unsuccessful login attempts.</p>")
			return
		}
	}
	if r.URL.Path != "/transmission/rpc" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("X-Transmission-Session-Id") != f.sessionID {
		f.n409++
		w.Header().Set("X-Transmission-Session-Id", f.sessionID)
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "<p>Your request had an invalid session-id header.</p><p><code>X-Transmission-Session-Id: %s</code></p>", f.sessionID)
		return
	}
	var req struct {
		Method    string         `json:"method"`
		Arguments map[string]any `json:"arguments"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		json.NewEncoder(w).Encode(map[string]any{"result": "JSON parse error"})
		return
	}
	f.methods = append(f.methods, req.Method)
	args := map[string]any{}
	result := "success"
	switch req.Method {
	case "session-set":
		if f.ignore {
			break
		}
		if v, ok := req.Arguments["peer-port"].(float64); ok {
			f.port = int(v)
		}
		if v, ok := req.Arguments["peer-port-random-on-start"].(bool); ok {
			f.random = v
		}
		if v, ok := req.Arguments["port-forwarding-enabled"].(bool); ok {
			f.forwarding = v
		}
	case "session-get":
		all := map[string]any{"peer-port": f.port, "peer-port-random-on-start": f.random, "version": "3.00 (bb6b5a062e)"}
		fields, _ := req.Arguments["fields"].([]any)
		for _, k := range fields {
			if v, ok := all[k.(string)]; ok {
				args[k.(string)] = v
			}
		}
		if len(fields) == 0 {
			args = all
		}
	case "port-test":
		args["port-is-open"] = f.open
	default:
		result = "method name not recognized"
	}
	json.NewEncoder(w).Encode(map[string]any{"result": result, "arguments": args})
}

func serve(t *testing.T, f *fake) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL + "/transmission/rpc"
}

func TestSetPort(t *testing.T) {
	f := &fake{sessionID: "abc", port: 51413, random: true, forwarding: true}
	c, err := New(serve(t, f), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.SetPort(ctx, 38534); err != nil {
		t.Fatal(err)
	}
	if f.port != 38534 || f.random || f.forwarding {
		t.Errorf("port %d random %v forwarding %v", f.port, f.random, f.forwarding)
	}
	// One 409 for the first request only: the id is then remembered.
	if f.n409 != 1 || strings.Join(f.methods, ",") != "session-set,session-get" {
		t.Errorf("%d 409s, methods %v", f.n409, f.methods)
	}
	// The daemon rotated its session id: one more 409 dance.
	f.mu.Lock()
	f.sessionID = "def"
	f.mu.Unlock()
	if p, err := c.Port(ctx); err != nil || p != 38534 {
		t.Errorf("Port = %d, %v", p, err)
	}
	if f.n409 != 2 {
		t.Errorf("%d 409s", f.n409)
	}
	f.open = true
	if open, err := c.PortTest(ctx); err != nil || !open {
		t.Errorf("PortTest = %v, %v", open, err)
	}
	if err := c.Close(ctx); err != nil || f.port != 38534 {
		t.Errorf("Close: %v, port %d", err, f.port)
	}
}

func TestBasicAuth(t *testing.T) {
	f := &fake{auth: true, sessionID: "abc"}
	url := serve(t, f)
	c, _ := New(url, &credentials.Credentials{Username: "tr", Password: "SECRET-pw"}, nil)
	if err := c.SetPort(context.Background(), 1234); err != nil {
		t.Fatal(err)
	}
	c, _ = New(url, &credentials.Credentials{Username: "tr", Password: "SECRET-wrong"}, nil)
	err := c.SetPort(context.Background(), 1234)
	if !errors.Is(err, apps.ErrUnauthorized) || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("wrong password: %v", err)
	}
	c, _ = New(url, nil, nil)
	if err := c.SetPort(context.Background(), 1234); !errors.Is(err, apps.ErrAuthRequired) {
		t.Errorf("no credentials: %v", err)
	}
}

func TestNotApplied(t *testing.T) {
	f := &fake{sessionID: "abc", port: 51413, ignore: true}
	c, _ := New(serve(t, f), nil, nil)
	var na *apps.NotAppliedError
	if err := c.SetPort(context.Background(), 1234); !errors.As(err, &na) || na.Got != 51413 {
		t.Errorf("error %v", err)
	}
}

func TestRefusals(t *testing.T) {
	for code, want := range map[int]string{403: "rpc-whitelist", 421: "rpc-host-whitelist", 500: "HTTP 500"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		c, _ := New(srv.URL+"/transmission/rpc", nil, nil)
		if err := c.SetPort(context.Background(), 1); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("HTTP %d: %v", code, err)
		}
		srv.Close()
	}
	// A 409 without an id, or a second 409 in a row, ends the call.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Transmission-Session-Id", "always-new")
		w.WriteHeader(http.StatusConflict)
	}))
	defer srv.Close()
	c, _ := New(srv.URL+"/transmission/rpc", nil, nil)
	if err := c.SetPort(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("endless 409: %v", err)
	}
}

func TestRPCError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"result":"peer-port out of range","arguments":{}}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL+"/transmission/rpc", nil, nil)
	if err := c.SetPort(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "peer-port out of range") {
		t.Errorf("error %v", err)
	}
}
