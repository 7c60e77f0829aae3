// Package pia implements Private Internet Access port forwarding: a token
// from the account API, then getSignature and bindPort on the tunnel
// gateway's HTTPS API (port 19999), bindPort repeated every 15 minutes.
// Sources: pia-foss/manual-connections port_forwarding.sh and gluetun's
// privateinternetaccess provider.
//
// The gateway API is reached by IP (the address is dialled directly) but
// its certificate is issued for the region server's host name, so TLS is
// verified against PIA's CA (ca.rsa.4096.crt) with that host name as
// ServerName, the equivalent of the official script's
// curl --connect-to HOST::GATEWAY: --cacert ca.rsa.4096.crt.
//
// Secrets: the password, the token (also inside the payload) and the
// signature are never logged and never appear in errors; net/http's
// errors quote the request URL, which carries them, so this package
// unwraps and redacts every error it returns.
package pia

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
)

// ErrPortBusy is a bindPort refused with HTTP 409 ("port N is busy"):
// the signature is useless now, get a new one. It wraps
// lease.ErrReacquire so the lease loop does that at once.
var ErrPortBusy = fmt.Errorf("port is busy, a new signature is needed: %w", lease.ErrReacquire)

// ErrExpired means the signature's expires_at has passed; it also wraps
// lease.ErrReacquire.
var ErrExpired = fmt.Errorf("port forwarding signature expired: %w", lease.ErrReacquire)

// APIError is an answer that is not a success: an HTTP status other than
// 200, or a JSON body whose status is not "OK".
type APIError struct {
	Op         string // "token", "getSignature", "bindPort"
	HTTPStatus int
	Status     string // the JSON "status", if any
	Message    string // the JSON "message" (redacted), if any
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pia %s: ", e.Op)
	if e.HTTPStatus != http.StatusOK {
		fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
	} else {
		fmt.Fprintf(&b, "status %q", e.Status)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Op == "token" && (e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden) {
		b.WriteString(" (wrong user name or password?)")
	}
	return b.String()
}

// maxBody bounds what is read from any PIA answer.
const maxBody = 64 << 10

// reply is the JSON shape of every gateway answer.
type reply struct {
	Status    string `json:"status"`
	Message   string `json:"message"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// do sends req and decodes a JSON answer into v. Every error is redacted
// of secrets; r.redact also runs over messages from the server.
func do(client *http.Client, req *http.Request, op string, secrets []string, v any) (status int, err error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("pia %s: %w", op, clean(err, secrets))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("pia %s: read answer: %w", op, clean(err, secrets))
	}
	if err := json.Unmarshal(body, v); err != nil {
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, &APIError{Op: op, HTTPStatus: resp.StatusCode}
		}
		return resp.StatusCode, fmt.Errorf("pia %s: answer is not the expected JSON: %w", op, clean(err, secrets))
	}
	return resp.StatusCode, nil
}

// clean strips the URL that net/http wraps around transport errors (it
// contains the query with the secrets) and redacts what is left.
func clean(err error, secrets []string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := redact(err.Error(), secrets)
	if msg == err.Error() {
		return err // keep the chain (errors.Is for timeouts, TLS errors)
	}
	return errors.New(msg)
}

// redact replaces each secret, and its URL-escaped forms, with
// "(hidden)".
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
			s = strings.ReplaceAll(s, form, "(hidden)")
		}
	}
	return s
}

// Signature is a getSignature answer: the port, its expiry, and the
// opaque payload and signature that bindPort wants back verbatim.
type Signature struct {
	Port      uint16
	Expires   time.Time
	Payload   string // base64 JSON {token, port, expires_at}; contains the token
	Signature string
}

// String hides the payload and the signature.
func (s Signature) String() string {
	return fmt.Sprintf("port %d, expires %s", s.Port, s.Expires.Format(time.RFC3339))
}

// GoString hides them from %#v too.
func (s Signature) GoString() string { return "pia.Signature{" + s.String() + "}" }

type payload struct {
	Token   string    `json:"token"`
	Port    uint16    `json:"port"`
	Expires time.Time `json:"expires_at"`
}

// decodePayload reads the port and expiry out of the payload. PIA sends
// standard base64 with padding; unpadded input is accepted as well.
func decodePayload(p string) (payload, error) {
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(p); err != nil {
			return payload{}, errors.New("payload is not base64")
		}
	}
	var pl payload
	if err := json.Unmarshal(raw, &pl); err != nil {
		return payload{}, errors.New("payload is not the expected JSON")
	}
	if pl.Port == 0 {
		return payload{}, errors.New("payload has no port")
	}
	if pl.Expires.IsZero() {
		return payload{}, errors.New("payload has no expires_at")
	}
	return pl, nil
}
