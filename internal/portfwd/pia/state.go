package pia

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A PIA signature stays valid for about two months and its port can be
// bound on any PIA server, so keeping it across restarts keeps the
// forwarded port (gluetun does the same). The file holds the payload,
// which contains the API token: it is written 0600.

type savedSignature struct {
	Port      uint16    `json:"port"`
	Expires   time.Time `json:"expires_at"`
	Payload   string    `json:"payload"`
	Signature string    `json:"signature"`
}

// SaveSignature writes sig to path atomically (temporary file, rename).
func SaveSignature(path string, sig Signature) error {
	b, _ := json.Marshal(savedSignature{sig.Port, sig.Expires, sig.Payload, sig.Signature})
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pia: save signature: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: a no-op
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("pia: save signature: %w", err)
	}
	return nil
}

// LoadSignature reads a signature saved by SaveSignature and checks that
// its payload agrees with the saved port and expiry. It does not check
// the expiry against the clock; the Forwarder does.
func LoadSignature(path string) (Signature, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Signature{}, fmt.Errorf("pia: load signature: %w", err)
	}
	var s savedSignature
	if err := json.Unmarshal(b, &s); err != nil {
		return Signature{}, fmt.Errorf("pia: load signature %s: not the expected JSON", path)
	}
	pl, err := decodePayload(s.Payload)
	if err != nil {
		return Signature{}, fmt.Errorf("pia: load signature %s: %w", path, err)
	}
	if s.Signature == "" || pl.Port != s.Port || !pl.Expires.Equal(s.Expires) {
		return Signature{}, errors.New("pia: load signature " + path + ": payload and saved values disagree")
	}
	return Signature{Port: s.Port, Expires: s.Expires, Payload: s.Payload, Signature: s.Signature}, nil
}
