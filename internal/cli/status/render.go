package status

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
)

// WriteJSON writes the stable JSON form.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Problems counts the problems of all namespaces and orphans.
func (r *Report) Problems() int {
	n := 0
	for _, ns := range r.Namespaces {
		n += len(ns.Problems)
	}
	for _, o := range r.Orphans {
		if o.Problem != "" {
			n++
		}
	}
	return n
}

// printer writes the labelled rows of a namespace block.
type printer struct{ w io.Writer }

// row is a labelled row; more continues it.
func (p printer) row(label, format string, args ...any) {
	fmt.Fprintf(p.w, "    %-10s %s\n", label, fmt.Sprintf(format, args...))
}

func (p printer) more(format string, args ...any) { p.row("", format, args...) }

// line is an unlabelled line (problems, notes).
func (p printer) line(format string, args ...any) {
	fmt.Fprintf(p.w, "    %s\n", fmt.Sprintf(format, args...))
}

// WriteText writes the human form: one block per namespace, problems last
// so they are what stays on the screen.
func (r *Report) WriteText(w io.Writer, now time.Time) {
	if r.Systemd != "running" {
		fmt.Fprintf(w, "note: unit states unknown: %s\n\n", r.Systemd)
	}
	if len(r.Namespaces) == 0 && len(r.Orphans) == 0 {
		fmt.Fprintln(w, "no compiled namespaces (nothing in /run/systemd/generator/vpn-confinement)")
	}
	for i, n := range r.Namespaces {
		if i > 0 {
			fmt.Fprintln(w)
		}
		n.writeText(w, now)
	}
	if len(r.NotCompiled) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "not in use:")
		for _, c := range r.NotCompiled {
			fmt.Fprintf(w, "  %s: %s\n", c.File, c.Reason)
		}
	}
	if len(r.Orphans) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "without a file:")
		for _, o := range r.Orphans {
			o.writeText(printer{w})
		}
	}
	if r.Tripwire != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "host tripwire: %s\n", r.Tripwire.text())
	}
}

