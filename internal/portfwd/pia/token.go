package pia

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
)

// DefaultTokenURL is PIA's token endpoint.
const DefaultTokenURL = "https://www.privateinternetaccess.com/api/client/v2/token"

// TokenSource gets API tokens for an account: POST of the form
// username/password → {"token": ...}. A token is valid for about a day;
// the Forwarder asks for a fresh one at every acquisition.
type TokenSource struct {
	Credentials credentials.Credentials
	URL         string       // "" means DefaultTokenURL (tests point it elsewhere)
	Client      *http.Client // nil: system roots, 10 s timeout, no proxy
}

// Token fetches a token.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	u := s.URL
	if u == "" {
		u = DefaultTokenURL
	}
	client := s.Client
	if client == nil {
		client = &http.Client{
			Timeout:   DefaultTimeout,
			Transport: &http.Transport{Proxy: nil, TLSHandshakeTimeout: DefaultTimeout},
		}
	}
	if s.Credentials.Username == "" || s.Credentials.Password == "" {
		return "", errors.New("pia token: the credentials file needs a user name and a password")
	}
	secrets := []string{s.Credentials.Password}
	form := url.Values{"username": {s.Credentials.Username}, "password": {s.Credentials.Password}}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return "", errors.New("pia token: bad token URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var r struct {
		Token   string `json:"token"`
		Message string `json:"message"`
	}
	code, err := do(client, req, "token", secrets, &r)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", &APIError{Op: "token", HTTPStatus: code, Message: redact(r.Message, append(secrets, r.Token))}
	}
	if r.Token == "" {
		return "", errors.New("pia token: answer without a token")
	}
	return r.Token, nil
}

// KeepAlive is how often bindPort is repeated (the official script's
// sleep 900, gluetun's keepAlivePeriod).
const KeepAlive = 15 * time.Minute
