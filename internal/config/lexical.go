package config

// Lexical validators and name/number derivations shared by the config
// compiler. They port the reference module's lib.nix rules (research anchor
// §2.5, §6) so that a configuration accepted there is accepted here, with two
// deliberate tightenings documented at ValidHostname and
// AllocateHostLinkSubnets. Everything in this file is pure: no I/O, no
// globals that change.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ValidNamespaceName reports whether s can name a confinement namespace. The
// name becomes a file under /run/netns and part of unit instance names, so it
// must begin and end with an alphanumeric character, contain only
// [A-Za-z0-9_.-] and be at most 64 characters; this rules out ".", ".." and
// names that look like command-line options ("-x").
func ValidNamespaceName(s string) bool { return lexName(s, 64) }

// ValidInterfaceName reports whether s is a safe Linux interface name: the
// kernel limit is 15 bytes (IFNAMSIZ-1), and the same character rules as for
// namespace names keep it usable unquoted in nft rules and ip(8) commands.
func ValidInterfaceName(s string) bool { return lexName(s, 15) }

// lexName implements ^[A-Za-z0-9]([A-Za-z0-9_.-]{0,max-2}[A-Za-z0-9])?$.
func lexName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case lexAlnum(c):
		case (c == '_' || c == '.' || c == '-') && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}

func lexAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func lexDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lexCanonicalUint parses a decimal number of at most maxLen digits that has
// no leading zero (except "0" itself). Canonical digits matter because other
// tools disagree on "010" (octal for inet_aton, decimal elsewhere); refusing
// them removes the ambiguity instead of picking a side.
func lexCanonicalUint(s string, maxLen int) (uint64, bool) {
	if !lexDigits(s) || len(s) > maxLen || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		n = n*10 + uint64(s[i]-'0')
	}
	return n, true
}

