// Package firewall builds and loads the nftables rulesets of a confinement
// namespace: the fail-closed filter table inside the namespace
// (table inet vpn_confinement) and the endpoint pinning table in the socket
// birthplace namespace.
//
// The package has two halves. The pure half (this file, build.go, render.go)
// turns a compiled plan into a kernel-independent Ruleset that can be
// compared in golden tests and rendered as nft syntax. The kernel half
// (exprs.go, apply.go, linux only) translates that same model into the
// netlink expressions the nft CLI would emit and loads it in one atomic
// transaction through a socket opened in the target namespace; it never
// switches the calling thread's namespace itself.
package firewall

import (
	"net/netip"
	"strings"
)

// Family is the nftables family of every table this package writes. inet
// covers IPv4 and IPv6 in one table, so a forgotten ip6 table can never be
// the hole.
const Family = "inet"

// Verdict is the verdict of a rule or the policy of a base chain.
type Verdict int

// Verdicts. The zero value is Drop so that a forgotten field fails closed.
const (
	Drop Verdict = iota
	Accept
)

func (v Verdict) String() string {
	if v == Accept {
		return "accept"
	}
	return "drop"
}

// SetType is the key type of a named set, spelled as nft spells it.
type SetType string

// Set key types used by this package.
const (
	TypeIPv4Addr        SetType = "ipv4_addr"
	TypeIPv6Addr        SetType = "ipv6_addr"
	TypeInetService     SetType = "inet_service"
	TypeIPv4AddrService SetType = "ipv4_addr . inet_service"
	TypeIPv6AddrService SetType = "ipv6_addr . inet_service"
)

// Range is an inclusive address range of an interval set. Builders only
// produce sorted, disjoint, non-adjacent ranges (see mergeRanges), which is
// what an nftables interval set without auto-merge accepts.
type Range struct {
	First, Last netip.Addr
}

// Set is a named set. Exactly one of the element slices is used, chosen by
// Type and Interval; elements are sorted and unique.
type Set struct {
	Name     string
	Type     SetType
	Interval bool
	// Addrs holds the elements of ipv4_addr/ipv6_addr sets without Interval.
	Addrs []netip.Addr
	// Ranges holds the elements of interval sets.
	Ranges []Range
	// Ports holds the elements of inet_service sets.
	Ports []uint16
	// AddrPorts holds the elements of address . inet_service sets.
	AddrPorts []netip.AddrPort
}

// Len is the number of elements (ranges count once).
func (s *Set) Len() int {
	return len(s.Addrs) + len(s.Ranges) + len(s.Ports) + len(s.AddrPorts)
}

// Field is what a match loads from the packet or its metadata. Each field
// knows its nft spelling and its protocol dependencies (see exprs.go).
type Field int

// Fields.
const (
	FieldIIFName Field = iota + 1
	FieldOIFName
	FieldCtState
	FieldNFProto
	FieldL4Proto
	FieldMark
	FieldIPSAddr
	FieldIPDAddr
	FieldIP6DAddr
	FieldTCPDPort
	FieldUDPDPort
	FieldICMPType
	FieldICMPv6Type
	// FieldIPDAddrUDPDPort is the concatenation "ip daddr . udp dport".
	FieldIPDAddrUDPDPort
	// FieldIP6DAddrUDPDPort is the concatenation "ip6 daddr . udp dport".
	FieldIP6DAddrUDPDPort
)

// Protocol numbers used as match values (nfproto and l4proto).
const (
	NFProtoIPv4 = 2  // NFPROTO_IPV4
	NFProtoIPv6 = 10 // NFPROTO_IPV6
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Conntrack state bits (ct state), as the kernel defines them.
const (
	CtInvalid     = 1
	CtEstablished = 2
	CtRelated     = 4
	CtNew         = 8
	CtUntracked   = 64
)

// Match is one "field OP value" term of a rule. The right-hand side is
// exactly one of: Set (lookup in a named set), List (an anonymous constant
// set, as nft builds for "{ a, b }"), Name (interface names), Addr, or
// Value (ports, protocols, marks, ct state bits). ct state matches any of
// the bits in Value, like nft's "ct state a,b".
type Match struct {
	Field Field
	Set   string
	List  []uint32
	Name  string
	Addr  netip.Addr
	Value uint32
}

// Rule is a list of matches, an optional counter and a verdict.
type Rule struct {
	Matches []Match
	Counter bool
	Verdict Verdict
}

// Chain is a base chain of type filter at priority filter (0).
type Chain struct {
	Name   string
	Hook   string // input, output or forward
	Policy Verdict
	Rules  []Rule
}

// Ruleset is one table of family inet with its sets and chains, in the
// order they are declared and loaded.
type Ruleset struct {
	Table  string
	Sets   []*Set
	Chains []*Chain
}

// Set returns the named set, or nil.
func (r *Ruleset) Set(name string) *Set {
	for _, s := range r.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Chain returns the named chain, or nil.
func (r *Ruleset) Chain(name string) *Chain {
	for _, c := range r.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// CounterKeys lists the keys under which Counters reports the counted
// rules of r, in rule order.
func (r *Ruleset) CounterKeys() []string {
	var keys []string
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			if rule.Counter {
				keys = append(keys, rule.counterKey(c.Name))
			}
		}
	}
	return keys
}

// counterKey names a counted rule by what can be read back from the kernel
// without comments: chain, named sets looked up, verdict. E.g.
// "output drop" or "output @endpoints_v4 accept". The rulesets built here
// never have two counted rules with the same key.
func (r Rule) counterKey(chain string) string {
	var sets []string
	for _, m := range r.Matches {
		if m.Set != "" {
			sets = append(sets, m.Set)
		}
	}
	return counterKey(chain, sets, r.Verdict.String())
}

func counterKey(chain string, sets []string, verdict string) string {
	parts := []string{chain}
	for _, s := range sets {
		parts = append(parts, "@"+s)
	}
	return strings.Join(append(parts, verdict), " ")
}
