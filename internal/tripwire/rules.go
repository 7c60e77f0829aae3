//go:build linux

package tripwire

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// google/nftables v0.3.0 can write the socket expression but silently
// drops it when it reads rules back (its expression decoder does not know
// "socket"), so a level rule would read back as a bare lookup. Ensure
// needs to see the level to know whether the base chains are intact, so
// this file dumps a chain's rules over raw netlink and decodes just enough.

// rawExpr is one expression of a dumped rule: its name and its attributes.
type rawExpr struct {
	name  string
	attrs map[uint16][]byte
}

func (e rawExpr) u32(t uint16) (uint32, bool) {
	b, ok := e.attrs[t]
	if !ok || len(b) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

// NFTA_SOCKET_* (linux/netfilter/nf_tables.h).
const (
	nftaSocketKey   = 1
	nftaSocketDreg  = 2
	nftaSocketLevel = 3
	nftSocketCgroup = 3 // NFT_SOCKET_CGROUPV2
)

// isLevelRule reports whether rule is "socket cgroupv2 level L vmap @units".
func isLevelRule(rule []rawExpr, level int) bool {
	if len(rule) != 2 || rule[0].name != "socket" || rule[1].name != "lookup" {
		return false
	}
	s, l := rule[0], rule[1]
	key, ok1 := s.u32(nftaSocketKey)
	dreg, ok2 := s.u32(nftaSocketDreg)
	lvl, ok3 := s.u32(nftaSocketLevel)
	sreg, ok4 := l.u32(unix.NFTA_LOOKUP_SREG)
	ldreg, ok5 := l.u32(unix.NFTA_LOOKUP_DREG)
	_, inv := l.attrs[unix.NFTA_LOOKUP_FLAGS]
	if fl, ok := l.u32(unix.NFTA_LOOKUP_FLAGS); ok && fl == 0 {
		inv = false
	}
	return ok1 && ok2 && ok3 && ok4 && ok5 && !inv && key == nftSocketCgroup && lvl == uint32(level) &&
		sreg == dreg && ldreg == unix.NFT_REG_VERDICT && bytes.Equal(l.attrs[unix.NFTA_LOOKUP_SET], []byte(Map+"\x00"))
}

// dumpRules returns the rules of chain in the tripwire table of ns.
func dumpRules(ns *netns.NetNS, chain string) ([][]rawExpr, error) {
	cfg := &netlink.Config{}
	if ns != nil {
		cfg.NetNS = ns.Fd()
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("tripwire: netlink: %w", err)
	}
	defer c.Close()
	filter, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(Table + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, filter...),
	})
	if err != nil {
		return nil, fmt.Errorf("tripwire: rules of chain %s: %w", chain, err)
	}
	var rules [][]rawExpr
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		r, err := decodeRule(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("tripwire: rules of chain %s: %w", chain, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// decodeRule decodes NFTA_RULE_EXPRESSIONS → NFTA_LIST_ELEM →
// {NFTA_EXPR_NAME, NFTA_EXPR_DATA}.
func decodeRule(b []byte) ([]rawExpr, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var out []rawExpr
	for ad.Next() {
		if ad.Type() != unix.NFTA_RULE_EXPRESSIONS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				list.Nested(func(el *netlink.AttributeDecoder) error {
					e := rawExpr{attrs: map[uint16][]byte{}}
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_EXPR_NAME:
							e.name = el.String()
						case unix.NFTA_EXPR_DATA:
							el.Nested(func(d *netlink.AttributeDecoder) error {
								for d.Next() {
									e.attrs[d.Type()] = bytes.Clone(d.Bytes())
								}
								return nil
							})
						}
					}
					out = append(out, e)
					return nil
				})
			}
			return nil
		})
	}
	return out, ad.Err()
}
