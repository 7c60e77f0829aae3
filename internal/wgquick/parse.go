package wgquick

import (
	"sort"

	"bytes"
	"cmp"
	"fmt"
	"github.com/vpn-confinement/vpn-confinement/internal/typo"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

type section int

const (
	sectionNone section = iota
	sectionInterface
	sectionPeer
	sectionIgnored // unknown or duplicate section: its keys were not parsed
)

// Canonical key spellings per section. Lookups go through strings.ToLower
// because wg(8) compares keys case-insensitively.
var (
	interfaceKeys = canonical("PrivateKey", "ListenPort", "FwMark", "Address", "DNS", "MTU",
		"Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig")
	peerKeys = canonical("PublicKey", "PresharedKey", "Endpoint", "AllowedIPs", "PersistentKeepalive")
	// repeatable keys may appear several times: the list keys and the hooks
	// (several PostUp lines are common). Every other key must appear once.
	repeatable = canonical("Address", "DNS", "AllowedIPs", "PreUp", "PostUp", "PreDown", "PostDown")
	// secretKeys name the values that must never reach a Problem message.
	secretKeys = canonical("PrivateKey", "PresharedKey")
)

func canonical(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[strings.ToLower(k)] = k
	}
	return m
}

type parser struct {
	f        *File
	problems []Problem
	section  section
	seen     map[string]int // canonical key -> line, for the current section
	secrets  []string
	// present records keys that appeared (valid or not) per section, so a
	// missing key is not reported on top of an invalid one.
	ifacePrivateKey bool
	peerPublicKey   []bool
}

// Parse reads a wg-quick file from r. It always returns a non-nil File
// holding everything that could be parsed, plus every problem found, in line
// order (file-level problems, with Line 0, last). A file is usable only if
// there are no problems. Besides syntax it requires an [Interface] with a
// PrivateKey and at least one [Peer], each with a PublicKey; everything else
// (addresses present, endpoint form, IPv6 policy) is left to the caller.
func Parse(r io.Reader) (*File, []Problem) {
	p := &parser{f: &File{}}
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	switch {
	case err != nil:
		p.problemf(0, "", "cannot read: %v", err)
	case len(data) > MaxFileSize:
		p.problemf(0, "", "file is larger than %d bytes; this is not a wg-quick configuration", MaxFileSize)
	default:
		data = bytes.TrimPrefix(data, []byte("\uFEFF"))
		for i, line := range strings.Split(string(data), "\n") {
			p.line(i+1, line)
		}
		p.finish()
	}
	p.scrub()
	// Missing-key problems are found at the end but belong to section
	// lines; file-level problems (Line 0) go last.
	slices.SortStableFunc(p.problems, func(a, b Problem) int {
		return cmp.Compare(sortLine(a.Line), sortLine(b.Line))
	})
	return p.f, p.problems
}

func sortLine(l int) int {
	if l == 0 {
		return math.MaxInt
	}
	return l
}

func (p *parser) problemf(line int, key, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) line(n int, raw string) {
	text := strings.TrimSuffix(raw, "\r")
	if i := strings.IndexByte(text, '#'); i >= 0 {
		text = text[:i]
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return
	}
	if text[0] == '[' {
		p.header(n, text)
		return
	}
	rawKey, value, ok := strings.Cut(text, "=")
	if !ok {
		p.problemf(n, "", `expected "Key = value" or a [Section] header`)
		return
	}
	rawKey, value = strings.TrimSpace(rawKey), strings.TrimSpace(value)
	lower := strings.ToLower(rawKey)
	if _, ok := secretKeys[lower]; ok {
		p.secrets = append(p.secrets, value)
	}

	var keys map[string]string
	switch p.section {
	case sectionNone:
		p.problemf(n, "", "%s appears before any [Interface] or [Peer] section", describeKey(rawKey))
		return
	case sectionIgnored:
		return
	case sectionInterface:
		keys = interfaceKeys
	case sectionPeer:
		keys = peerKeys
	}
	key, ok := keys[lower]
	if !ok {
		p.unknownKey(n, rawKey)
		return
	}
	if _, ok := repeatable[lower]; !ok {
		if first, dup := p.seen[key]; dup {
			p.problemf(n, key, "%s is already set on line %d; wg would silently use the last one", key, first)
			return
		}
		p.seen[key] = n
	}
	if p.section == sectionInterface {
		p.interfaceKey(n, key, value)
	} else {
		p.peerKey(n, key, value)
	}
}

