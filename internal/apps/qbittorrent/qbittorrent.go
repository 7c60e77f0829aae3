// Package qbittorrent sets qBittorrent's listening port through its WebUI
// API v2 (4.1 and later, including the 5.2 login changes).
//
// Login: POST /api/v2/auth/login with the form username, password. Up to
// 5.1 success is 200 "Ok." with a cookie SID and bad credentials are 200
// "Fails."; from 5.2 the cookie is QBT_SID_<webui port>, success is 204 and
// bad credentials are 401. A cookie jar keeps whichever cookie comes, so
// both generations work without knowing the name. 403 at login means the
// address is banned after failed logins. Without a credentials file no
// login is attempted (qBittorrent's "bypass authentication for clients on
// localhost" or its subnet whitelist); a 403 then means a login is needed.
//
// Every request carries Referer and Origin equal to the base URL: when
// they are present qBittorrent's CSRF protection compares them with the
// Host header, and a matching pair passes where a mismatched one would
// fail with 401.
//
// Set: POST /api/v2/app/setPreferences with the form field
// json={"listen_port":N,"random_port":false,"upnp":false}; verify: GET
// /api/v2/app/preferences, .listen_port.
//
// Close sets listen_port 0. qBittorrent (4.5 to 5.2, appcontroller.cpp)
// stores 0 as "random port": libtorrent then binds a port the kernel
// picks, which is not forwarded, so nothing reachable is announced. This
// is what gluetun's documented VPN_PORT_FORWARDING_DOWN_COMMAND sends.
// Its second half, "current_network_interface":"lo", is deliberately not
// copied: in a confined namespace the tunnel is the only way out anyway,
// and the interface binding is the user's setting, which a crash between
// Close and the next SetPort would leave pointing at lo for good.
package qbittorrent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

// Client is one qBittorrent WebUI. It is not safe for concurrent use;
// apps.Syncer calls it from one goroutine.
type Client struct {
	base   *url.URL
	origin string
	creds  *credentials.Credentials
	http   *http.Client
	login  bool // a login succeeded since the last 403
}

// New returns a client for the WebUI at baseURL (e.g.
// http://127.0.0.1:8080, or with a path prefix behind a reverse proxy).
// creds nil means no login (auth bypass). hc may carry a custom transport
// (another namespace, tests); its jar is replaced by a fresh one, and a
// nil hc means a client with a 10 s timeout.
func New(baseURL string, creds *credentials.Credentials, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("qbittorrent: base URL %q: want http://host:port", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = 10 * time.Second
	}
	c.Jar, _ = cookiejar.New(nil)
	return &Client{base: u, origin: u.Scheme + "://" + u.Host, creds: creds, http: &c}, nil
}

// SetPort sets the listening port and verifies it.
func (c *Client) SetPort(ctx context.Context, port uint16) error {
	if port == 0 {
		return errors.New("qbittorrent: port 0 (use Close)")
	}
	return c.set(ctx, map[string]any{"listen_port": port, "random_port": false, "upnp": false}, port)
}

// Close sets listen_port 0 (random, unannounced; see the package comment).
func (c *Client) Close(ctx context.Context) error {
	return c.set(ctx, map[string]any{"listen_port": 0}, 0)
}

func (c *Client) set(ctx context.Context, prefs map[string]any, want uint16) error {
	j, _ := json.Marshal(prefs)
	form := url.Values{"json": {string(j)}}
	if _, err := c.do(ctx, http.MethodPost, "/api/v2/app/setPreferences", form); err != nil {
		return err
	}
	return apps.ReadBack(ctx, "qbittorrent", want, c.Port)
}

// Port reads listen_port from the preferences.
func (c *Client) Port(ctx context.Context) (uint16, error) {
	body, err := c.do(ctx, http.MethodGet, "/api/v2/app/preferences", nil)
	if err != nil {
		return 0, err
	}
	var p struct {
		ListenPort *int `json:"listen_port"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ListenPort == nil {
		return 0, errors.New("qbittorrent: preferences without listen_port")
	}
	if *p.ListenPort < 0 || *p.ListenPort > 65535 {
		return 0, fmt.Errorf("qbittorrent: listen_port %d out of range", *p.ListenPort)
	}
	return uint16(*p.ListenPort), nil
}

// do runs an API request, logging in first when credentials are given
// and again once when the session was lost (403).
func (c *Client) do(ctx context.Context, method, path string, form url.Values) ([]byte, error) {
	if c.creds != nil && !c.login {
		if err := c.authenticate(ctx); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		code, body, err := c.request(ctx, method, path, form)
		if err != nil {
			return nil, err
		}
		switch {
		case code == http.StatusOK || code == http.StatusNoContent:
			return body, nil
		case code == http.StatusForbidden && c.creds == nil:
			return nil, fmt.Errorf("qbittorrent %s: HTTP 403: %w (enable \"bypass authentication\" for this address, or give credentials)", path, apps.ErrAuthRequired)
		case code == http.StatusForbidden && attempt == 0:
			// The session expired or qBittorrent restarted.
			c.login = false
			if err := c.authenticate(ctx); err != nil {
				return nil, err
			}
			continue
		case code == http.StatusUnauthorized:
			return nil, fmt.Errorf("qbittorrent %s: HTTP 401: the request failed the Host header or CSRF check (is the base URL the address qBittorrent is reached at?)", path)
		}
		return nil, fmt.Errorf("qbittorrent %s: HTTP %d: %s", path, code, snippet(body))
	}
}

func (c *Client) authenticate(ctx context.Context) error {
	form := url.Values{"username": {c.creds.Username}, "password": {c.creds.Password}}
	code, body, err := c.request(ctx, http.MethodPost, "/api/v2/auth/login", form)
	if err != nil {
		return err
	}
	text := strings.TrimSpace(string(body))
	switch {
	case code == http.StatusNoContent, code == http.StatusOK && text == "Ok.":
		c.login = true
		return nil
	case code == http.StatusOK && text == "Fails.", code == http.StatusUnauthorized:
		// 401 is also what a failed CSRF or Host check returns, but
		// login requests carry matching headers, so credentials it is.
		return fmt.Errorf("qbittorrent login: %w", apps.ErrUnauthorized)
	case code == http.StatusForbidden:
		return fmt.Errorf("qbittorrent login: %w", apps.ErrBanned)
	}
	return fmt.Errorf("qbittorrent login: HTTP %d: %s", code, snippet(body))
}

func (c *Client) request(ctx context.Context, method, path string, form url.Values) (int, []byte, error) {
	u := *c.base
	u.Path += path
	var req *http.Request
	var err error
	if form != nil {
		req, err = http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, method, u.String(), nil)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("qbittorrent: %w", err)
	}
	req.Header.Set("Referer", c.base.String())
	req.Header.Set("Origin", c.origin)
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL in the error has no secrets: they travel in the body.
		return 0, nil, fmt.Errorf("qbittorrent: %w", err)
	}
	body, err := apps.ReadBody(resp)
	if err != nil {
		return 0, nil, fmt.Errorf("qbittorrent %s: %w", path, err)
	}
	return resp.StatusCode, body, nil
}

// snippet is the start of an error body, one line, for messages.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}
