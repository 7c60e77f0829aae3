//go:build linux

package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// Every function here talks to nftables through a netlink socket opened in
// the target namespace (nftables.WithNetNSFd); none switches the calling
// thread's namespace. A nil ns means the namespace of the calling thread,
// which for this project's helpers is the process's own (netns.Do is the
// only place that moves threads, and it moves them back).

// Apply replaces table inet r.Table in ns by r in ONE nftables transaction:
// "add table" (a no-op if it exists) + "delete table" + the new table, its
// sets with all elements, its chains and rules, all in one batch. The kernel
// commits the batch entirely or not at all, so there is never a moment
// without the policy, and a failure leaves the previous table in place.
func Apply(ns *netns.NetNS, r *Ruleset) error {
	if r == nil {
		return errors.New("firewall: no ruleset to apply")
	}
	return replaceTable(ns, r)
}

// ApplyPin atomically replaces the endpoint pinning table (see BuildPin) in
// the socket birthplace namespace ns.
func ApplyPin(ns *netns.NetNS, r *Ruleset) error {
	if r == nil {
		return errors.New("firewall: pinning is not enabled in the plan (no pin ruleset)")
	}
	return replaceTable(ns, r)
}

func replaceTable(ns *netns.NetNS, r *Ruleset) error {
	if r.Table == "" {
		return errors.New("firewall: ruleset has no table name")
	}
	c, err := newConn(ns, batchSize(r))
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: r.Table}
	// Replace an existing table in the same transaction (never a window
	// without policy). Deleting costs an RCU grace period in the kernel
	// (~10 ms here, 10× the whole load), so a fresh namespace, which has no
	// table, skips it. Should a table appear between the lookup and the
	// batch, the batch fails on the existing chains: closed, not open.
	exists, err := tableExists(c, r.Table)
	if err != nil {
		return fmt.Errorf("firewall: list tables: %w", err)
	}
	if exists {
		c.AddTable(t)
		c.DelTable(t)
	}
	c.AddTable(t)

	// Same order as nft -f: chains, sets (+ elements), then rules with
	// their anonymous sets right before them. Set IDs are per batch; we
	// allocate them ourselves (the library's counter is a global without
	// locking).
	chains := map[string]*nftables.Chain{}
	for _, ch := range r.Chains {
		hook, ok := hooks[ch.Hook]
		if !ok {
			return fmt.Errorf("firewall: chain %s: unknown hook %q", ch.Name, ch.Hook)
		}
		policy := nftables.ChainPolicyDrop
		if ch.Policy == Accept {
			policy = nftables.ChainPolicyAccept
		}
		chains[ch.Name] = c.AddChain(&nftables.Chain{Name: ch.Name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	}
	ids := map[string]uint32{}
	var id uint32
	for _, s := range r.Sets {
		id++
		ks, els, err := kernelSet(t, id, s)
		if err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
		if err := c.AddSet(ks, nil); err != nil {
			return fmt.Errorf("firewall: set %s: %w", s.Name, err)
		}
		if err := addElements(c, ks, els); err != nil {
			return err
		}
		ids[s.Name] = id
	}
	refs := setRef{ids: ids, anon: func(f Field, list []uint32) (*nftables.Set, error) {
		id++
		s, els, err := anonSet(t, id, f, list)
		if err != nil {
			return nil, err
		}
		return s, c.AddSet(s, els)
	}}
	for _, ch := range r.Chains {
		for _, rule := range ch.Rules {
			exprs, err := ruleExprs(rule, refs)
			if err != nil {
				return fmt.Errorf("firewall: chain %s: %w", ch.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.Name], Exprs: exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: load table %s %s: %w", Family, r.Table, err)
	}
	return nil
}

func tableExists(c *nftables.Conn, name string) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

var hooks = map[string]*nftables.ChainHook{
	"input":   nftables.ChainHookInput,
	"output":  nftables.ChainHookOutput,
	"forward": nftables.ChainHookForward,
}

// addElements queues els in NEWSETELEM messages small enough for the 16-bit
// attribute length (see elemChunk).
func addElements(c *nftables.Conn, s *nftables.Set, els []nftables.SetElement) error {
	if len(els) == 0 {
		return nil
	}
	n := elemChunk(len(els[0].Key))
	for len(els) > 0 {
		k := min(n, len(els))
		if err := c.SetAddElements(s, els[:k]); err != nil {
			return fmt.Errorf("firewall: elements of set %s: %w", s.Name, err)
		}
		els = els[k:]
	}
	return nil
}

// batchSize estimates the bytes of r's batch. The whole batch goes out in
// one sendmsg, which the kernel refuses (EMSGSIZE) beyond the socket's send
// buffer; a 10,000-CIDR set is ~0.5 MB, more than the default. The same
// size serves as receive buffer: an error reply echoes the failed message.
func batchSize(r *Ruleset) int {
	n := 64 << 10
	for _, s := range r.Sets {
		n += (2*s.Len() + 1) * 44
	}
	for _, c := range r.Chains {
		n += len(c.Rules) * 1024
	}
	return n
}

// Dial opens an nftables connection whose socket lives in ns (nil: the
// calling thread's namespace), with extended acks and, when bufSize > 0,
// send and receive buffers of that size; for packages that keep tables of
// their own (internal/tripwire) the same way this one does. opts are added
// last (e.g. nftables.AsLasting()).
func Dial(ns *netns.NetNS, bufSize int, opts ...nftables.ConnOption) (*nftables.Conn, error) {
	return newConn(ns, bufSize, opts...)
}

// newConn opens a connection whose socket lives in ns (nil: the calling
// thread's namespace). Extended acks make kernel errors readable.
func newConn(ns *netns.NetNS, sndbuf int, extra ...nftables.ConnOption) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// Not combined with CapAcknowledge: mdlayher/netlink then fails to
		// parse error replies ("not enough data for netlink error code").
		if err := c.SetOption(netlink.ExtendedAcknowledge, true); err != nil {
			return fmt.Errorf("netlink extended acks: %w", err)
		}
		if sndbuf == 0 {
			return nil
		}
		return setBuffers(c, sndbuf)
	})}
	if ns != nil {
		opts = append(opts, nftables.WithNetNSFd(ns.Fd()))
	}
	c, err := nftables.New(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("firewall: nftables connection: %w", err)
	}
	return c, nil
}

