package firewall

import (
	"fmt"
	"strconv"
	"strings"
)

// Render prints r in the layout of `nft list ruleset`, as valid `nft -f`
// input (counters are written as plain "counter"). It is the readable form
// for golden tests, `nft -c -f` checks and operators; Apply loads the same
// model through netlink, and the root tests check that both load to the same
// kernel bytecode.
func (r *Ruleset) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", Family, r.Table)
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range r.Sets {
		sep()
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.Type)
		if s.Interval {
			b.WriteString("\t\tflags interval\n")
		}
		if els := s.elementStrings(); len(els) > 0 {
			b.WriteString("\t\telements = { ")
			writeWrapped(&b, els)
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range r.Chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy %s;\n", c.Name, c.Hook, c.Policy)
		for _, rule := range c.Rules {
			b.WriteString("\t\t" + rule.String() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// writeWrapped joins elements with ", ", breaking lines like nft does so a
// 10,000-element set stays readable.
func writeWrapped(b *strings.Builder, els []string) {
	const indent = "\t\t\t     "
	width := 0
	for i, e := range els {
		if i > 0 {
			if width+len(e) > 60 {
				b.WriteString(",\n" + indent)
				width = 0
			} else {
				b.WriteString(", ")
				width += 2
			}
		}
		b.WriteString(e)
		width += len(e)
	}
}

func (s *Set) elementStrings() []string {
	var out []string
	for _, a := range s.Addrs {
		out = append(out, a.String())
	}
	for _, rg := range s.Ranges {
		out = append(out, rg.String())
	}
	for _, p := range s.Ports {
		out = append(out, strconv.Itoa(int(p)))
	}
	for _, ap := range s.AddrPorts {
		out = append(out, ap.Addr().String()+" . "+strconv.Itoa(int(ap.Port())))
	}
	return out
}

// String prints rg as nft lists interval elements: a bare address for a
// single address, a prefix when rg is one, else first-last.
func (rg Range) String() string {
	if p, ok := rg.Prefix(); ok {
		if p.IsSingleIP() {
			return p.Addr().String()
		}
		return p.String()
	}
	return rg.First.String() + "-" + rg.Last.String()
}

// String prints the rule in nft syntax.
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	return strings.Join(append(parts, r.Verdict.String()), " ")
}

var fieldText = map[Field]string{
	FieldIIFName:          "iifname",
	FieldOIFName:          "oifname",
	FieldCtState:          "ct state",
	FieldNFProto:          "meta nfproto",
	FieldL4Proto:          "meta l4proto",
	FieldMark:             "meta mark",
	FieldIPSAddr:          "ip saddr",
	FieldIPDAddr:          "ip daddr",
	FieldIP6DAddr:         "ip6 daddr",
	FieldTCPDPort:         "tcp dport",
	FieldUDPDPort:         "udp dport",
	FieldICMPType:         "icmp type",
	FieldICMPv6Type:       "icmpv6 type",
	FieldIPDAddrUDPDPort:  "ip daddr . udp dport",
	FieldIP6DAddrUDPDPort: "ip6 daddr . udp dport",
}

var (
	icmpTypeNames   = map[uint32]string{0: "echo-reply", 3: "destination-unreachable", 8: "echo-request", 11: "time-exceeded", 12: "parameter-problem"}
	icmpv6TypeNames = map[uint32]string{1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem", 128: "echo-request", 129: "echo-reply"}
	protoNames      = map[uint32]string{ProtoICMP: "icmp", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMPv6: "ipv6-icmp"}
	nfprotoNames    = map[uint32]string{NFProtoIPv4: "ipv4", NFProtoIPv6: "ipv6"}
	ctStateNames    = []struct {
		bit  uint32
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"}}
)

func named(names map[uint32]string, v uint32) string {
	if s, ok := names[v]; ok {
		return s
	}
	return strconv.FormatUint(uint64(v), 10)
}

// String prints the match in nft syntax.
func (m Match) String() string {
	lhs := fieldText[m.Field]
	switch {
	case m.Set != "":
		return lhs + " @" + m.Set
	case m.List != nil:
		names := map[uint32]string{}
		switch m.Field {
		case FieldICMPType:
			names = icmpTypeNames
		case FieldICMPv6Type:
			names = icmpv6TypeNames
		}
		var els []string
		for _, v := range m.List {
			els = append(els, named(names, v))
		}
		return lhs + " { " + strings.Join(els, ", ") + " }"
	}
	switch m.Field {
	case FieldIIFName, FieldOIFName:
		return lhs + " " + strconv.Quote(m.Name)
	case FieldIPSAddr, FieldIPDAddr, FieldIP6DAddr:
		return lhs + " " + m.Addr.String()
	case FieldCtState:
		var names []string
		for _, s := range ctStateNames {
			if m.Value&s.bit != 0 {
				names = append(names, s.name)
			}
		}
		return lhs + " " + strings.Join(names, ",")
	case FieldNFProto:
		return lhs + " " + named(nfprotoNames, m.Value)
	case FieldL4Proto:
		return lhs + " " + named(protoNames, m.Value)
	case FieldMark:
		return fmt.Sprintf("%s 0x%08x", lhs, m.Value)
	}
	return lhs + " " + strconv.FormatUint(uint64(m.Value), 10)
}
