// Package tripwire maintains the host-side tripwire: a table in the HOST
// network namespace that drops and counts every packet sent from, or
// delivered to, a socket owned by a confined unit's cgroup.
//
// Confined services live in their own network namespace, so their legitimate
// traffic never traverses the host's hooks; a packet of theirs seen there
// means that something in the unit's cgroup opened a socket in the host
// namespace (an escape: a process that setns'd back, a socket passed in from
// outside, a unit that started unconfined). The tunnel's own UDP socket is
// created by the tunnel helper in vpn-wg@NAME's cgroup, never in a confined
// unit's, so it can never match.
//
// Shape (see Render):
//
//	map units { type cgroupsv2 : verdict }   cgroup ID → jump ns_<namespace>
//	chain output, chain input                 "socket cgroupv2 level L vmap @units" for L = 1..MaxLevel
//	chain ns_<namespace>                      counter drop
//
// One map lookup per level per packet; a unit's cgroup matches through the
// level of its own depth, and everything below it (delegated subgroups) is
// matched through the same ancestor. The per-namespace chains make the
// counters attribute escapes to a namespace and keep them after the unit
// is gone.
//
// As internal/firewall, the package has a pure half (this file, cgroup.go)
// and a kernel half (kernel.go, probe.go) that talks to nftables through a
// socket opened in the host namespace, never by switching threads.
package tripwire

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Names of the objects in the host namespace.
const (
	Table = "vpnc_tripwire"
	Map   = "units"
	// ChainPrefix + namespace name is the chain of one namespace. Namespace
	// names ([A-Za-z0-9_.-], see config.ValidNamespaceName) are valid nft
	// identifiers after a letter, so the chain keeps the readable name and
	// Counters can map it back without a side table.
	ChainPrefix = "ns_"
)

// MaxLevel is the deepest cgroup level with a lookup rule. A systemd service
// is at level 2 (system.slice/x.service) or 3 (a template instance in its
// own slice, system.slice/system-x.slice/x@i.service); a container's own
// depth comes on top when the host's systemd runs in one. Eight levels keep
// that with room to spare; each level costs one map lookup per packet.
const MaxLevel = 8

// Priority of the base chains: raw (-300), ahead of conntrack and of any
// filter table, so an earlier drop elsewhere cannot hide an escape from the
// counters. The tripwire only drops, and a drop is final in every table, so
// running first cannot let anything through that another table blocks.
const (
	Priority     = -300
	priorityName = "raw"
)

// Hooks are the base chains, in the order they are created.
var Hooks = []string{"output", "input"}

// ChainName is the chain counting escapes of namespace ns.
func ChainName(ns string) string { return ChainPrefix + ns }

// NamespaceOf maps a chain name back to its namespace.
func NamespaceOf(chain string) (string, bool) {
	ns, ok := strings.CutPrefix(chain, ChainPrefix)
	if !ok || ns == "" {
		return "", false
	}
	return ns, true
}

// Element is one registered cgroup: its ID (the inode number of its cgroup2
// directory, what `socket cgroupv2` loads) and the namespace it counts for.
type Element struct {
	ID        uint64
	Namespace string
	// Path is the cgroup's path below /sys/fs/cgroup, only for Render: nft
	// accepts cgroupsv2 elements as paths only, never as numbers.
	Path string
}

// State is the variable part of the table: namespace chains and elements.
type State struct {
	Namespaces []string
	Elements   []Element
}

// Normalize sorts namespaces by name and elements by ID, removes
// duplicates, and gives every namespace of an element its chain.
func (s State) Normalize() State {
	out := State{Namespaces: slices.Clone(s.Namespaces), Elements: slices.Clone(s.Elements)}
	for _, e := range s.Elements {
		out.Namespaces = append(out.Namespaces, e.Namespace)
	}
	slices.Sort(out.Namespaces)
	out.Namespaces = slices.Compact(out.Namespaces)
	slices.SortFunc(out.Elements, func(a, b Element) int { return cmp.Compare(a.ID, b.ID) })
	out.Elements = slices.CompactFunc(out.Elements, func(a, b Element) bool { return a.ID == b.ID })
	return out
}

// Rule is the text of the lookup rule for one level.
func Rule(level int) string {
	return fmt.Sprintf("socket cgroupv2 level %d vmap @%s", level, Map)
}

// Render prints the table with state s in the layout of `nft list ruleset`,
// as valid `nft -f` input: the base chains first (Ensure creates them), then
// the namespace chains (Add creates them later). Elements are written as
// their Path, or as the bare ID when it has none (which nft -f rejects: it
// resolves cgroupsv2 values through /sys/fs/cgroup only).
func Render(s State) string {
	s = s.Normalize()
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	fmt.Fprintf(&b, "\tmap %s {\n\t\ttype cgroupsv2 : verdict\n", Map)
	if len(s.Elements) > 0 {
		var els []string
		for _, e := range s.Elements {
			key := fmt.Sprint(e.ID)
			if e.Path != "" {
				key = fmt.Sprintf("%q", e.Path)
			}
			els = append(els, fmt.Sprintf("%s : jump %s", key, ChainName(e.Namespace)))
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(els, ",\n\t\t\t     "))
	}
	b.WriteString("\t}\n")
	for _, hook := range Hooks {
		fmt.Fprintf(&b, "\n\tchain %s {\n\t\ttype filter hook %s priority %s; policy accept;\n", hook, hook, priorityName)
		for l := 1; l <= MaxLevel; l++ {
			b.WriteString("\t\t" + Rule(l) + "\n")
		}
		b.WriteString("\t}\n")
	}
	for _, ns := range s.Namespaces {
		fmt.Fprintf(&b, "\n\tchain %s {\n\t\tcounter drop\n\t}\n", ChainName(ns))
	}
	b.WriteString("}\n")
	return b.String()
}