// setBuffers sizes the send buffer for the batch (and the receive buffer
// for its acks), with the *FORCE options like nft does: we run with
// CAP_NET_ADMIN, which nftables needs anyway; without it fall back to the
// capped options.
func setBuffers(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size); e != nil {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size); e != nil {
					serr = errors.Join(serr, e)
				}
			}
		}
	})
	return errors.Join(err, serr)
}

// UpdatePinEndpoints atomically replaces the endpoints of the pin table
// in ns: flush both sets and refill them in one batch. Rules (and their
// counters) are untouched; if the table or a set is missing the batch fails
// as a whole and an error is returned.
func UpdatePinEndpoints(ns *netns.NetNS, table string, endpoints []netip.AddrPort) error {
	v4, v6 := SplitEndpoints(endpoints)
	c, err := newConn(ns, 64<<10+(len(v4)+len(v6))*64)
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	for _, s := range []*Set{
		{Name: SetPinEndpointsV4, Type: TypeIPv4AddrService, AddrPorts: v4},
		{Name: SetPinEndpointsV6, Type: TypeIPv6AddrService, AddrPorts: v6},
	} {
		ks, els, err := kernelSet(t, 0, s)
		if err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
		c.FlushSet(ks)
		if err := addElements(c, ks, els); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: update endpoints of table %s %s: %w", Family, table, err)
	}
	return nil
}

// UpdatePorts atomically replaces the elements of the inet_service set
// set of table in ns (flush and refill in one batch): the forwarded port
// changes without a moment where both or neither are open, and without
// touching rules or counters. A missing table or set fails the batch.
func UpdatePorts(ns *netns.NetNS, table, set string, ports []uint16) error {
	c, err := newConn(ns, 64<<10)
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	ks, els, err := kernelSet(t, 0, &Set{Name: set, Type: TypeInetService, Ports: uniquePorts(ports)})
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	c.FlushSet(ks)
	if err := addElements(c, ks, els); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: update set %s of table %s %s: %w", set, Family, table, err)
	}
	return nil
}

// Ports reads the elements of the inet_service set set of table in ns.
// The error wraps ENOENT when the table or set is missing.
func Ports(ns *netns.NetNS, table, set string) ([]uint16, error) {
	c, err := newConn(ns, 0)
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	ks, err := c.GetSetByName(t, set)
	if err != nil {
		return nil, fmt.Errorf("firewall: set %s of table %s %s: %w", set, Family, table, err)
	}
	els, err := c.GetSetElements(ks)
	if err != nil {
		return nil, fmt.Errorf("firewall: elements of set %s: %w", set, err)
	}
	var out []uint16
	for _, e := range els {
		if len(e.Key) == 2 {
			out = append(out, uint16(e.Key[0])<<8|uint16(e.Key[1]))
		}
	}
	return uniquePorts(out), nil
}

// DeleteTable removes table inet table from ns. It is idempotent: the batch
// is "add table" + "delete table", so a missing table is not an error and
// there is no check-then-delete race.
func DeleteTable(ns *netns.NetNS, table string) error {
	c, err := newConn(ns, 0)
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: delete table %s %s: %w", Family, table, err)
	}
	return nil
}

// Counter is the value of one rule counter.
type Counter struct {
	Packets, Bytes uint64
}

// Counters reads the counters of the counted rules of table inet table in
// ns, keyed like Ruleset.CounterKeys: "<chain> [@<set> ...] <verdict>", e.g.
// "input drop", "output drop", "output @endpoints_v4 accept". The error
// wraps ENOENT (errors.Is(err, fs.ErrNotExist)) when the table is missing.
func Counters(ns *netns.NetNS, table string) (map[string]Counter, error) {
	c, err := newConn(ns, 0)
	if err != nil {
		return nil, err
	}
	t, err := c.ListTableOfFamily(table, nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("firewall: table %s %s: %w", Family, table, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	out := map[string]Counter{}
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("firewall: rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			var cnt *expr.Counter
			var sets []string
			verdict := ""
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					cnt = e
				case *expr.Lookup:
					if !strings.HasPrefix(e.SetName, "__") { // anonymous sets
						sets = append(sets, e.SetName)
					}
				case *expr.Verdict:
					verdict = verdictName(e.Kind)
				}
			}
			if cnt == nil {
				continue
			}
			k := counterKey(ch.Name, sets, verdict)
			v := out[k]
			out[k] = Counter{Packets: v.Packets + cnt.Packets, Bytes: v.Bytes + cnt.Bytes}
		}
	}
	return out, nil
}

func verdictName(k expr.VerdictKind) string {
	switch k {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", k)
}
