//go:build linux

package firewall

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// This file translates the model into the netlink objects the nft CLI
// (1.0.x) would send for the rendered text, expression for expression:
// meta l4proto / meta nfproto dependencies in front of payload matches,
// bitwise + cmp neq for ct state, lookups for sets, anonymous constant sets
// for "{ a, b }", interval elements with the end flag (and nft's leading
// "0 end" element), 32-bit register packing for concatenations. The root
// tests compare `nft --debug=netlink list ruleset` of a table loaded by nft
// from Render() with one loaded by Apply, so any drift shows up there.

// regs: NFT_REG_1 is the 128-bit register nft loads into; concatenated
// components go to the 32-bit registers that follow (NFT_REG32_00 = 8 is
// the first quarter of NFT_REG_1).
const (
	reg1      = 1
	reg32Base = 8
)

// component is one load of a field: from meta, ct or a payload header, with
// the protocol dependencies nft puts in front of it.
type component struct {
	meta    expr.MetaKey
	ct      bool
	payload bool
	base    expr.PayloadBase
	offset  uint32
	len     uint32
	nfproto uint32 // required meta nfproto (0: none)
	l4proto uint32 // required meta l4proto (0: none)
}

func metaC(k expr.MetaKey, n uint32) component { return component{meta: k, len: n} }

func nh(off, n, nf uint32) component {
	return component{payload: true, base: expr.PayloadBaseNetworkHeader, offset: off, len: n, nfproto: nf}
}

func th(off, n, nf, l4 uint32) component {
	return component{payload: true, base: expr.PayloadBaseTransportHeader, offset: off, len: n, nfproto: nf, l4proto: l4}
}

var (
	ipSAddr  = nh(12, 4, NFProtoIPv4)
	ipDAddr  = nh(16, 4, NFProtoIPv4)
	ip6DAddr = nh(24, 16, NFProtoIPv6)
	tcpDPort = th(2, 2, 0, ProtoTCP)
	udpDPort = th(2, 2, 0, ProtoUDP)
)

// components returns the loads of f in order (several for concatenations).
func (f Field) components() []component {
	switch f {
	case FieldIIFName:
		return []component{metaC(expr.MetaKeyIIFNAME, 16)}
	case FieldOIFName:
		return []component{metaC(expr.MetaKeyOIFNAME, 16)}
	case FieldCtState:
		return []component{{ct: true, len: 4}}
	case FieldNFProto:
		return []component{metaC(expr.MetaKeyNFPROTO, 1)}
	case FieldL4Proto:
		return []component{metaC(expr.MetaKeyL4PROTO, 1)}
	case FieldMark:
		return []component{metaC(expr.MetaKeyMARK, 4)}
	case FieldIPSAddr:
		return []component{ipSAddr}
	case FieldIPDAddr:
		return []component{ipDAddr}
	case FieldIP6DAddr:
		return []component{ip6DAddr}
	case FieldTCPDPort:
		return []component{tcpDPort}
	case FieldUDPDPort:
		return []component{udpDPort}
	case FieldICMPType:
		return []component{th(0, 1, NFProtoIPv4, ProtoICMP)}
	case FieldICMPv6Type:
		return []component{th(0, 1, NFProtoIPv6, ProtoICMPv6)}
	case FieldIPDAddrUDPDPort:
		return []component{ipDAddr, udpDPort}
	case FieldIP6DAddrUDPDPort:
		return []component{ip6DAddr, udpDPort}
	}
	return nil
}

func (c component) load(reg uint32) expr.Any {
	switch {
	case c.ct:
		return &expr.Ct{Register: reg, Key: expr.CtKeySTATE}
	case c.payload:
		return &expr.Payload{DestRegister: reg, Base: c.base, Offset: c.offset, Len: c.len}
	}
	return &expr.Meta{Key: c.meta, Register: reg}
}

// keyBytes encodes a scalar value of field f as the kernel compares it:
// network byte order for packet fields, host order for meta mark and ct
// state, interface names zero-padded to IFNAMSIZ.
func keyBytes(f Field, v uint32) []byte {
	switch c := f.components()[0]; {
	case c.ct || c.meta == expr.MetaKeyMARK:
		return binaryutil.NativeEndian.PutUint32(v)
	case c.len == 1:
		return []byte{byte(v)}
	case c.len == 2:
		return binaryutil.BigEndian.PutUint16(uint16(v))
	}
	return binaryutil.BigEndian.PutUint32(v)
}

func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// setRef resolves the set a lookup refers to; anon creates an anonymous
// constant set for a List match and returns it (added to the batch by the
// caller before the rule, as nft does).
type setRef struct {
	ids  map[string]uint32
	anon func(f Field, list []uint32) (*nftables.Set, error)
}

