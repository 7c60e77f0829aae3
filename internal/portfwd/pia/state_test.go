package pia

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadSignature(t *testing.T) {
	f := &fakeGateway{port: 47047, expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
	sig := Signature{Port: f.port, Expires: f.expires, Payload: f.payload(), Signature: signature}
	p := filepath.Join(t.TempDir(), "pia.json")
	if err := SaveSignature(p, sig); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	got, err := LoadSignature(p)
	if err != nil || got != sig {
		t.Fatalf("loaded %#v, %v", got, err)
	}
	// A saved port that disagrees with the payload is refused.
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), `"port":47047`, `"port":47048`, 1)), 0o600)
	if _, err := LoadSignature(p); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("tampered: %v", err)
	}
	noSecrets(t, err)
	os.WriteFile(p, []byte("{"), 0o600)
	if _, err := LoadSignature(p); err == nil {
		t.Error("garbage accepted")
	}
}

func TestForwarderResumes(t *testing.T) {
	now := time.Now()
	f := &fakeGateway{port: 47047, expires: now.Add(30 * 24 * time.Hour)}
	g := startGateway(t, f)
	file := filepath.Join(t.TempDir(), "pia.json")
	var logs []string
	newFw := func() *Forwarder {
		return &Forwarder{Gateway: g, SignatureFile: file, Now: func() time.Time { return now },
			Token: func(context.Context) (string, error) { return token, nil },
			Logf:  func(format string, a ...any) { logs = append(logs, fmt.Sprintf(format, a...)) }}
	}
	ctx := context.Background()
	// First start: no file yet, a new signature, saved.
	if l, err := newFw().Acquire(ctx); err != nil || l.Port != 47047 || f.sigs != 1 {
		t.Fatalf("first: %+v, %v, %d signatures", l, err, f.sigs)
	}
	// Restart: the saved signature is bound, no new one asked for.
	if l, err := newFw().Acquire(ctx); err != nil || l.Port != 47047 || f.sigs != 1 || f.binds != 2 {
		t.Fatalf("resume: %+v, %v, %d signatures %d binds", l, err, f.sigs, f.binds)
	}
	// Restart while the gateway is unreachable: the error is returned and
	// the saved signature kept for the next try.
	fw := newFw()
	down := func(context.Context, string, string) (net.Conn, error) {
		return nil, fmt.Errorf("network is unreachable")
	}
	fw.Gateway = &Gateway{Addr: g.Addr, Port: g.Port, Hostname: g.Hostname, RootCAs: g.RootCAs, Dial: down}
	if _, err := fw.Acquire(ctx); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("unreachable: %v", err)
	}
	fw.Gateway = g
	if l, err := fw.Acquire(ctx); err != nil || l.Port != 47047 || f.sigs != 1 {
		t.Fatalf("after unreachable: %+v, %v, %d signatures", l, err, f.sigs)
	}
	// Restart when the saved port is busy: a new signature, logged.
	f.busy, f.nextPort = 1, 47048
	if l, err := newFw().Acquire(ctx); err != nil || l.Port != 47048 || f.sigs != 2 {
		t.Fatalf("busy: %+v, %v, %d signatures", l, err, f.sigs)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "is busy") {
		t.Errorf("logs %q", logs)
	}
	// Restart after expiry: a new signature without trying the old one.
	now = now.Add(31 * 24 * time.Hour)
	f.expires = now.Add(30 * 24 * time.Hour)
	binds := f.binds
	if l, err := newFw().Acquire(ctx); err != nil || f.sigs != 3 || f.binds != binds+1 {
		t.Fatalf("expired: %+v, %v, %d signatures, %d binds", l, err, f.sigs, f.binds-binds)
	}
	for _, l := range logs {
		for _, s := range secrets {
			if strings.Contains(l, s) {
				t.Errorf("log leaks a secret: %s", l)
			}
		}
	}
}
