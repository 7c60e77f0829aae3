package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// CompileAll runs the rules that span files (units listed twice, colliding
// interface names, host-link subnets, pinning marks, socket namespaces),
// allocates host-link subnets, and finalizes each Result: Plan is set only
// for files without errors. A cross-file conflict is an error for every
// file involved, so neither side silently wins.
func CompileAll(results []*Result) {
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	byName := map[string]*Result{}
	for _, r := range results {
		byName[r.Name] = r
	}

	publishCollisions(results)

	// Units listed by two files.
	owners := map[string][]*Result{}
	for _, r := range results {
		for _, u := range r.Units {
			owners[u] = append(owners[u], r)
		}
	}
	for _, u := range sortedKeys(owners) {
		rs := owners[u]
		if len(rs) < 2 {
			continue
		}
		for _, r := range rs {
			r.addErr(unitKey(r, u), "%s is also listed by %s; a unit can be confined to one namespace only", u, others(rs, r))
		}
	}

	// Interface names that must be unique: WireGuard interfaces (userspace
	// UAPI sockets are global: /run/wireguard/IFACE.sock) and host-side veths.
	type use struct {
		r   *Result
		key string
	}
	ifaces := map[string][]use{}
	for _, r := range results {
		p := r.Plan
		if p == nil {
			continue
		}
		ifaces[p.WireGuard.Interface] = append(ifaces[p.WireGuard.Interface], use{r, "wireguard.interface"})
		if p.HostLink != nil {
			ifaces[p.HostLink.HostIf] = append(ifaces[p.HostLink.HostIf], use{r, "hostLink.hostIf"})
		}
	}
	for _, name := range sortedKeys(ifaces) {
		us := ifaces[name]
		if len(us) < 2 {
			continue
		}
		for _, u := range us {
			var rs []*Result
			for _, o := range us {
				rs = append(rs, o.r)
			}
			hint := ""
			if u.key == "wireguard.interface" {
				hint = " (set wireguard.interface to a distinct name in each file)"
			}
			u.r.addErr(u.key, "interface name %q is also used by %s%s", name, others(rs, u.r), hint)
		}
	}

	// Pinning marks per birthplace namespace.
	marks := map[string][]*Result{}
	for _, r := range results {
		if p := r.Plan; p != nil && p.WireGuard.Pinning != nil {
			k := fmt.Sprintf("%s/%d", p.WireGuard.SocketNamespace, p.WireGuard.Pinning.FwMark)
			marks[k] = append(marks[k], r)
		}
	}
	for _, k := range sortedKeys(marks) {
		if rs := marks[k]; len(rs) > 1 {
			for _, r := range rs {
				r.addErr("wireguard.endpointPinning.fwMark", "pinning mark %d is also used by %s in the same socket namespace; set distinct endpointPinning.fwMark values", r.Plan.WireGuard.Pinning.FwMark, others(rs, r))
			}
		}
	}

	// Socket namespaces: managed ones must be valid and acyclic.
	for _, r := range results {
		p := r.Plan
		if p == nil || p.WireGuard.SocketNamespace == "" {
			continue
		}
		b := p.WireGuard.SocketNamespace
		br, managed := byName[b]
		switch {
		case !managed:
			r.addWarn("wireguard.socketNamespace", "%q is not managed by vpn-confinement; make sure /run/netns/%s exists before vpn-wg@%s.service starts", b, b, r.Name)
		case br.Plan != nil && br.Plan.WireGuard.SocketNamespace == r.Name:
			r.addErr("wireguard.socketNamespace", "%q uses this namespace as its socket namespace in turn; the tunnels would wait for each other", b)
		}
	}

	// Host links: manual subnets must be unique; the rest is allocated
	// deterministically around them.
	manual := map[string]netip.Prefix{}
	subnetOwners := map[netip.Prefix][]*Result{}
	var auto []string
	for _, r := range results {
		if r.Plan == nil || r.Plan.HostLink == nil {
			continue
		}
		if r.manualHL {
			manual[r.Name] = r.Plan.HostLink.Subnet
			subnetOwners[r.Plan.HostLink.Subnet] = append(subnetOwners[r.Plan.HostLink.Subnet], r)
		} else {
			auto = append(auto, r.Name)
		}
	}
	for pfx, rs := range subnetOwners {
		if len(rs) > 1 {
			for _, r := range rs {
				r.addErr("hostLink.subnetIPv4", "%s is also used by %s", pfx, others(rs, r))
			}
		}
	}
	if len(auto) > 0 {
		all := append(append([]string{}, auto...), sortedKeys(manual)...)
		alloc, err := AllocateHostLinkSubnets(all, manual)
		if err != nil {
			for _, name := range auto {
				byName[name].addErr("hostLink", "cannot allocate a host-link subnet: %v", err)
			}
		} else {
			for _, name := range auto {
				setHostLinkSubnet(byName[name].Plan.HostLink, alloc[name])
			}
		}
	}

	for _, r := range results {
		r.Diags.Sort()
		if r.Diags.HasErrors() {
			r.Plan = nil
		}
	}
}

func (r *Result) add(sev Severity, key, format string, args ...any) {
	var p pos
	if r.d != nil {
		p = r.d.lookup(key)
	}
	r.Diags = append(r.Diags, Diag{Severity: sev, File: r.File, Line: p.line, Column: p.col, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (r *Result) addErr(key, format string, args ...any)  { r.add(SevError, key, format, args...) }
func (r *Result) addWarn(key, format string, args ...any) { r.add(SevWarning, key, format, args...) }

// unitKey finds the key path of unit u in r (services[i].unit or sockets[i].unit).
func unitKey(r *Result, u string) string {
	if r.d != nil {
		for i, s := range r.d.schema.Services {
			if s.Unit != nil && *s.Unit == u {
				return fmt.Sprintf("services[%d].unit", i)
			}
		}
		for i, s := range r.d.schema.Sockets {
			if s.Unit != nil && *s.Unit == u {
				return fmt.Sprintf("sockets[%d].unit", i)
			}
		}
	}
	return ""
}

func others(rs []*Result, self *Result) string {
	var names []string
	for _, o := range rs {
		if o != self {
			names = append(names, o.File)
		}
	}
	if len(names) == 0 {
		return "this file"
	}
	return strings.Join(names, ", ")
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Position returns where key path key is in the file (the nearest parent
// that has a position; 1:1 for a key that is not in the file).
func (r *Result) Position(key string) (line, col int) {
	if r.d == nil {
		return 0, 0
	}
	p := r.d.lookup(key)
	return p.line, p.col
}
