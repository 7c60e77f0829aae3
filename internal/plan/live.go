package plan

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Diff is one difference between a running plan and a new one that a live
// reload cannot apply.
type Diff struct {
	Key string // the YAML key, e.g. wireguard.interface
	// Restart is the command that applies it.
	Restart string
}

// LiveDiff lists what a live reload (systemctl reload vpn-ns@NAME) cannot
// apply from cur to next. Everything else is applied in place: the
// firewall in one transaction, DNS files rewritten in place, peers,
// endpoints, allowed IPs, routes, addresses, MTU and listen port on the
// running tunnel, published ports and port forwarding by (re)starting
// their units. The keys here change what the namespace or the services'
// drop-ins are made of (interface and link names, the host link's
// addresses, where the UDP socket lives, mounts of strict DNS), or need
// the tunnel's credentials again (keys are read through LoadCredential=,
// which systemd copies at start).
func LiveDiff(cur, next *Namespace) []Diff {
	ns := "systemctl restart vpn-ns@" + cur.Name + ".service (stops and starts the confined services)"
	wg := "systemctl restart vpn-wg@" + cur.Name + ".service (with onTunnelLoss: block the confined services keep running)"
	var out []Diff
	add := func(changed bool, key, restart string) {
		if changed {
			out = append(out, Diff{Key: key, Restart: restart})
		}
	}
	cw, nw := cur.WireGuard, next.WireGuard
	add(cur.Name != next.Name, "the namespace name", ns)
	add(cw.Interface != nw.Interface, "wireguard.interface", ns)
	add(cw.SocketNamespace != nw.SocketNamespace, "wireguard.socketNamespace", ns)
	add(!same(cw.Pinning, nw.Pinning), "wireguard.endpointPinning", ns)
	add(cw.FwMark != nw.FwMark, "wireguard.fwMark", ns)
	add(!same(cur.HostLink, next.HostLink), "hostLink (its interfaces or subnet, or whether there is one)", ns)
	add(cur.IPv6 != next.IPv6, "ipv6.mode", ns)
	add(cur.DNS.Mode != next.DNS.Mode, "dns.mode (it changes the services' mounts)", ns)
	add(cur.DNS.AllowHostResolverIPC != next.DNS.AllowHostResolverIPC, "dns.allowHostResolverIPC (it changes the services' mounts)", ns)
	add(cw.Backend != nw.Backend, "wireguard.backend", wg)
	add(!same(cw.PrivateKey, nw.PrivateKey), "the private key's source", wg)
	add(!sameKeySources(cw.Peers, nw.Peers), "a preshared key's source", wg)
	return out
}

// DescribeDiffs renders diffs for an error message: every key, and the
// commands that apply them.
func DescribeDiffs(diffs []Diff) string {
	var keys []string
	cmds := map[string]bool{}
	var order []string
	for _, d := range diffs {
		keys = append(keys, d.Key)
		if !cmds[d.Restart] {
			cmds[d.Restart] = true
			order = append(order, d.Restart)
		}
	}
	return fmt.Sprintf("%s changed, which cannot be applied while running; nothing was changed; apply it with: %s",
		strings.Join(keys, ", "), strings.Join(order, ", or "))
}

func same(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return reflect.DeepEqual(ja, jb)
}

// sameKeySources compares preshared key sources by peer public key.
func sameKeySources(a, b []Peer) bool {
	src := map[string]string{}
	for _, p := range a {
		j, _ := json.Marshal(p.PresharedKey)
		src[p.PublicKey] = string(j)
	}
	for _, p := range b {
		j, _ := json.Marshal(p.PresharedKey)
		old, ok := src[p.PublicKey]
		if ok && old != string(j) {
			return false
		}
		if !ok && p.PresharedKey != nil {
			return false // a new peer's key is not among the credentials
		}
	}
	return true
}