// ParseIPv4Literal parses exactly four dot-separated canonical decimal octets
// (0-255, no leading zeros), so "192.0.02.1", "1.2.3" and "0x7f.0.0.1" are
// rejected rather than reinterpreted.
func ParseIPv4Literal(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		n, ok := lexCanonicalUint(p, 3)
		if !ok || n > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

// ParseIPv6Literal parses an IPv6 address under the reference rules: it must
// contain ':', must not carry a zone ('%') or prefix ('/'), has at most one
// "::", hextets of 1-4 hex digits and no empty groups; an embedded dotted IPv4
// (canonical octets) may only be the very last group, never left of "::", and
// counts as two groups; without "::" there are exactly 8 groups, with "::"
// fewer than 8. IPv4-mapped addresses (::ffff:a.b.c.d) are returned as IPv6
// addresses (Is4In6), as written; callers that care must Unmap.
func ParseIPv6Literal(s string) (netip.Addr, bool) {
	if !strings.Contains(s, ":") || strings.ContainsAny(s, "/%") || strings.Count(s, "::") > 1 {
		return netip.Addr{}, false
	}
	left, right, elided := strings.Cut(s, "::")
	var groups int
	if elided {
		l, ok := lexHextets(left, false)
		if !ok {
			return netip.Addr{}, false
		}
		r, ok := lexHextets(right, true)
		if !ok || l+r >= 8 {
			return netip.Addr{}, false
		}
		groups = l + r
	} else {
		var ok bool
		if groups, ok = lexHextets(s, true); !ok || groups != 8 {
			return netip.Addr{}, false
		}
	}
	// The lexical check above is the contract; netip builds the value. A
	// disagreement would be a bug in one of them, so fail closed.
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// lexHextets counts the groups of a colon-separated run ("" has zero groups).
// allowIPv4Tail permits a dotted IPv4 literal as the last group.
func lexHextets(s string, allowIPv4Tail bool) (int, bool) {
	if s == "" {
		return 0, true
	}
	parts := strings.Split(s, ":")
	n := 0
	for i, p := range parts {
		if strings.Contains(p, ".") {
			if !allowIPv4Tail || i != len(parts)-1 {
				return 0, false
			}
			if _, ok := ParseIPv4Literal(p); !ok {
				return 0, false
			}
			n += 2
			continue
		}
		if len(p) < 1 || len(p) > 4 {
			return 0, false
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return 0, false
			}
		}
		n++
	}
	return n, true
}

// ParseIPLiteral parses an IPv6 literal if s contains ':' and an IPv4 literal
// otherwise; hostnames are never resolved.
func ParseIPLiteral(s string) (netip.Addr, bool) {
	if strings.Contains(s, ":") {
		return ParseIPv6Literal(s)
	}
	return ParseIPv4Literal(s)
}

// ParseCIDR parses "addr" or "addr/bits". A bare address means a host route
// (/32 or /128). The prefix length must be canonical decimal ("/033" is
// rejected, as in the reference) and within the family's range. Host bits
// are kept, not rejected: callers decide whether to mask or complain, which
// matches the reference that accepts "192.0.2.1/24".
func ParseCIDR(s string) (netip.Prefix, bool) {
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	a, ok := ParseIPLiteral(addrPart)
	if !ok {
		return netip.Prefix{}, false
	}
	bits := uint64(a.BitLen())
	if hasBits {
		n, ok := lexCanonicalUint(bitsPart, 5)
		if !ok || n > bits {
			return netip.Prefix{}, false
		}
		bits = n
	}
	return netip.PrefixFrom(a, int(bits)), true
}

// lexPort parses a canonical decimal port 1-65535. Port 0 would let the
// kernel pick a random port, which is never what a peer endpoint means.
func lexPort(s string) (uint16, error) {
	if !lexDigits(s) {
		return 0, fmt.Errorf("port %q is not a decimal number", s)
	}
	n, ok := lexCanonicalUint(s, 5)
	if !ok {
		return 0, fmt.Errorf("port %q must be written without leading zeros", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return uint16(n), nil
}

// ParseEndpoint splits a WireGuard peer endpoint in one of the three forms
// wg(8) accepts: "IPv4:port", "[IPv6]:port" or "hostname:port". host is
// returned without brackets; IP hosts are returned in canonical netip form
// (lower-case hex, "::" compressed) so callers can compare and render them.
//
// Deliberate deviation from the reference: a host made only of digits and
// dots (such as "999.1.1.1" or "192.0.02.1") is an error here, not a
// hostname endpoint. The C resolver would feed such strings to inet_aton,
// which reads "02" as octal, so they never mean what they look like.
func ParseEndpoint(s string) (host string, port uint16, isHostname bool, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, false, fmt.Errorf("endpoint %q has no port; want IPv4:port, [IPv6]:port or hostname:port", s)
	}
	h, p := s[:i], s[i+1:]
	if h == "" {
		return "", 0, false, fmt.Errorf("endpoint %q has no host; want IPv4:port, [IPv6]:port or hostname:port", s)
	}
	switch {
	case strings.HasPrefix(h, "["):
		if !strings.HasSuffix(h, "]") || len(h) < 3 {
			return "", 0, false, fmt.Errorf("endpoint %q has an unterminated or empty '[' bracket", s)
		}
		inner := h[1 : len(h)-1]
		if !strings.Contains(inner, ":") {
			return "", 0, false, fmt.Errorf("endpoint %q: brackets are only for IPv6 addresses, got %q", s, inner)
		}
		a, ok := ParseIPv6Literal(inner)
		if !ok {
			return "", 0, false, fmt.Errorf("endpoint %q: %q is not a valid IPv6 address (zones are not allowed)", s, inner)
		}
		host = a.String()
	case strings.Contains(h, ":"):
		return "", 0, false, fmt.Errorf("endpoint %q: an IPv6 address must be written in brackets, as [address]:port", s)
	case lexDottedDigits(h):
		a, ok := ParseIPv4Literal(h)
		if !ok {
			return "", 0, false, fmt.Errorf("endpoint %q: %q is not a valid IPv4 address (four octets 0-255, no leading zeros)", s, h)
		}
		host = a.String()
	default:
		if !ValidHostname(h) {
			return "", 0, false, fmt.Errorf("endpoint %q: %q is not a valid hostname (letters, digits and inner hyphens per label, at most 253 characters, no trailing dot, not all-numeric)", s, h)
		}
		host, isHostname = h, true
	}
	port, err = lexPort(p)
	if err != nil {
		return "", 0, false, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return host, port, isHostname, nil
}

func lexDottedDigits(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

// ValidHostname reports whether s is a DNS hostname usable as an endpoint:
// at most 253 characters, dot-separated labels of 1-63 letters, digits and
// inner hyphens, no empty labels (so no trailing dot) and not an IP literal.
//
// Tightening over the reference: the last label must not look like a number
// (all digits, or "0x" followed by zero or more hex digits). RFC 3696 §2
// forbids numeric top-level labels, and getaddrinfo would parse "1.2.3" or
// "10.0x1" with inet_aton as an IPv4 address instead of looking it up.
func ValidHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !lexLabel(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	if lexDigits(last) {
		return false
	}
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") && strings.Trim(last[2:], "0123456789abcdefABCDEF") == "" {
		return false
	}
	return true
}

// lexLabel implements ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$.
func lexLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !lexAlnum(c) && (c != '-' || i == 0 || i == len(l)-1) {
			return false
		}
	}
	return true
}

// ValidSearchDomain reports whether s can appear on the resolv.conf search
// line: 1-254 characters, no whitespace (which would split it into two
// entries), one optional trailing dot, then hostname labels. Single-label
// suffixes ("lan") are allowed; underscores are not.
func ValidSearchDomain(s string) bool {
	if len(s) == 0 || len(s) > 254 || strings.ContainsAny(s, " \t\r\n\v\f") {
		return false
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !lexLabel(l) {
			return false
		}
	}
	return true
}

// ParseSubnet30 parses a host-link subnet: an IPv4 network base with an
// explicit /30 (last octet a multiple of 4, hence <= 252). Host bits are an
// error here because the host and namespace addresses are derived as base+1
// and base+2.
func ParseSubnet30(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, false
	}
	p, ok := ParseCIDR(s)
	if !ok || !p.Addr().Is4() || p.Bits() != 30 {
		return netip.Prefix{}, false
	}
	last := p.Addr().As4()[3]
	if last > 252 || last%4 != 0 {
		return netip.Prefix{}, false
	}
	return p, true
}

