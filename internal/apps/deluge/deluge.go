// Package deluge sets Deluge's listening port through the Web UI's
// JSON-RPC (deluge-web 2.0.3, as in Debian 12; deluge/ui/web/json_api.py).
//
// Every call is POST /json, Content-Type application/json,
// {"method","params","id"} → {"result","error","id"}; the session is the
// _session_id cookie (path /json) that auth.login sets, kept in a jar.
// Error code 1 ("Not authenticated") means the session is gone: log in
// again once. The web UI talks to a daemon it must first be connected to
// (web.connected, else web.get_hosts and web.connect to a host id); before
// that the daemon's core.* methods do not exist for it ("Unknown method",
// code 2).
//
// Set: core.set_config [{"random_port":false,"listen_ports":[N,N]}]
// (a one-port range: Deluge 2.0.3 joins the listen interfaces of a longer
// range without a separator); verify: core.get_config_value
// ["listen_ports"] == [N,N].
//
// Close sets listen_ports [0,0]: libtorrent then binds a port the kernel
// picks and announces that, unforwarded port, like qBittorrent's
// listen_port 0. (Deluge's own random_port would pick a fixed random port
// from 49152–65525 and keep it, which is not "closed".)
package deluge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

// Client is one deluge-web. It is not safe for concurrent use;
// apps.Syncer calls it from one goroutine.
type Client struct {
	url    string
	pass   string
	hostID string
	http   *http.Client
	id     int
	authed bool
}

// New returns a client for the JSON endpoint (e.g.
// http://127.0.0.1:8112/json). Deluge's web UI has a password only, so
// creds.Username is ignored (a one-line credentials file is enough).
// hostID picks the daemon from web.get_hosts when the UI is not yet
// connected; "" means the first. hc may carry a custom transport; its jar
// is replaced.
func New(jsonURL string, creds credentials.Credentials, hostID string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(jsonURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("deluge: JSON URL %q: want http://host:8112/json", jsonURL)
	}
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = 10 * time.Second
	}
	c.Jar, _ = cookiejar.New(nil)
	return &Client{url: u.String(), pass: creds.Password, hostID: hostID, http: &c}, nil
}

// SetPort sets listen_ports to [port, port] and verifies it.
func (c *Client) SetPort(ctx context.Context, port uint16) error {
	if port == 0 {
		return errors.New("deluge: port 0 (use Close)")
	}
	return c.set(ctx, port)
}

// Close sets listen_ports [0,0] (see the package comment).
func (c *Client) Close(ctx context.Context) error { return c.set(ctx, 0) }

func (c *Client) set(ctx context.Context, port uint16) error {
	cfg := map[string]any{"random_port": false, "listen_ports": []uint16{port, port}}
	if err := c.core(ctx, "core.set_config", []any{cfg}, nil); err != nil {
		return err
	}
	return apps.ReadBack(ctx, "deluge", port, c.Port)
}

// Port reads listen_ports; a range that is not one port is an error.
func (c *Client) Port(ctx context.Context) (uint16, error) {
	var ports []int
	if err := c.core(ctx, "core.get_config_value", []any{"listen_ports"}, &ports); err != nil {
		return 0, err
	}
	if len(ports) != 2 || ports[0] < 0 || ports[0] > 65535 {
		return 0, fmt.Errorf("deluge: listen_ports %v, want [N, N]", ports)
	}
	if ports[0] != ports[1] {
		return 0, fmt.Errorf("deluge: listen_ports is the range %d–%d, not one port", ports[0], ports[1])
	}
	return uint16(ports[0]), nil
}

// rpcError is the "error" member of an answer.
type rpcError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// Codes from json_api.py.
const (
	codeNotAuthenticated = 1
	codeUnknownMethod    = 2
)

// core calls a daemon method, logging in and connecting the web UI to
// its daemon first when needed, and once more if the session was lost.
func (c *Client) core(ctx context.Context, method string, params []any, out any) error {
	for attempt := 0; ; attempt++ {
		if !c.authed {
			if err := c.login(ctx); err != nil {
				return err
			}
		}
		rerr, err := c.call(ctx, method, params, out)
		if err != nil {
			return err
		}
		switch {
		case rerr == nil:
			return nil
		case rerr.Code == codeNotAuthenticated && attempt == 0:
			c.authed = false
			continue
		case rerr.Code == codeUnknownMethod && attempt == 0:
			// The web UI lost its daemon (it restarted): connect again.
			if err := c.connect(ctx); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("deluge %s: %s (code %d)", method, rerr.Message, rerr.Code)
	}
}

// login authenticates and makes sure the web UI is connected to a daemon.
func (c *Client) login(ctx context.Context) error {
	var ok bool
	rerr, err := c.call(ctx, "auth.login", []any{c.pass}, &ok)
	if err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("deluge auth.login: %s (code %d)", rerr.Message, rerr.Code)
	}
	if !ok {
		return fmt.Errorf("deluge auth.login: %w", apps.ErrUnauthorized)
	}
	c.authed = true
	var connected bool
	if err := c.local(ctx, "web.connected", nil, &connected); err != nil {
		return err
	}
	if connected {
		return nil
	}
	return c.connect(ctx)
}

func (c *Client) connect(ctx context.Context) error {
	var hosts [][]any // [[id, host, port, user], ...]
	if err := c.local(ctx, "web.get_hosts", nil, &hosts); err != nil {
		return err
	}
	id := ""
	for _, h := range hosts {
		if len(h) == 0 {
			continue
		}
		hid, _ := h[0].(string)
		if hid != "" && (c.hostID == "" || hid == c.hostID) {
			id = hid
			break
		}
	}
	if id == "" {
		if c.hostID != "" {
			return fmt.Errorf("deluge: no host %q in the web UI's host list", c.hostID)
		}
		return errors.New("deluge: the web UI's host list is empty (add the daemon in its connection manager)")
	}
	return c.local(ctx, "web.connect", []any{id}, nil)
}

// local calls a web UI method; any RPC error is final.
func (c *Client) local(ctx context.Context, method string, params []any, out any) error {
	rerr, err := c.call(ctx, method, params, out)
	if err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("deluge %s: %s (code %d)", method, rerr.Message, rerr.Code)
	}
	return nil
}

// call does one JSON-RPC round trip. The password is in the body, never
// in a URL, so transport errors carry no secret.
func (c *Client) call(ctx context.Context, method string, params []any, out any) (*rpcError, error) {
	if params == nil {
		params = []any{}
	}
	c.id++
	body, _ := json.Marshal(map[string]any{"method": method, "params": params, "id": c.id})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("deluge: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("deluge %s: %w", method, err)
	}
	data, err := apps.ReadBody(resp)
	if err != nil {
		return nil, fmt.Errorf("deluge %s: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("deluge %s: HTTP %d", method, resp.StatusCode)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
		ID     int             `json:"id"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("deluge %s: answer is not JSON-RPC", method)
	}
	if r.Error != nil {
		return r.Error, nil
	}
	if r.ID != c.id {
		return nil, fmt.Errorf("deluge %s: answer id %d, want %d", method, r.ID, c.id)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return nil, fmt.Errorf("deluge %s: unexpected result: %w", method, err)
		}
	}
	return nil, nil
}