func (p *parser) header(n int, text string) {
	if !strings.HasSuffix(text, "]") {
		p.problemf(n, "", "section header is missing its closing ']'")
		p.section = sectionIgnored
		return
	}
	name := strings.TrimSpace(text[1 : len(text)-1])
	p.seen = map[string]int{}
	switch strings.ToLower(name) {
	case "interface":
		if first := p.f.Interface.Line; first != 0 {
			p.problemf(n, "", "second [Interface] section (the first is on line %d); a file describes one interface", first)
			p.section = sectionIgnored
			return
		}
		p.f.Interface.Line = n
		p.section = sectionInterface
	case "peer":
		p.f.Peers = append(p.f.Peers, Peer{Line: n})
		p.peerPublicKey = append(p.peerPublicKey, false)
		p.section = sectionPeer
	default:
		what := "an unknown section"
		if identifier(name) {
			what = fmt.Sprintf("unknown section [%s]", name)
		}
		p.problemf(n, "", "%s: wg-quick files only have [Interface] and [Peer]; its keys are ignored", what)
		p.section = sectionIgnored
	}
}

func (p *parser) unknownKey(n int, rawKey string) {
	lower := strings.ToLower(rawKey)
	switch {
	case p.section == sectionInterface && peerKeys[lower] != "":
		p.problemf(n, peerKeys[lower], "%s belongs in a [Peer] section, not in [Interface]", peerKeys[lower])
	case p.section == sectionPeer && interfaceKeys[lower] != "":
		p.problemf(n, interfaceKeys[lower], "%s belongs in the [Interface] section, not in [Peer]", interfaceKeys[lower])
	default:
		msg := fmt.Sprintf("unknown key %s", describeKey(rawKey))
		keys := interfaceKeys
		if p.section == sectionPeer {
			keys = peerKeys
		}
		if s := suggest(lower, keys); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", s)
		}
		p.problemf(n, "", "%s", msg)
	}
}

// describeKey names a key in a message only if it looks like a key name
// (letters first, then letters, digits, '-', '_' or spaces, at most 32
// characters). Anything else might be key material pasted in the wrong place
// (a bare base64 key splits at its '=' padding), so it is not echoed.
func describeKey(k string) string {
	if identifier(k) {
		return fmt.Sprintf("%q", k)
	}
	return "(not shown: it does not look like a key name)"
}

func identifier(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_' || c == ' ')) {
			return false
		}
	}
	return true
}

// suggest returns the known key closest to k if it is a plausible typo
// (spacing, a missing letter, two swapped letters).
func suggest(k string, keys map[string]string) string {
	k = strings.Join(strings.Fields(k), "")
	lowers := make([]string, 0, len(keys))
	for lower := range keys {
		lowers = append(lowers, lower)
	}
	sort.Strings(lowers)
	if best := typo.Closest(k, lowers, 2); best != "" {
		return keys[best]
	}
	return ""
}

func (p *parser) interfaceKey(n int, key, value string) {
	in := &p.f.Interface
	switch key {
	case "PrivateKey":
		p.ifacePrivateKey = true
		if p.key(n, key, value) {
			in.PrivateKey = Field[Secret]{Secret{value}, n}
		}
	case "Address":
		for _, item := range listItems(value) {
			if pfx, ok := parsePrefix(item); ok {
				in.Address = append(in.Address, Field[netip.Prefix]{pfx, n})
			} else {
				p.problemf(n, key, "Address entry %s is not an IP address or CIDR prefix", quote(item))
			}
		}
	case "DNS":
		for _, item := range listItems(value) {
			p.dnsItem(n, item)
		}
	case "MTU":
		// 68 is the IPv4 minimum; 65455 is 65535 minus WireGuard's
		// worst-case overhead, the kernel's maximum for a wg device.
		if v, ok := number(value, 68, 65455); ok {
			in.MTU = Field[int]{int(v), n}
		} else {
			p.problemf(n, key, "MTU %s is not a number between 68 and 65455", quote(value))
		}
	case "ListenPort":
		if v, ok := number(value, 0, 65535); ok {
			in.ListenPort = Field[uint16]{uint16(v), n}
		} else {
			p.problemf(n, key, "ListenPort %s is not a port number between 0 and 65535", quote(value))
		}
	case "FwMark":
		if v, ok := fwMark(value); ok {
			in.FwMark = Field[uint32]{v, n}
		} else {
			p.problemf(n, key, "FwMark %s is neither \"off\" nor a number 0-4294967295 (decimal or 0x hex)", quote(value))
		}
	default: // Table, PreUp, PostUp, PreDown, PostDown, SaveConfig
		in.Unsupported = append(in.Unsupported, Setting{Key: key, Value: value, Line: n})
	}
}