// lexHashHex returns the lower-case hex SHA-256 of s, the reference's
// builtins.hashString "sha256".
func lexHashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// lexHash32 is int(sha256(s)[0:8], 16): the first four digest bytes,
// big-endian.
func lexHash32(s string) uint32 {
	sum := sha256.Sum256([]byte(s))
	return binary.BigEndian.Uint32(sum[:4])
}

// DeriveHostIf is the default host-side veth name: "vh-" plus 12 hex digits
// of sha256("host:"+ns). Always 15 characters, whatever the namespace length,
// and identical to the reference so migrated hosts keep their link names.
func DeriveHostIf(ns string) string { return "vh-" + lexHashHex("host:" + ns)[:12] }

// DeriveNsIf is the default namespace-side veth name: "vn-" plus 12 hex
// digits of sha256("ns:"+ns).
func DeriveNsIf(ns string) string { return "vn-" + lexHashHex("ns:" + ns)[:12] }

// DeriveFwMark is the default endpoint-pinning mark for a WireGuard
// interface: (sha256(iface)[0:8] as hex mod 4294967294) + 1, so it is never 0
// (0 disables fwmark in WireGuard) and equals the reference's mark.
func DeriveFwMark(iface string) uint32 {
	return uint32(uint64(lexHash32(iface))%4294967294 + 1)
}

// lexHostLinkSlots is the number of /30s in 169.254.0.0/16.
const lexHostLinkSlots = 16384