// ruleExprs translates one rule.
func ruleExprs(r Rule, refs setRef) ([]expr.Any, error) {
	var out []expr.Any
	var haveNF, haveL4 uint32
	dep := func(c component) {
		if c.nfproto != 0 && haveNF != c.nfproto {
			out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(c.nfproto)}})
			haveNF = c.nfproto
		}
		if c.l4proto != 0 && haveL4 != c.l4proto {
			out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(c.l4proto)}})
			haveL4 = c.l4proto
		}
	}
	for _, m := range r.Matches {
		comps := m.Field.components()
		if comps == nil {
			return nil, fmt.Errorf("rule %q: unknown field %d", r, m.Field)
		}
		for _, c := range comps {
			dep(c)
		}
		// Concatenations pack their components into consecutive 32-bit
		// registers, each padded to 4 bytes.
		if len(comps) == 1 {
			out = append(out, comps[0].load(reg1))
		} else {
			off := uint32(0)
			for _, c := range comps {
				reg := uint32(reg1)
				if off > 0 {
					reg = reg32Base + off/4
				}
				out = append(out, c.load(reg))
				off += (c.len + 3) &^ 3
			}
		}
		switch {
		case m.Set != "":
			id, ok := refs.ids[m.Set]
			if !ok {
				// Build never does this; refuse rather than let the
				// kernel reject the whole batch with a vague ENOENT.
				return nil, fmt.Errorf("rule %q references undeclared set @%s", r, m.Set)
			}
			out = append(out, &expr.Lookup{SourceRegister: reg1, SetName: m.Set, SetID: id})
		case m.List != nil:
			s, err := refs.anon(m.Field, m.List)
			if err != nil {
				return nil, err
			}
			out = append(out, &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID})
		case m.Field == FieldCtState:
			out = append(out,
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
					Mask: keyBytes(m.Field, m.Value), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)})
		case m.Field == FieldIIFName || m.Field == FieldOIFName:
			out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(m.Name)})
		case m.Addr.IsValid():
			out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: m.Addr.AsSlice()})
		default:
			out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: keyBytes(m.Field, m.Value)})
			if m.Field == FieldNFProto {
				haveNF = m.Value
			}
			if m.Field == FieldL4Proto {
				haveL4 = m.Value
			}
		}
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	kind := expr.VerdictDrop
	if r.Verdict == Accept {
		kind = expr.VerdictAccept
	}
	return append(out, &expr.Verdict{Kind: kind}), nil
}

// anonSet builds the anonymous constant set nft creates for "{ a, b }".
func anonSet(t *nftables.Table, id uint32, f Field, list []uint32) (*nftables.Set, []nftables.SetElement, error) {
	kt := nftables.TypeInetService
	switch f {
	case FieldICMPType:
		kt = nftables.TypeICMPType
	case FieldICMPv6Type:
		kt = nftables.TypeICMP6Type
	case FieldTCPDPort, FieldUDPDPort:
	default:
		return nil, nil, fmt.Errorf("anonymous set of field %d not supported", f)
	}
	s := &nftables.Set{Table: t, ID: id, Name: "__set%d", Anonymous: true, Constant: true,
		KeyType: kt, KeyByteOrder: binaryutil.BigEndian}
	var els []nftables.SetElement
	for _, v := range list {
		els = append(els, nftables.SetElement{Key: keyBytes(f, v)})
	}
	return s, els, nil
}

var setKeyTypes = map[SetType]nftables.SetDatatype{
	TypeIPv4Addr:        nftables.TypeIPAddr,
	TypeIPv6Addr:        nftables.TypeIP6Addr,
	TypeInetService:     nftables.TypeInetService,
	TypeIPv4AddrService: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
	TypeIPv6AddrService: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService),
}

// kernelSet returns the netlink form of s and its elements.
func kernelSet(t *nftables.Table, id uint32, s *Set) (*nftables.Set, []nftables.SetElement, error) {
	kt, ok := setKeyTypes[s.Type]
	if !ok {
		return nil, nil, fmt.Errorf("set %s: unknown type %q", s.Name, s.Type)
	}
	ks := &nftables.Set{Table: t, ID: id, Name: s.Name, KeyType: kt, Interval: s.Interval,
		KeyByteOrder: binaryutil.BigEndian}
	els, err := s.elements()
	return ks, els, err
}

// elements encodes the set's elements as nft does.
func (s *Set) elements() ([]nftables.SetElement, error) {
	var els []nftables.SetElement
	for _, a := range s.Addrs {
		els = append(els, nftables.SetElement{Key: a.AsSlice()})
	}
	for _, p := range s.Ports {
		els = append(els, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	for _, ap := range s.AddrPorts {
		els = append(els, nftables.SetElement{Key: addrPortKey(ap)})
	}
	if len(s.Ranges) > 0 {
		if !s.Interval {
			return nil, fmt.Errorf("set %s: ranges in a set without the interval flag", s.Name)
		}
		els = append(els, intervalElements(s.Ranges)...)
	}
	return els, nil
}

// addrPortKey is the concatenated key address . port: each component
// padded to 4 bytes.
func addrPortKey(ap netip.AddrPort) []byte {
	k := ap.Addr().AsSlice()
	return append(k, byte(ap.Port()>>8), byte(ap.Port()), 0, 0)
}

// intervalElements encodes disjoint sorted ranges the way nft does for an
// interval (rbtree) set: an "end" element at the zero address unless the
// first range starts there, then per range its first address and, unless
// the range runs to the family's last address, an end element at
// last+1 flagged NFT_SET_ELEM_INTERVAL_END.
func intervalElements(rs []Range) []nftables.SetElement {
	var els []nftables.SetElement
	zero := netip.IPv4Unspecified()
	if rs[0].First.Is6() {
		zero = netip.IPv6Unspecified()
	}
	if rs[0].First != zero {
		els = append(els, nftables.SetElement{Key: zero.AsSlice(), IntervalEnd: true})
	}
	for _, rg := range rs {
		els = append(els, nftables.SetElement{Key: rg.First.AsSlice()})
		if next := rg.Last.Next(); next.IsValid() {
			els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}

// maxElemListBytes bounds one NEWSETELEM element list: the enclosing
// netlink attribute has a 16-bit length, so a 10,000-CIDR set has to be
// split over several messages (all in the same batch).
const maxElemListBytes = 60000

// elemChunk is how many elements of s fit in one message: nested element
// header, flags, key nest and value, key padded to 4 bytes; at most 2,000.
func elemChunk(keyLen int) int {
	per := 4 + 8 + 4 + 4 + (keyLen+3)&^3
	return min(2000, maxElemListBytes/per)
}
