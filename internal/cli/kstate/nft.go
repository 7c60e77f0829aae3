//go:build linux

package kstate

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// Firewall summarizes one nftables table.
type Firewall struct {
	Family string  `json:"family"`
	Table  string  `json:"table"`
	Chains []Chain `json:"chains"`
	Rules  int     `json:"rules"`
	Sets   int     `json:"sets"`
	// DropPackets/DropBytes add up the counters of everything the table
	// drops or rejects: counters on drop/reject rules, and the counter
	// rule that ends a policy-drop base chain (it counts what falls
	// through to the policy).
	DropPackets uint64 `json:"dropPackets"`
	DropBytes   uint64 `json:"dropBytes"`
	// Counters are the table's named counter objects.
	Counters []Counter `json:"counters,omitempty"`
	// RuleCounters are the counted rules, keyed the way internal/firewall
	// names them ("input drop", "output @endpoints_v4 accept").
	RuleCounters map[string]Counter `json:"ruleCounters,omitempty"`
}

// SetRuleCounters records the counters internal/firewall reads for its own
// tables and recomputes the drop totals from them: the firewall package
// knows which of its rules drop, so its keys are authoritative.
func (fw *Firewall) SetRuleCounters(m map[string]firewall.Counter) {
	fw.RuleCounters = map[string]Counter{}
	fw.DropPackets, fw.DropBytes = 0, 0
	for k, c := range m {
		fw.RuleCounters[k] = Counter{Name: k, Packets: c.Packets, Bytes: c.Bytes}
		if strings.HasSuffix(k, " drop") {
			fw.DropPackets += c.Packets
			fw.DropBytes += c.Bytes
		}
	}
}

// ReadFirewall reads a table that internal/firewall loads (the kill
// switch or a pin table), with its rule counters. (nil, nil): absent.
func ReadFirewall(ns *netns.NetNS, table string) (*Firewall, error) {
	fw, err := ReadTable(ns, nftables.TableFamilyINet, table)
	if fw == nil || err != nil {
		return fw, err
	}
	if m, err := firewall.Counters(ns, table); err == nil {
		fw.SetRuleCounters(m)
	}
	return fw, nil
}

// Chain is one chain of the table.
type Chain struct {
	Name   string `json:"name"`
	Hook   string `json:"hook,omitempty"`   // base chains only
	Policy string `json:"policy,omitempty"` // "accept" or "drop", base chains only
	Rules  int    `json:"rules"`
}

// Counter is a named counter object.
type Counter struct {
	Name    string `json:"name"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ReadTable reads table family/name in ns; (nil, nil) means it does not
// exist.
func ReadTable(ns *netns.NetNS, family nftables.TableFamily, name string) (*Firewall, error) {
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		return nil, wrapPerm("open nftables", err)
	}
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		return nil, wrapPerm("list tables", err)
	}
	var t *nftables.Table
	for _, tb := range tables {
		if tb.Name == name {
			t = tb
		}
	}
	if t == nil {
		return nil, nil
	}
	fw := &Firewall{Family: familyName(family), Table: name, Chains: []Chain{}}
	named := map[string]Counter{}
	if objs, err := c.GetObjects(t); err == nil {
		for _, o := range objs {
			if co, ok := o.(*nftables.CounterObj); ok {
				ct := Counter{Name: co.Name, Packets: co.Packets, Bytes: co.Bytes}
				named[co.Name] = ct
				fw.Counters = append(fw.Counters, ct)
			}
		}
	}
	sort.Slice(fw.Counters, func(i, j int) bool { return fw.Counters[i].Name < fw.Counters[j].Name })
	chains, err := c.ListChainsOfTableFamily(family)
	if err != nil {
		return nil, wrapPerm("list chains", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, wrapPerm(fmt.Sprintf("list rules of chain %s", ch.Name), err)
		}
		info := Chain{Name: ch.Name, Rules: len(rules)}
		policyDrop := false
		if ch.Hooknum != nil {
			info.Hook = hookName(*ch.Hooknum)
			info.Policy = "accept"
			if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
				info.Policy = "drop"
				policyDrop = true
			}
		}
		fw.Chains = append(fw.Chains, info)
		fw.Rules += len(rules)
		for i, r := range rules {
			p, b, counted := ruleCounter(r, named)
			if !counted {
				continue
			}
			last := i == len(rules)-1
			if ruleDrops(r) || (policyDrop && last && !hasVerdict(r)) {
				fw.DropPackets += p
				fw.DropBytes += b
			}
		}
	}
	sort.Slice(fw.Chains, func(i, j int) bool { return fw.Chains[i].Name < fw.Chains[j].Name })
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, wrapPerm("list sets", err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			fw.Sets++
		}
	}
	return fw, nil
}

// ruleCounter returns the rule's counter: an anonymous counter
// expression, or a reference to a named counter.
func ruleCounter(r *nftables.Rule, named map[string]Counter) (packets, bytes uint64, ok bool) {
	for _, e := range r.Exprs {
		switch x := e.(type) {
		case *expr.Counter:
			return x.Packets, x.Bytes, true
		case *expr.Objref:
			if c, found := named[x.Name]; found {
				return c.Packets, c.Bytes, true
			}
		}
	}
	return 0, 0, false
}

func ruleDrops(r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		switch x := e.(type) {
		case *expr.Verdict:
			if x.Kind == expr.VerdictDrop {
				return true
			}
		case *expr.Reject:
			return true
		}
	}
	return false
}

func hasVerdict(r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		switch e.(type) {
		case *expr.Verdict, *expr.Reject:
			return true
		}
	}
	return false
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprint(f)
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(h)
}