func (p *parser) peerKey(n int, key, value string) {
	idx := len(p.f.Peers) - 1
	peer := &p.f.Peers[idx]
	switch key {
	case "PublicKey":
		p.peerPublicKey[idx] = true
		if p.key(n, key, value) {
			peer.PublicKey = Field[string]{value, n}
		}
	case "PresharedKey":
		if p.key(n, key, value) {
			peer.PresharedKey = Field[Secret]{Secret{value}, n}
		}
	case "Endpoint":
		if value == "" {
			p.problemf(n, key, "Endpoint is empty; write host:port or [IPv6]:port, or leave the key out")
		} else {
			peer.Endpoint = Field[string]{value, n}
		}
	case "AllowedIPs":
		for _, item := range listItems(value) {
			if pfx, ok := parsePrefix(item); ok {
				peer.AllowedIPs = append(peer.AllowedIPs, Field[netip.Prefix]{pfx, n})
			} else {
				p.problemf(n, key, "AllowedIPs entry %s is not an IP address or CIDR prefix", quote(item))
			}
		}
	case "PersistentKeepalive":
		if strings.EqualFold(value, "off") {
			peer.PersistentKeepalive = Field[uint16]{0, n}
		} else if v, ok := number(value, 0, 65535); ok {
			peer.PersistentKeepalive = Field[uint16]{uint16(v), n}
		} else {
			p.problemf(n, key, "PersistentKeepalive %s is neither \"off\" nor a number of seconds 0-65535", quote(value))
		}
	}
}

// key validates a base64 key and reports problems without its value.
func (p *parser) key(n int, key, value string) bool {
	if _, ok := decodeKey(value); ok {
		return true
	}
	if value == "" {
		p.problemf(n, key, "%s is empty", key)
	} else {
		p.problemf(n, key, "%s is not a valid WireGuard key: want 44 characters of base64 encoding 32 bytes, got %d characters (value not shown)", key, len(value))
	}
	return false
}

// dnsItem sorts a DNS = entry the way wg-quick does: IP addresses become
// resolvers, anything else a search domain.
func (p *parser) dnsItem(n int, item string) {
	if a, err := netip.ParseAddr(item); err == nil && a.Zone() == "" {
		p.f.Interface.DNS = append(p.f.Interface.DNS, Field[netip.Addr]{a, n})
		return
	}
	// wg-quick's own test: digits and dots, or any colon, means "address".
	if strings.Contains(item, ":") || strings.Trim(item, "0123456789.") == "" {
		hint := ""
		if strings.Contains(item, "%") {
			hint = " (zones are not allowed)"
		}
		p.problemf(n, "DNS", "DNS entry %s is not a valid IP address%s", quote(item), hint)
		return
	}
	if !searchDomain(item) {
		p.problemf(n, "DNS", "DNS entry %s is neither an IP address nor a search domain", quote(item))
		return
	}
	p.f.Interface.DNSSearch = append(p.f.Interface.DNSSearch, Field[string]{item, n})
}

// searchDomain is a loose check (dot-separated labels of letters, digits, '-'
// and '_', optional trailing dot) that keeps obvious garbage out;
// config.ValidSearchDomain has the final word.
func searchDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return false
		}
	}
	return true
}