// DeriveSubnetIndex is the reference's hash slot for a namespace's host link:
// sha256(ns)[0:8] as hex mod 16384, i.e. the /30 169.254.0.0 + 4*index.
// AllocateHostLinkSubnets starts probing here.
func DeriveSubnetIndex(ns string) int { return int(lexHash32(ns) % lexHostLinkSlots) }

// lexSlotPrefix returns the /30 of 169.254.0.0/16 with the given slot index.
func lexSlotPrefix(idx int) netip.Prefix {
	base := idx * 4
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, byte(base / 256), byte(base % 256)}), 30)
}

var lexReservedLinkLocal = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/24"),   // RFC 3927 §2.1: reserved
	netip.MustParsePrefix("169.254.255.0/24"), // RFC 3927 §2.1: reserved
	// Cloud metadata lives at 169.254.169.254 (and neighbours such as
	// .169.123 for NTP on some clouds); a host route into a namespace there
	// would divert the host's metadata traffic, so the whole /24 is avoided.
	netip.MustParsePrefix("169.254.169.0/24"),
}

// ReservedLinkLocal reports whether p overlaps a part of 169.254.0.0/16 that
// must not carry a host link: the first and last /24 (reserved by RFC 3927)
// and 169.254.169.0/24 (cloud metadata service).
func ReservedLinkLocal(p netip.Prefix) bool {
	for _, r := range lexReservedLinkLocal {
		if p.Overlaps(r) {
			return true
		}
	}
	return false
}

// AllocateHostLinkSubnets assigns a /30 from 169.254.0.0/16 to every name.
// Names with an entry in manual keep it (manual entries for names not in
// names are ignored; a manual subnet in a reserved range is accepted, since
// the user chose it, and left to the caller to warn about). The others are
// processed in sorted order: each starts at DeriveSubnetIndex(name) and
// probes linearly (index+1 mod 16384), skipping reserved /30s and /30s that
// overlap a manual subnet or were already given to an earlier name.
//
// Unlike the reference, which fails on the ~26% birthday collision at 100
// namespaces, the result is always collision-free. Without collisions it is
// exactly the reference's subnet. A name's subnet depends only on its own
// hash, the manual subnets and the names sorted before it, so adding or
// removing a later-sorted name never moves it; it moves only when an
// earlier-sorted name (or a new manual subnet) takes the slot it used.
//
// It returns an error if two manual subnets overlap or the free slots run
// out.
func AllocateHostLinkSubnets(names []string, manual map[string]netip.Prefix) (map[string]netip.Prefix, error) {
	sorted := slices.Compact(slices.Sorted(slices.Values(names)))

	out := make(map[string]netip.Prefix, len(sorted))
	var manualNames, auto []string
	for _, n := range sorted {
		if p, ok := manual[n]; ok {
			for _, m := range manualNames {
				if out[m].Overlaps(p) {
					return nil, fmt.Errorf("namespaces %q and %q use overlapping host-link subnets %s and %s", m, n, out[m], p)
				}
			}
			out[n] = p
			manualNames = append(manualNames, n)
		} else {
			auto = append(auto, n)
		}
	}

	var taken [lexHostLinkSlots]bool
	free := 0
	for i := range taken {
		p := lexSlotPrefix(i)
		if ReservedLinkLocal(p) {
			taken[i] = true
			continue
		}
		for _, m := range manualNames {
			if out[m].Overlaps(p) {
				taken[i] = true
				break
			}
		}
		if !taken[i] {
			free++
		}
	}
	if len(auto) > free {
		return nil, fmt.Errorf("%d namespaces need an automatic host-link subnet but only %d /30s of 169.254.0.0/16 are free; set hostLink.subnetIPv4 explicitly", len(auto), free)
	}
	for _, n := range auto {
		idx := DeriveSubnetIndex(n)
		for taken[idx] {
			idx = (idx + 1) % lexHostLinkSlots
		}
		taken[idx] = true
		out[n] = lexSlotPrefix(idx)
	}
	return out, nil
}
