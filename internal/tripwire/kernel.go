//go:build linux

package tripwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
)

// Host is the host network namespace the tripwire lives in, the lock that
// serialises its writers and the cgroup2 mount cgroup paths resolve under.
//
// Every writer (Ensure, Add, Remove, Prune) holds the lock from its first
// read of the table to its batch: the table is shared by every namespace's
// units, which start concurrently, and the kernel offers no "create these
// rules unless they exist" (rules are appended), so check-then-write must
// not interleave. Readers (Counters, Elements) take no lock.
type Host struct {
	NS    *netns.NetNS // nil: the calling thread's namespace
	Lock  string       // lock file path (created if missing)
	Mount Mount        // zero: found in Proc's mount namespace when needed
	// Proc is the process whose mount namespace Mount is looked up in
	// ("": /proc/self); see FindMount.
	Proc string
}

// Counter is the value of one namespace's drop counter.
type Counter = firewall.Counter

// conn opens one socket for all of an operation's round trips (AsLasting;
// the caller closes it): without it google/nftables dials per request, and
// each dial into another namespace costs a thread switch into it.
func (h *Host) conn() (*nftables.Conn, error) { return firewall.Dial(h.NS, 0, nftables.AsLasting()) }

func (h *Host) mount() (Mount, error) {
	if h.Mount.Dir != "" {
		return h.Mount, nil
	}
	proc := h.Proc
	if proc == "" {
		proc = "/proc/self"
	}
	m, err := FindMount(proc)
	if err != nil {
		return Mount{}, err
	}
	h.Mount = m
	return m, nil
}

var table = &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}

// unitsMap is the verdict map. cgroupsv2 keys are host-endian 64-bit IDs,
// as nft declares the type (BYTEORDER_HOST_ENDIAN).
func unitsMap() *nftables.Set {
	return &nftables.Set{Table: table, ID: 1, Name: Map, IsMap: true,
		KeyType: nftables.TypeCGroupV2, DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
}

var hookNums = map[string]*nftables.ChainHook{"output": nftables.ChainHookOutput, "input": nftables.ChainHookInput}

func baseChain(hook string) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(Priority)
	return &nftables.Chain{Name: hook, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: hookNums[hook], Priority: &prio, Policy: &policy}
}

// levelRule is "socket cgroupv2 level L vmap @units" as nft 1.0.x encodes
// it: socket load into reg 1, lookup with the verdict register as dreg.
func levelRule(ch *nftables.Chain, level int) *nftables.Rule {
	return &nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(level), Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: Map, SetID: 1, IsDestRegSet: true, DestRegister: 0},
	}}
}

func nsRule(ch *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}}
}

// isNSRule recognises "counter drop".
func isNSRule(r *nftables.Rule) bool {
	if len(r.Exprs) != 2 {
		return false
	}
	_, ok := r.Exprs[0].(*expr.Counter)
	v, ok2 := r.Exprs[1].(*expr.Verdict)
	return ok && ok2 && v.Kind == expr.VerdictDrop
}

// Ensure creates the table if it is missing and repairs its base chains if
// they differ from the model. It never touches the map's elements or the
// namespace chains, so it is safe to call at every unit start.
func (h *Host) Ensure() error {
	unlock, err := lock(h.Lock)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := h.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	return ensure(h, c)
}

func ensure(h *Host, c *nftables.Conn) error {
	if ok, err := haveTable(c); err != nil {
		return err
	} else if !ok {
		return create(c)
	}
	queued := false
	if s, err := c.GetSetByName(table, Map); errors.Is(err, os.ErrNotExist) {
		if err := c.AddSet(unitsMap(), nil); err != nil {
			return fmt.Errorf("tripwire: map %s: %w", Map, err)
		}
		queued = true
	} else if err != nil {
		return fmt.Errorf("tripwire: map %s: %w", Map, err)
	} else if !s.IsMap {
		// Only IsMap is checked: google/nftables v0.3.0 decodes a verdict
		// map's data type into KeyType, so the key type cannot be read
		// back. A map of another key type fails loudly anyway: the kernel
		// refuses 8-byte keys and lookups from an 8-byte register for it.
		return fmt.Errorf("tripwire: table inet %s has a set %s that is not a map; delete the table to recreate it", Table, Map)
	}
	chains, err := tableChains(c)
	if err != nil {
		return err
	}
	for _, hook := range Hooks {
		want := baseChain(hook)
		have := chains[hook]
		switch {
		case have == nil:
			addBase(c, c.AddChain(want))
			queued = true
		case !sameBase(have, want):
			// Wrong hook, type or priority: a base chain cannot be
			// changed in place. Nothing jumps to a base chain, so it can
			// be flushed, deleted and recreated in the same batch.
			c.FlushChain(have)
			c.DelChain(have)
			addBase(c, c.AddChain(want))
			queued = true
		default:
			rules, err := dumpRules(h.NS, hook)
			if err != nil {
				return err
			}
			if !levelRulesOK(rules) {
				c.FlushChain(have)
				addBase(c, have)
				queued = true
			}
		}
	}
	if !queued {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("tripwire: repair table inet %s: %w", Table, err)
	}
	return nil
}