func (p *parser) finish() {
	p.withholdSecrets()
	if p.f.Interface.Line == 0 {
		p.problemf(0, "", "no [Interface] section: a wg-quick file needs one with the PrivateKey")
	} else if !p.ifacePrivateKey {
		p.problemf(p.f.Interface.Line, "PrivateKey", "[Interface] has no PrivateKey")
	}
	if len(p.f.Peers) == 0 {
		p.problemf(0, "", "no [Peer] section: the tunnel would have no server to talk to")
	}
	first := map[string]int{}
	for i, peer := range p.f.Peers {
		if !p.peerPublicKey[i] {
			p.problemf(peer.Line, "PublicKey", "[Peer] has no PublicKey")
			continue
		}
		if !peer.PublicKey.IsSet() {
			continue
		}
		if line, dup := first[peer.PublicKey.Value]; dup {
			p.problemf(peer.PublicKey.Line, "PublicKey", "this peer has the same PublicKey as the peer on line %d; wg would merge them into one", line)
			continue
		}
		first[peer.PublicKey.Value] = peer.PublicKey.Line
	}
}

// hasSecret reports whether s contains a PrivateKey or PresharedKey value of
// the file. Values shorter than 8 bytes are not keys and are ignored, so
// that ordinary words do not match.
func (p *parser) hasSecret(s string) bool {
	for _, sec := range p.secrets {
		if len(sec) >= 8 && strings.Contains(s, sec) {
			return true
		}
	}
	return false
}

// withholdSecrets keeps key material out of the fields that print as plain
// text. A private key pasted as a peer's PublicKey (it happens when copying
// between two config files) would otherwise be logged as a public key.
func (p *parser) withholdSecrets() {
	for i := range p.f.Peers {
		peer := &p.f.Peers[i]
		if peer.PublicKey.IsSet() && p.hasSecret(peer.PublicKey.Value) {
			p.problemf(peer.PublicKey.Line, "PublicKey", "PublicKey is the same as a PrivateKey or PresharedKey in this file; a secret key was pasted in place of the server's public key")
			peer.PublicKey = Field[string]{}
		}
		if peer.Endpoint.IsSet() && p.hasSecret(peer.Endpoint.Value) {
			p.problemf(peer.Endpoint.Line, "Endpoint", "Endpoint contains key material (value not shown)")
			peer.Endpoint = Field[string]{}
		}
	}
	in := &p.f.Interface
	in.DNSSearch = slices.DeleteFunc(in.DNSSearch, func(d Field[string]) bool {
		if p.hasSecret(d.Value) {
			p.problemf(d.Line, "DNS", "DNS entry contains key material (value not shown)")
			return true
		}
		return false
	})
	for i := range in.Unsupported {
		if p.hasSecret(in.Unsupported[i].Value) {
			in.Unsupported[i].Value = hidden
		}
	}
}

// scrub is defence in depth: no message is built from a secret value, but
// should one ever be, this replaces the message before the caller sees it.
func (p *parser) scrub() {
	for i, pr := range p.problems {
		if p.hasSecret(pr.Message) || p.hasSecret(pr.Key) {
			p.problems[i] = Problem{Line: pr.Line, Message: "a problem on this line is not shown because its text would include key material"}
		}
	}
}

// listItems splits a list value on commas and whitespace, as wg-quick's
// ${value//,/ } word splitting does; empty items are dropped.
func listItems(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// parsePrefix accepts "addr/bits" or a bare address (a host prefix).
func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// number parses an unsigned decimal in [lo, hi]. Leading zeros are accepted
// because wg(8) reads these values with strtoul(..., 10).
func number(s string, lo, hi uint64) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil && v >= lo && v <= hi
}

// fwMark parses what wg(8) accepts: "off", decimal, or hex with a
// lower-case "0x" prefix.
func fwMark(s string) (uint32, bool) {
	if strings.EqualFold(s, "off") {
		return 0, true
	}
	base, digits := 10, s
	if len(s) > 2 && s[:2] == "0x" {
		base, digits = 16, s[2:]
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, base, 32)
	return uint32(v), err == nil
}

// quote renders a non-secret value for a message, unless it contains
// something shaped like a WireGuard key (a long base64 run), which is then
// withheld in case a key was pasted into the wrong line.
func quote(s string) string {
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			run++
			if run >= 32 {
				return "(not shown: it looks like key material)"
			}
		} else {
			run = 0
		}
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}
