// Package apps holds what the torrent-client adapters (subpackages
// qbittorrent, transmission, deluge) have in common: the interface the
// port-forwarding helper drives, and the errors that tell an operator what
// to fix. Each adapter sets the listening port over the client's own
// remote API and verifies it by reading it back; credentials come from
// files (internal/credentials) and never reach logs or errors.
package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Adapter is a torrent client whose listening port follows the forwarded
// port.
type Adapter interface {
	// SetPort makes the client listen on port and verifies that it took.
	SetPort(ctx context.Context, port uint16) error
	// Port reads the configured listening port.
	Port(ctx context.Context) (uint16, error)
	// Close is called when the forwarded port is lost: the client stops
	// announcing a port that is no longer forwarded, where it has a way
	// to say so (see each adapter).
	Close(ctx context.Context) error
}

// Errors, matched with errors.Is.
var (
	// ErrUnauthorized: the client rejected the credentials.
	ErrUnauthorized = errors.New("wrong user name or password")
	// ErrAuthRequired: the client wants a login but no credentials file
	// was given.
	ErrAuthRequired = errors.New("the client requires a login, and no credentials file is configured")
	// ErrBanned: the client refuses this address after failed logins.
	ErrBanned = errors.New("this address is banned after too many failed logins")
	// ErrNotApplied: the client accepted the setting but reads back
	// another value.
	ErrNotApplied = errors.New("the client did not apply the port")
)

// NotAppliedError says what the client read back.
type NotAppliedError struct {
	App       string
	Want, Got uint16
}

func (e *NotAppliedError) Error() string {
	return fmt.Sprintf("%s: set listening port %d, but it reads back %d", e.App, e.Want, e.Got)
}

func (e *NotAppliedError) Unwrap() error { return ErrNotApplied }

// ReadBack reads the client's port after setting it: a client that
// accepted the call but kept another port is a NotAppliedError.
func ReadBack(ctx context.Context, app string, want uint16, read func(context.Context) (uint16, error)) error {
	got, err := read(ctx)
	if err != nil {
		return err
	}
	if got != want {
		return &NotAppliedError{App: app, Want: want, Got: got}
	}
	return nil
}

// MaxBody bounds what adapters read from a client's answer.
const MaxBody = 1 << 20

// ReadBody reads at most MaxBody bytes of resp's body and closes it.
func ReadBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, MaxBody))
}
