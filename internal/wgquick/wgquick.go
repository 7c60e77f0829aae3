// Package wgquick parses wg-quick(8) configuration files exactly as VPN
// providers ship them (Mullvad, ProtonVPN, IVPN, ...), so users can point the
// generator at the file they downloaded instead of retyping it.
//
// The parser is pure: it reads the input and nothing else. It never runs the
// wg-quick hooks (PreUp, PostUp, ...) or honours Table and SaveConfig; those
// are recorded in Interface.Unsupported with their line numbers so the
// caller can tell the user what is ignored and why.
//
// Parsing follows wg(8) and wg-quick(8): section names and keys are
// case-insensitive, '#' starts a comment anywhere on a line, blank lines,
// CRLF line endings and a UTF-8 byte order mark are accepted, and Address,
// DNS and AllowedIPs may repeat and hold comma- or space-separated lists. It
// is stricter where wg(8) silently merges or overwrites: unknown keys, keys
// outside a section, a second [Interface] and repeated single-value keys
// are errors. All problems are returned, each with its line, not just the
// first.
//
// Key material is kept in Secret, which never prints, and no Problem message
// ever contains a PrivateKey or PresharedKey value.
package wgquick

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
)

// MaxFileSize bounds the input. Provider files are a few hundred bytes; the
// limit only stops a wrong path (a device, a log file) from being read whole.
const MaxFileSize = 1 << 20

// Field is a parsed value and the 1-based line it came from. Line is 0 when
// the key was absent (or its value was invalid and reported as a Problem),
// so callers can report "provider.conf:7: ..." about values they reject.
type Field[T any] struct {
	Value T
	Line  int
}

// IsSet reports whether the key was present with a valid value.
func (f Field[T]) IsSet() bool { return f.Line > 0 }

// File is a parsed wg-quick file.
type File struct {
	Interface Interface
	Peers     []Peer
}

// Interface is the [Interface] section.
type Interface struct {
	// Line is the line of the [Interface] header, 0 if there is none.
	Line       int
	PrivateKey Field[Secret]
	// Address lists the tunnel addresses as written; a bare IP means /32 or
	// /128. Host bits are kept (10.64.0.2/32, or 10.0.0.2/24 for a subnet).
	Address []Field[netip.Prefix]
	// DNS holds the entries of DNS = that are IP addresses and DNSSearch
	// those that are not: wg-quick treats the latter as search domains.
	// Search domains are only checked loosely here; callers validate them.
	DNS       []Field[netip.Addr]
	DNSSearch []Field[string]
	MTU       Field[int]
	// ListenPort 0 means "pick a random port", as in wg(8).
	ListenPort Field[uint16]
	// FwMark 0 (written "0" or "off") disables the mark, as in wg(8).
	FwMark Field[uint32]
	// Unsupported lists wg-quick-only keys (Table, PreUp, PostUp, PreDown,
	// PostDown, SaveConfig) in file order. They are never executed; the
	// caller decides whether each is an error or a warning.
	Unsupported []Setting
}

// Setting is a raw key/value pair. Value is exactly as written (after
// comment and whitespace stripping) and may hold shell commands.
type Setting struct {
	Key   string // canonical spelling, e.g. "PostUp"
	Value string
	Line  int
}

// Peer is one [Peer] section.
type Peer struct {
	// Line is the line of the [Peer] header.
	Line int
	// PublicKey is the canonical 44-character base64 text of the key.
	PublicKey    Field[string]
	PresharedKey Field[Secret]
	// Endpoint is kept raw (host:port, [v6]:port); the caller validates it
	// because its policy (literal IPs only, hostnames allowed) is not the
	// parser's business.
	Endpoint Field[string]
	// AllowedIPs as written; host bits are kept, callers mask them
	// (wg(8) only warns about them).
	AllowedIPs []Field[netip.Prefix]
	// PersistentKeepalive in seconds; 0 (written "0" or "off") disables it.
	PersistentKeepalive Field[uint16]
}

// Problem is one error in a file. Line is 0 for problems about the file as
// a whole (a missing section). Key is the canonical key name when the
// problem concerns one, else "".
type Problem struct {
	Line    int
	Key     string
	Message string
}

// Error renders the problem without a file name: "line 7: message".
func (p Problem) Error() string {
	if p.Line == 0 {
		return p.Message
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Message)
}

// Join turns problems into one error with lines prefixed "name:line: ", the
// format editors and compilers use, or nil if there are none.
func Join(name string, problems []Problem) error {
	errs := make([]error, 0, len(problems))
	for _, p := range problems {
		if p.Line == 0 {
			errs = append(errs, fmt.Errorf("%s: %s", name, p.Message))
		} else {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, p.Line, p.Message))
		}
	}
	return errors.Join(errs...)
}

// ParseFile reads and parses the file at path. The error is only for I/O
// (missing file, unreadable); parse problems come back as Problems. It does
// not check ownership or mode: that policy belongs to the caller.
func ParseFile(path string) (*File, []Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	file, problems := Parse(f)
	return file, problems, nil
}

// Secret holds a WireGuard private or preshared key. Every way of printing
// it (String, GoString, any fmt verb, encoding/json, log/slog) yields
// "(hidden)", so a stray %v in a log line cannot leak it; use Reveal or Key
// where the key is really needed.
type Secret struct{ text string }

const hidden = "(hidden)"

func (s Secret) String() string                { return hidden }
func (s Secret) GoString() string              { return hidden }
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, hidden) }

// MarshalText keeps the key out of JSON, YAML and slog output. There is
// deliberately no UnmarshalText: a marshalled Secret cannot come back as a
// wrong key.
func (s Secret) MarshalText() ([]byte, error) { return []byte(hidden), nil }

// IsZero reports whether no key is held.
func (s Secret) IsZero() bool { return s.text == "" }

// Reveal returns the base64 text of the key, as written in the file.
func (s Secret) Reveal() string { return s.text }

// Key returns the 32 key bytes (all zero if IsZero).
func (s Secret) Key() [32]byte {
	k, _ := decodeKey(s.text)
	return k
}

// decodeKey accepts what wg(8)'s key_from_base64 accepts: exactly 44
// characters of standard base64 ending in '=' that decode to 32 bytes.
func decodeKey(s string) ([32]byte, bool) {
	var k [32]byte
	if len(s) != 44 || s[43] != '=' {
		return k, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return k, false
	}
	copy(k[:], b)
	return k, true
}