func (n *Namespace) writeText(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "%s %s: %s\n", marker(n.State), n.Name, strings.ToUpper(n.State))
	p := printer{w}
	row, more := p.row, p.more
	row("config", "%s", n.Config)
	var us []string
	for _, u := range n.Units {
		us = append(us, unitText(u))
	}
	row("units", "%s", strings.Join(us, "; "))
	if n.Netns.Present {
		row("namespace", "%s %s", n.Netns.Path, n.Netns.ID)
	} else {
		row("namespace", "%s absent", n.Netns.Path)
	}

	t := n.Tunnel
	switch {
	case !n.Netns.Present:
	case !t.Present:
		row("tunnel", "%s absent (backend %s)", t.Interface, t.Configured)
	default:
		backend := t.Backend
		switch backend {
		case "userspace":
			backend = "userspace (wireguard-go, link kind tun)"
		case "kernel":
			backend = "kernel (link kind wireguard)"
		}
		state := "down"
		if t.Up {
			state = "up"
		}
		row("tunnel", "%s %s, %s (configured: %s), mtu %d, listen port %d", t.Interface, state, backend, t.Configured, t.MTU, t.ListenPort)
		if len(t.Addresses) > 0 {
			more("addresses %s", joinPrefixes(t.Addresses))
		}
		for _, p := range t.Peers {
			more("peer %s", p.PublicKey)
			if !p.OnDevice {
				more("  not on the device")
				continue
			}
			ep := p.Endpoint
			if ep == "" {
				ep = "(none)"
			}
			switch {
			case len(p.Failover) > 0:
				ep += " (configured endpoints " + strings.Join(append([]string{p.ConfiguredEndpoint}, p.Failover...), ", ") + ")"
			case p.ConfiguredEndpoint != "" && p.ConfiguredEndpoint != p.Endpoint:
				ep += " (configured " + p.ConfiguredEndpoint + ")"
			}
			more("  endpoint %s, handshake %s, received %s, sent %s", ep, handshakeText(p, now), bytesText(p.RxBytes), bytesText(p.TxBytes))
			more("  allowed %s", joinPrefixes(p.AllowedIPs))
		}
	}
	n.writeSupervisor(p, now)
	n.writePending(p)
	if fw := n.Firewall; fw != nil {
		row("firewall", "%s", firewallText(fw))
	} else if n.Netns.Present {
		row("firewall", "table inet vpn_confinement NOT loaded")
	}
	if p := n.Pinning; p != nil {
		if p.Firewall != nil {
			row("pinning", "mark 0x%x, table inet %s in %s: %d rules, %d packets dropped", p.Mark, p.Table, p.Namespace, p.Firewall.Rules, p.Firewall.DropPackets)
		} else {
			row("pinning", "mark 0x%x, table inet %s absent in %s", p.Mark, p.Table, p.Namespace)
		}
	}
	if len(n.Routes) > 0 {
		var rs []string
		for _, r := range n.Routes {
			rs = append(rs, r.String())
		}
		row("routes", "%s", strings.Join(rs, "; "))
	}
	if len(n.Interfaces) > 0 {
		for i, l := range n.Interfaces {
			label := ""
			if i == 0 {
				label = "interfaces"
			}
			state := "down"
			if l.Up {
				state = "up"
			}
			s := fmt.Sprintf("%s (%s, %s)", l.Name, l.Kind, state)
			if len(l.Addrs) > 0 {
				s += " " + joinPrefixes(l.Addrs)
			}
			fmt.Fprintf(w, "    %-10s %s\n", label, s)
		}
	}
	d := n.DNS
	if d.Mode == "strict" {
		gen := ""
		switch {
		case !n.Netns.Present:
		case d.Generated == nil:
			gen = " (generated resolv.conf missing)"
		case !d.Current:
			gen = " (generated " + d.ResolvConf + " is outdated)"
		default:
			gen = " (generated " + d.ResolvConf + ")"
		}
		ipc := ""
		if d.HostIPC {
			ipc = "; host resolver IPC reachable"
		}
		row("dns", "strict, resolvers %s%s%s", strings.Join(d.Servers, ", "), gen, ipc)
	} else {
		row("dns", "%s: services use the host's resolver configuration", d.Mode)
	}
	if h := n.HostLink; h != nil {
		hs := "absent"
		if h.HostPresent {
			hs = "down"
			if h.HostUp {
				hs = "up"
			}
		}
		row("host link", "%s %s (host, %s) <-> %s %s (namespace)", h.HostIf, h.HostAddr, hs, h.NsIf, h.NsAddr)
		if len(h.PublishedTCP) > 0 {
			var ps []string
			for _, p := range h.PublishedTCP {
				ps = append(ps, fmt.Sprint(p))
			}
			more("published tcp %s: connect from the host to %s", strings.Join(ps, ", "), h.NsAddr)
		}
	}
	n.writePublished(p.w)
	n.writePortForwarding(p)
	n.writeTripwire(p)
	for i, u := range n.Confined {
		label := ""
		if i == 0 {
			label = "confined"
		}
		s := unitText(u)
		if u.InNamespace != nil {
			if *u.InNamespace {
				s += ", in the namespace"
			} else {
				s += ", OUTSIDE the namespace (" + u.ProcessNetns + ")"
			}
		}
		fmt.Fprintf(w, "    %-10s %s\n", label, s)
	}
	for _, e := range n.Errors {
		fmt.Fprintf(w, "    unread: %s\n", e)
	}
	for _, p := range n.Problems {
		fmt.Fprintf(w, "    PROBLEM: %s\n", p)
	}
	for _, p := range n.Notes {
		fmt.Fprintf(w, "    note: %s\n", p)
	}
}

func marker(state string) string {
	switch state {
	case StateUp:
		return "*"
	case StateDown:
		return "o"
	}
	return "!"
}

func unitText(u Unit) string {
	if u.ActiveState == "" {
		return u.Name + " (state unknown)"
	}
	if u.LoadState == "not-found" {
		return u.Name + " not found"
	}
	s := fmt.Sprintf("%s %s (%s", u.Name, u.ActiveState, u.SubState)
	if u.MainPID > 0 {
		s += fmt.Sprintf(", PID %d", u.MainPID)
	}
	if u.FreezerState != "" && u.FreezerState != "running" {
		s += ", " + u.FreezerState
	}
	return s + ")"
}

func firewallText(fw *kstate.Firewall) string {
	var drop, accept []string
	for _, c := range fw.Chains {
		switch c.Policy {
		case "drop":
			drop = append(drop, c.Hook)
		case "accept":
			accept = append(accept, c.Hook)
		}
	}
	s := fmt.Sprintf("table inet %s: %d chains", fw.Table, len(fw.Chains))
	if len(drop) > 0 {
		s += " (" + strings.Join(drop, ", ") + ": policy drop"
		if len(accept) > 0 {
			s += "; " + strings.Join(accept, ", ") + ": policy accept"
		}
		s += ")"
	}
	s += fmt.Sprintf(", %d rules, %d sets; %d packets dropped (%s)", fw.Rules, fw.Sets, fw.DropPackets, bytesText(int64(fw.DropBytes)))
	return s
}

func handshakeText(p Peer, now time.Time) string {
	if p.LatestHandshake == nil {
		return "never"
	}
	return durationText(now.Sub(*p.LatestHandshake)) + " ago"
}

func durationText(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}
