package pia

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
)

// Forwarder is PIA port forwarding as a lease.Provider.
//
// Acquire: token → getSignature → bindPort. Renew: bindPort with the same
// signature (every KeepAlive); a 409 or an expired signature makes the
// lease loop acquire again, which gets a new signature (and possibly a new
// port).
//
// Lifetime: PIA does not say how long a binding lasts without keep-alive,
// only that the server deletes it ("this script will need to remain
// active"). The lease is taken to last two keep-alive periods past the
// last successful bindPort, capped at the signature's expires_at; that
// gives the loop a full period of retries before it reports a loss. This
// is an assumption, not a documented value.
type Forwarder struct {
	Gateway *Gateway
	// Token returns an API token, e.g. (&TokenSource{...}).Token.
	Token func(ctx context.Context) (string, error)
	// KeepAlive defaults to KeepAlive (15 min).
	KeepAlive time.Duration
	// Now is used only for expires_at; nil means time.Now.
	Now func() time.Time
	// SignatureFile, if set, keeps the signature across restarts: the
	// first Acquire tries the saved one (while it is valid and binds),
	// and every new signature is saved there (see SaveSignature).
	SignatureFile string
	// Logf receives what is not an error of the call: a saved signature
	// that could not be used, a failure to save one.
	Logf func(format string, args ...any)

	triedSaved bool

	sig Signature // the signature in use
}

var _ lease.Provider = (*Forwarder)(nil)

func (f *Forwarder) keepAlive() time.Duration {
	if f.KeepAlive <= 0 {
		return KeepAlive
	}
	return f.KeepAlive
}

func (f *Forwarder) now() time.Time {
	if f.Now == nil {
		return time.Now()
	}
	return f.Now()
}

// Acquire gets a new signature and binds its port.
func (f *Forwarder) Acquire(ctx context.Context) (lease.Lease, error) {
	if f.SignatureFile != "" && !f.triedSaved {
		l, err := f.resume(ctx)
		var apiErr *APIError
		switch {
		case err == nil:
			f.triedSaved = true
			return l, nil
		case errors.Is(err, os.ErrNotExist):
			f.triedSaved = true
		case errors.As(err, &apiErr), errors.Is(err, ErrPortBusy), !errors.Is(err, errBind):
			// The server refused it, or the file is bad or expired.
			f.triedSaved = true
			f.logf("pia: not reusing the saved signature: %v", err)
		default:
			// The gateway is not reachable (yet): keep the saved
			// signature for the next try instead of replacing it.
			return lease.Lease{}, err
		}
	}
	if f.Token == nil {
		return lease.Lease{}, errors.New("pia: no token source")
	}
	token, err := f.Token(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	sig, err := f.Gateway.GetSignature(ctx, token)
	if err != nil {
		return lease.Lease{}, err
	}
	if !f.now().Before(sig.Expires) {
		// A fresh signature that is already expired is the server's (or
		// our clock's) problem; asking again at once would loop.
		return lease.Lease{}, fmt.Errorf("pia getSignature: new signature for port %d already expired at %s (is the clock right?)",
			sig.Port, sig.Expires.Format(time.RFC3339))
	}
	f.sig = sig
	if f.SignatureFile != "" {
		if err := SaveSignature(f.SignatureFile, sig); err != nil {
			f.logf("%v", err)
		}
	}
	return f.bind(ctx)
}

// resume binds the saved signature.
func (f *Forwarder) resume(ctx context.Context) (lease.Lease, error) {
	sig, err := LoadSignature(f.SignatureFile)
	if err != nil {
		return lease.Lease{}, err
	}
	if !f.now().Before(sig.Expires) {
		return lease.Lease{}, fmt.Errorf("port %d expired at %s", sig.Port, sig.Expires.Format(time.RFC3339))
	}
	f.sig = sig
	l, err := f.bind(ctx)
	if err != nil {
		f.sig = Signature{}
		return lease.Lease{}, fmt.Errorf("%w: %w", errBind, err)
	}
	return l, nil
}

// errBind marks resume errors that come from bindPort, not from the file.
var errBind = errors.New("bind saved signature")

func (f *Forwarder) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}

// Renew repeats bindPort for the current signature.
func (f *Forwarder) Renew(ctx context.Context, cur lease.Lease) (lease.Lease, error) {
	if f.sig.Port == 0 || f.sig.Port != cur.Port {
		return lease.Lease{}, fmt.Errorf("pia: no signature for port %d: %w", cur.Port, lease.ErrReacquire)
	}
	if !f.now().Before(f.sig.Expires) {
		return lease.Lease{}, fmt.Errorf("pia port %d, expired at %s: %w", f.sig.Port, f.sig.Expires.Format(time.RFC3339), ErrExpired)
	}
	// A signature that runs out before the next keep-alive is replaced
	// now: renewing it would only make the lease shorter each time (the
	// loop renews at 3/4 of what is left), a burst of binds that ends in
	// a loss at expires_at instead of a change of port.
	if left := f.sig.Expires.Sub(f.now()); left < f.keepAlive() {
		return lease.Lease{}, fmt.Errorf("pia port %d expires at %s, before the next keep-alive: %w",
			f.sig.Port, f.sig.Expires.Format(time.RFC3339), ErrExpired)
	}
	return f.bind(ctx)
}

func (f *Forwarder) bind(ctx context.Context) (lease.Lease, error) {
	if err := f.Gateway.BindPort(ctx, f.sig); err != nil {
		return lease.Lease{}, err
	}
	ka := f.keepAlive()
	life := min(2*ka, f.sig.Expires.Sub(f.now()))
	return lease.Lease{Port: f.sig.Port, Lifetime: life, RenewAfter: ka}, nil
}

// Release does nothing: the API has no unbind; an unrenewed binding is
// dropped by the server.
func (f *Forwarder) Release(context.Context, lease.Lease) error { return nil }