// haveTable reports whether the table exists. (The table lookup keeps the
// kernel's ENOENT; google/nftables' element dump would flatten it.)
func haveTable(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(Table, nftables.TableFamilyINet)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tripwire: table %s: %w", Table, err)
	}
	return true, nil
}

// create loads the empty table in one batch, in the order nft -f of Render
// would: map, then the base chains with their rules.
func create(c *nftables.Conn) error {
	c.AddTable(table)
	if err := c.AddSet(unitsMap(), nil); err != nil {
		return fmt.Errorf("tripwire: map %s: %w", Map, err)
	}
	for _, hook := range Hooks {
		addBase(c, c.AddChain(baseChain(hook)))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("tripwire: create table inet %s: %w", Table, err)
	}
	return nil
}

func addBase(c *nftables.Conn, ch *nftables.Chain) {
	for l := 1; l <= MaxLevel; l++ {
		c.AddRule(levelRule(ch, l))
	}
}

func sameBase(have, want *nftables.Chain) bool {
	return have.Hooknum != nil && *have.Hooknum == *want.Hooknum && have.Priority != nil &&
		*have.Priority == *want.Priority && have.Type == want.Type &&
		have.Policy != nil && *have.Policy == *want.Policy
}

func levelRulesOK(rules [][]rawExpr) bool {
	if len(rules) != MaxLevel {
		return false
	}
	for i, r := range rules {
		if !isLevelRule(r, i+1) {
			return false
		}
	}
	return true
}

// tableChains lists the chains of the tripwire table by name.
func tableChains(c *nftables.Conn) (map[string]*nftables.Chain, error) {
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("tripwire: list chains: %w", err)
	}
	out := map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table.Name == Table {
			out[ch.Name] = ch
		}
	}
	return out, nil
}

// Add registers the cgroup at path (as in /proc/PID/cgroup, e.g.
// /system.slice/foo.service) for namespace ns: it ensures the table,
// creates ns's chain if needed and maps the cgroup's ID to it, in one batch
// after Ensure's. Adding the same cgroup again is a no-op; a cgroup mapped
// to another namespace is moved.
func (h *Host) Add(ns, path string) (Cgroup, error) {
	if !config.ValidNamespaceName(ns) {
		return Cgroup{}, fmt.Errorf("tripwire: invalid namespace name %q", ns)
	}
	if err := CheckPath(path); err != nil {
		return Cgroup{}, fmt.Errorf("tripwire: %w", err)
	}
	m, err := h.mount()
	if err != nil {
		return Cgroup{}, fmt.Errorf("tripwire: %w", err)
	}
	cg, err := m.Resolve(path)
	if err != nil {
		return Cgroup{}, fmt.Errorf("tripwire: %w", err)
	}
	unlock, err := lock(h.Lock)
	if err != nil {
		return Cgroup{}, err
	}
	defer unlock()
	c, err := h.conn()
	if err != nil {
		return Cgroup{}, err
	}
	defer c.CloseLasting()
	if err := ensure(h, c); err != nil {
		return Cgroup{}, err
	}
	chains, err := tableChains(c)
	if err != nil {
		return Cgroup{}, err
	}
	name := ChainName(ns)
	switch ch := chains[name]; {
	case ch == nil:
		c.AddRule(nsRule(c.AddChain(&nftables.Chain{Name: name, Table: table})))
	default:
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return Cgroup{}, fmt.Errorf("tripwire: rules of chain %s: %w", name, err)
		}
		if len(rules) != 1 || !isNSRule(rules[0]) {
			c.FlushChain(ch)
			c.AddRule(nsRule(ch))
		}
	}
	els, err := elements(c)
	if err != nil {
		return Cgroup{}, err
	}
	set := unitsMap()
	if old, ok := els[cg.ID]; ok {
		if old == ns {
			// Already registered; flush the chain repair, if one was
			// queued (usually nothing is).
			if err := c.Flush(); err != nil {
				return Cgroup{}, fmt.Errorf("tripwire: repair chain %s: %w", name, err)
			}
			return cg, nil
		}
		if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: key(cg.ID)}}); err != nil {
			return Cgroup{}, fmt.Errorf("tripwire: %w", err)
		}
	}
	if err := c.SetAddElements(set, []nftables.SetElement{element(cg.ID, ns)}); err != nil {
		return Cgroup{}, fmt.Errorf("tripwire: %w", err)
	}
	if err := c.Flush(); err != nil {
		return Cgroup{}, fmt.Errorf("tripwire: add cgroup %s (%d) for %s: %w", cg.Path, cg.ID, ns, err)
	}
	return cg, nil
}

func key(id uint64) []byte { return binaryutil.NativeEndian.PutUint64(id) }

func element(id uint64, ns string) nftables.SetElement {
	return nftables.SetElement{Key: key(id), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ChainName(ns)}}
}

