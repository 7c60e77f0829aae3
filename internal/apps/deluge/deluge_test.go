package deluge

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

// fake follows deluge-web 2.0.3 json_api.py and auth.py: POST only,
// Content-Type checked, _session_id cookie on path /json, "Not
// authenticated" (code 1) without it, core.* unknown (code 2) until
// web.connect, and the core's config dictionary behind set_config.
type fake struct {
	mu        sync.Mutex
	sessions  map[string]bool
	connected bool
	hosts     [][]any
	config    map[string]any
	ignore    bool
	calls     []string
}

func newFake() *fake {
	return &fake{
		sessions: map[string]bool{},
		hosts:    [][]any{{"c1a9e1e0", "127.0.0.1", 58846, "localclient"}},
		config:   map[string]any{"listen_ports": []any{6881.0, 6891.0}, "random_port": true},
	}
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/json" {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	reply := func(id any, result any, code int, msg string) {
		resp := map[string]any{"id": id, "result": result, "error": nil}
		if code != 0 {
			resp["result"] = nil
			resp["error"] = map[string]any{"message": msg, "code": code}
		}
		json.NewEncoder(w).Encode(resp)
	}
	if r.Header.Get("Content-Type") != "application/json" {
		reply(nil, nil, 5, "JSONException: Invalid JSON request content-type")
		return
	}
	var req struct {
		Method string `json:"method"`
		Params []any  `json:"params"`
		ID     any    `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(nil, nil, 5, "JSONException: JSON not decodable")
		return
	}
	f.calls = append(f.calls, req.Method)
	authed := false
	if c, err := r.Cookie("_session_id"); err == nil {
		authed = f.sessions[c.Value]
	}
	if req.Method == "auth.login" {
		if len(req.Params) == 1 && req.Params[0] == "SECRET-pw" {
			id := fmt.Sprintf("s%d", len(f.sessions)+1)
			f.sessions[id] = true
			http.SetCookie(w, &http.Cookie{Name: "_session_id", Value: id, Path: "/json"})
			reply(req.ID, true, 0, "")
			return
		}
		reply(req.ID, false, 0, "")
		return
	}
	if !authed {
		reply(req.ID, nil, 1, "Not authenticated")
		return
	}
	switch req.Method {
	case "web.connected":
		reply(req.ID, f.connected, 0, "")
	case "web.get_hosts":
		reply(req.ID, f.hosts, 0, "")
	case "web.connect":
		if len(req.Params) == 1 && req.Params[0] == f.hosts[0][0] {
			f.connected = true
		}
		reply(req.ID, []string{"core.set_config", "core.get_config_value"}, 0, "")
	case "core.set_config", "core.get_config_value":
		if !f.connected {
			reply(req.ID, nil, 2, "Unknown method")
			return
		}
		if req.Method == "core.set_config" {
			if !f.ignore {
				for k, v := range req.Params[0].(map[string]any) {
					f.config[k] = v
				}
			}
			reply(req.ID, nil, 0, "")
			return
		}
		reply(req.ID, f.config[req.Params[0].(string)], 0, "")
	default:
		reply(req.ID, nil, 2, "Unknown method")
	}
}

func serve(t *testing.T, f *fake) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL + "/json"
}

var pw = credentials.Credentials{Password: "SECRET-pw"}

func TestSetPort(t *testing.T) {
	f := newFake()
	c, err := New(serve(t, f), pw, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.SetPort(ctx, 38534); err != nil {
		t.Fatal(err)
	}
	want := "auth.login,web.connected,web.get_hosts,web.connect,core.set_config,core.get_config_value"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
	if fmt.Sprint(f.config["listen_ports"]) != "[38534 38534]" || f.config["random_port"] != false {
		t.Errorf("config %v", f.config)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.config["listen_ports"]) != "[0 0]" {
		t.Errorf("after Close: %v", f.config)
	}
}

func TestAlreadyConnected(t *testing.T) {
	f := newFake()
	f.connected = true
	c, _ := New(serve(t, f), pw, "", nil)
	if err := c.SetPort(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(f.calls, ","), "web.connect,") {
		t.Errorf("connected again: %v", f.calls)
	}
}

func TestWrongPassword(t *testing.T) {
	c, _ := New(serve(t, newFake()), credentials.Credentials{Password: "SECRET-wrong"}, "", nil)
	err := c.SetPort(context.Background(), 1000)
	if !errors.Is(err, apps.ErrUnauthorized) || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
}

// TestSessionAndDaemonLost: deluge-web restarted (sessions gone) and,
// separately, lost its daemon; both recover with one retry.
func TestSessionAndDaemonLost(t *testing.T) {
	f := newFake()
	c, _ := New(serve(t, f), pw, "", nil)
	ctx := context.Background()
	if err := c.SetPort(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.sessions, f.connected = map[string]bool{}, false
	f.mu.Unlock()
	if err := c.SetPort(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.connected = false
	f.mu.Unlock()
	if p, err := c.Port(ctx); err != nil || p != 1001 {
		t.Errorf("Port = %d, %v", p, err)
	}
}

func TestHosts(t *testing.T) {
	f := newFake()
	c, _ := New(serve(t, f), pw, "nope", nil)
	if err := c.SetPort(context.Background(), 1); err == nil || !strings.Contains(err.Error(), `no host "nope"`) {
		t.Errorf("error %v", err)
	}
	f = newFake()
	f.hosts = nil
	c, _ = New(serve(t, f), pw, "", nil)
	if err := c.SetPort(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "host list is empty") {
		t.Errorf("error %v", err)
	}
}

func TestNotAppliedAndRange(t *testing.T) {
	f := newFake()
	f.ignore = true
	c, _ := New(serve(t, f), pw, "", nil)
	err := c.SetPort(context.Background(), 1)
	if err == nil || !strings.Contains(err.Error(), "range 6881–6891") {
		t.Errorf("error %v", err)
	}
	f.config["listen_ports"] = []any{6881.0, 6881.0}
	var na *apps.NotAppliedError
	if err := c.SetPort(context.Background(), 1); !errors.As(err, &na) || na.Got != 6881 {
		t.Errorf("error %v", err)
	}
}
