// Package transmission sets Transmission's peer port through its RPC
// (rpc-spec as of 3.00, the version in Debian 12; the old dashed names
// still work in 4.x).
//
// Every request is POST /transmission/rpc with a JSON body. The daemon
// answers 409 with an X-Transmission-Session-Id header when the request
// lacks the current session id (its CSRF protection; the id also changes
// over time), so a 409 is answered by resending once with the new id.
// Basic auth is used when credentials are given. Other refusals (rpc-server.c
// 3.00): 401 wrong credentials, 403 address not in rpc-whitelist or too many
// failed logins, 421 host name not in rpc-host-whitelist.
//
// Set: session-set {"peer-port":N,"peer-port-random-on-start":false,
// "port-forwarding-enabled":false} (Transmission's own NAT-PMP/UPnP would
// talk to a default gateway, which a confined namespace does not have);
// verify: session-get with fields ["peer-port"].
//
// Close does nothing. Transmission has no "closed" port value: peer-port 0
// would bind an ephemeral port but announce port 0 to trackers
// (announcer-http.c sends the public peer port, which setPeerPort sets to
// the same 0), and trackers may reject that as invalid and stop handing
// out peers. The old port stays configured; the namespace firewall is what
// closes it, and the next SetPort replaces it.
package transmission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

const sessionHeader = "X-Transmission-Session-Id"

// Client is one Transmission RPC endpoint.
type Client struct {
	url   string
	creds *credentials.Credentials
	http  *http.Client

	mu        sync.Mutex
	sessionID string
}

// New returns a client for the RPC URL (e.g.
// http://127.0.0.1:9091/transmission/rpc). creds nil means no basic auth.
// hc nil means a client with a 10 s timeout.
func New(rpcURL string, creds *credentials.Credentials, hc *http.Client) (*Client, error) {
	u, err := url.Parse(rpcURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("transmission: RPC URL %q: want http://host:9091/transmission/rpc", rpcURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{url: u.String(), creds: creds, http: hc}, nil
}

// SetPort sets peer-port and verifies it.
func (c *Client) SetPort(ctx context.Context, port uint16) error {
	if port == 0 {
		return errors.New("transmission: port 0")
	}
	args := map[string]any{"peer-port": port, "peer-port-random-on-start": false, "port-forwarding-enabled": false}
	if err := c.call(ctx, "session-set", args, nil); err != nil {
		return err
	}
	return apps.ReadBack(ctx, "transmission", port, c.Port)
}

// Port reads peer-port.
func (c *Client) Port(ctx context.Context) (uint16, error) {
	var r struct {
		PeerPort *int `json:"peer-port"`
	}
	if err := c.call(ctx, "session-get", map[string]any{"fields": []string{"peer-port"}}, &r); err != nil {
		return 0, err
	}
	if r.PeerPort == nil || *r.PeerPort < 0 || *r.PeerPort > 65535 {
		return 0, errors.New("transmission: session-get without a valid peer-port")
	}
	return uint16(*r.PeerPort), nil
}

// Close does nothing (see the package comment).
func (c *Client) Close(context.Context) error { return nil }

// PortTest asks Transmission to check from outside whether the peer port
// is reachable (port-test; Transmission asks its project's web service,
// through the tunnel).
func (c *Client) PortTest(ctx context.Context) (bool, error) {
	var r struct {
		Open *bool `json:"port-is-open"`
	}
	if err := c.call(ctx, "port-test", map[string]any{}, &r); err != nil {
		return false, err
	}
	if r.Open == nil {
		return false, errors.New("transmission: port-test without port-is-open")
	}
	return *r.Open, nil
}

// call runs one RPC method and decodes its arguments into out.
func (c *Client) call(ctx context.Context, method string, args, out any) error {
	body, _ := json.Marshal(map[string]any{"method": method, "arguments": args})
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("transmission: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		c.mu.Lock()
		if c.sessionID != "" {
			req.Header.Set(sessionHeader, c.sessionID)
		}
		c.mu.Unlock()
		if c.creds != nil {
			req.SetBasicAuth(c.creds.Username, c.creds.Password)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("transmission %s: %w", method, err)
		}
		data, err := apps.ReadBody(resp)
		if err != nil {
			return fmt.Errorf("transmission %s: %w", method, err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return decode(method, data, out)
		case http.StatusConflict:
			id := resp.Header.Get(sessionHeader)
			if id == "" || attempt > 0 {
				return fmt.Errorf("transmission %s: HTTP 409 without a usable session id", method)
			}
			c.mu.Lock()
			c.sessionID = id
			c.mu.Unlock()
			continue
		case http.StatusUnauthorized:
			if c.creds == nil {
				return fmt.Errorf("transmission %s: HTTP 401: %w", method, apps.ErrAuthRequired)
			}
			return fmt.Errorf("transmission %s: HTTP 401: %w", method, apps.ErrUnauthorized)
		case http.StatusForbidden:
			return fmt.Errorf("transmission %s: HTTP 403: this address is not in rpc-whitelist, or too many failed logins (restart the daemon)", method)
		case http.StatusMisdirectedRequest:
			return fmt.Errorf("transmission %s: HTTP 421: the host name is not in rpc-host-whitelist (use an IP address or add it)", method)
		}
		return fmt.Errorf("transmission %s: HTTP %d", method, resp.StatusCode)
	}
}

func decode(method string, data []byte, out any) error {
	var r struct {
		Result    string          `json:"result"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("transmission %s: answer is not JSON-RPC", method)
	}
	if r.Result != "success" {
		return fmt.Errorf("transmission %s: %s", method, strings.TrimSpace(r.Result))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.Arguments, out); err != nil {
		return fmt.Errorf("transmission %s: unexpected arguments: %w", method, err)
	}
	return nil
}