// elements reads the map: cgroup ID → namespace. Elements that do not jump
// to a namespace chain (someone else's edits) map to "".
func elements(c *nftables.Conn) (map[uint64]string, error) {
	els, err := c.GetSetElements(unitsMap())
	if err != nil {
		return nil, fmt.Errorf("tripwire: elements of map %s: %w", Map, err)
	}
	out := map[uint64]string{}
	for _, e := range els {
		if len(e.Key) != 8 {
			continue
		}
		kind, chain := decodeVerdict(e.Val)
		ns := ""
		if kind == int32(expr.VerdictJump) {
			ns, _ = NamespaceOf(chain)
		}
		out[binary.NativeEndian.Uint64(e.Key)] = ns
	}
	return out, nil
}

// decodeVerdict parses the verdict data of a map element (NFTA_DATA_VERDICT
// contents: NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN); google/nftables v0.3.0
// returns them undecoded in SetElement.Val.
func decodeVerdict(b []byte) (int32, string) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, ""
	}
	ad.ByteOrder = binary.BigEndian
	var kind int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			kind = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	return kind, chain
}

// Remove unregisters cgroup id from namespace ns and reports whether it
// was registered. A missing table or element is not an error
// (ExecStopPost= also runs after a start that failed before the cgroup was
// added); an element registered for another namespace is left alone and
// reported.
func (h *Host) Remove(ns string, id uint64) (bool, error) {
	removed := false
	err := h.editElements(func(c *nftables.Conn, els map[uint64]string) error {
		owner, ok := els[id]
		if !ok {
			return nil
		}
		if owner != ns {
			return fmt.Errorf("tripwire: cgroup %d is registered for namespace %q, not %q", id, owner, ns)
		}
		removed = true
		return deleteIDs(c, []uint64{id})
	})
	return removed, err
}

// editElements runs f on the registered elements under the lock; a
// missing table is nothing to edit.
func (h *Host) editElements(f func(c *nftables.Conn, els map[uint64]string) error) error {
	unlock, err := lock(h.Lock)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := h.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if ok, err := haveTable(c); err != nil || !ok {
		return err
	}
	els, err := elements(c)
	if err != nil {
		return err
	}
	return f(c, els)
}

func deleteIDs(c *nftables.Conn, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	var del []nftables.SetElement
	for _, id := range ids {
		del = append(del, nftables.SetElement{Key: key(id)})
	}
	if err := c.SetDeleteElements(unitsMap(), del); err != nil {
		return fmt.Errorf("tripwire: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("tripwire: delete cgroups %v: %w", ids, err)
	}
	return nil
}

// Prune removes the elements whose cgroup no longer exists (units that
// stopped without their ExecStopPost=, e.g. after a crash of the manager).
// Such elements are harmless, since cgroup IDs are not reused, but they
// would accumulate. It returns the IDs removed.
func (h *Host) Prune() ([]uint64, error) {
	m, err := h.mount()
	if err != nil {
		return nil, fmt.Errorf("tripwire: %w", err)
	}
	var stale []uint64
	err = h.editElements(func(c *nftables.Conn, els map[uint64]string) error {
		for id := range els {
			ok, err := m.Exists(id)
			if err != nil {
				return fmt.Errorf("tripwire: %w", err)
			}
			if !ok {
				stale = append(stale, id)
			}
		}
		slices.Sort(stale)
		return deleteIDs(c, stale)
	})
	if err != nil {
		return nil, err
	}
	return stale, nil
}

// Elements lists the registered cgroups by ID (Path is not filled in).
// The error wraps fs.ErrNotExist when the table is missing.
func (h *Host) Elements() ([]Element, error) {
	c, err := h.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyINet); err != nil {
		return nil, fmt.Errorf("tripwire: table %s: %w", Table, err)
	}
	els, err := elements(c)
	if err != nil {
		return nil, err
	}
	out := make([]Element, 0, len(els))
	for id, ns := range els {
		out = append(out, Element{ID: id, Namespace: ns})
	}
	return State{Elements: out}.Normalize().Elements, nil
}

// Counters reads the drop counter of every namespace chain: packets and
// bytes of escapes, kept after the namespace's units are gone. The error
// wraps fs.ErrNotExist when the table is missing.
func (h *Host) Counters() (map[string]Counter, error) {
	c, err := h.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyINet); err != nil {
		return nil, fmt.Errorf("tripwire: table %s: %w", Table, err)
	}
	chains, err := tableChains(c)
	if err != nil {
		return nil, err
	}
	out := map[string]Counter{}
	for name, ch := range chains {
		ns, ok := NamespaceOf(name)
		if !ok {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return nil, fmt.Errorf("tripwire: rules of chain %s: %w", name, err)
		}
		var sum Counter
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					sum.Packets += cnt.Packets
					sum.Bytes += cnt.Bytes
				}
			}
		}
		out[ns] = sum
	}
	return out, nil
}
