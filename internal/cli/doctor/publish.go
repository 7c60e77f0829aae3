package doctor

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
)

// publishPorts finds published addresses that something else on the host
// already listens on: the socket unit cannot bind them (it fails at the
// namespace's start), or a wildcard elsewhere takes their connections.
// A listener is ours when it is exactly the published address, held by
// PID 1, and the published socket unit is active.
func (d *doctor) publishPorts() {
	type entry struct{ ns, unit, addr string }
	var entries []entry
	for _, n := range d.plans {
		for _, p := range n.Publish {
			for _, l := range p.Listen {
				entries = append(entries, entry{n.Name, p.Unit + ".socket", l})
			}
		}
	}
	if len(entries) == 0 {
		d.add("published-ports", check.OK, "no namespace publishes a port")
		return
	}
	if d.o.Host.TCP == nil {
		d.add("published-ports", check.Warn, "cannot read the host's sockets")
		return
	}
	socks, err := d.o.Host.TCP()
	if err != nil {
		d.add("published-ports", check.Warn, "cannot read the host's sockets: %v", err)
		return
	}
	var inodes []uint32
	for _, s := range socks {
		if s.State == sockdiag.StateListen {
			inodes = append(inodes, s.Inode)
		}
	}
	holders := map[uint32][]sockdiag.Holder{}
	if d.o.Host.Holders != nil {
		holders = d.o.Host.Holders(inodes)
	}
	var units []string
	for _, e := range entries {
		units = append(units, e.unit)
	}
	states := map[string]string{}
	if d.o.UnitStates != nil {
		states, _ = d.o.UnitStates(units)
	}
	var fails, ok []string
	for _, e := range entries {
		ap, valid := sockdiag.ParseListen(e.addr)
		if !valid {
			continue
		}
		active := states[e.unit] == "active"
		var foreign []string
		ours := false
		for _, s := range sockdiag.Colliding(socks, ap) {
			hs := holders[s.Inode]
			init := false
			var names []string
			for _, h := range hs {
				init = init || h.PID == 1
				names = append(names, h.String())
			}
			if active && init && s.Local == ap {
				ours = true
				continue
			}
			who := strings.Join(names, ", ")
			if who == "" {
				who = "an unknown process"
				if !d.o.Root {
					who += " (not root: processes are not read)"
				}
			}
			local := s.Local.String()
			if s.V6 && s.Local.Addr().Is4() {
				local = "[::ffff:" + s.Local.Addr().String() + "]:" + fmt.Sprint(s.Local.Port())
			}
			foreign = append(foreign, fmt.Sprintf("%s listening on %s", who, local))
		}
		sort.Strings(foreign)
		switch {
		case len(foreign) > 0:
			fails = append(fails, fmt.Sprintf("%s (namespace %s) is already in use by %s: %s cannot listen there (stop that, or publish another port)", e.addr, e.ns, strings.Join(foreign, "; "), e.unit))
		case ours:
			ok = append(ok, e.addr+" ("+e.unit+")")
		default:
			ok = append(ok, e.addr+" (free)")
		}
	}
	if len(fails) > 0 {
		d.add("published-ports", check.Fail, "%s", strings.Join(fails, "; "))
		return
	}
	d.add("published-ports", check.OK, "%s", strings.Join(ok, ", "))
}
