package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Profiles.
const (
	ProfileBalanced      = "balanced"
	ProfileHighAssurance = "highAssurance"
)

// Result is the outcome of compiling one namespace file.
type Result struct {
	Name string // namespace name (file stem)
	File string // path of the YAML file
	// Plan is the compiled plan; nil when the file has errors.
	Plan *plan.Namespace
	// Units lists every unit the file names, even when it is invalid, so
	// that the generator can block them (fail closed).
	Units []string
	Diags Diags
	// Parsed is false when the file could not be decoded at all; Units then
	// comes from a lenient scan of the text.
	Parsed bool

	d        *decoded
	manualHL bool // hostLink.subnetIPv4 set explicitly
}

// Env gives the compiler read access to the rest of the system. Zero value:
// no unit-file checks, files read with os.ReadFile.
type Env struct {
	// Units looks up unit files for conflict checks; nil skips them.
	Units UnitLookup
	// ReadFile reads auxiliary files (wg-quick configFile); nil = os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// LookupHome returns a user's home directory (from /etc/passwd); nil
	// skips making services' homes writable.
	LookupHome func(user string) (string, bool)
}

func (e Env) readFile(p string) ([]byte, error) {
	if e.ReadFile != nil {
		return e.ReadFile(p)
	}
	return os.ReadFile(p)
}

// NameFromPath returns the namespace name of a config file path and whether
// the file is a namespace file at all (.yaml or .yml).
func NameFromPath(p string) (string, bool) {
	base := filepath.Base(p)
	for _, ext := range []string{".yaml", ".yml"} {
		if strings.HasSuffix(base, ext) {
			return strings.TrimSuffix(base, ext), true
		}
	}
	return "", false
}

// CompileFile compiles one file in isolation (cross-file rules run in
// CompileAll).
func CompileFile(path string, src []byte, env Env) *Result {
	name, _ := NameFromPath(path)
	r := &Result{Name: name, File: path}
	d := decode(path, src)
	r.d = d
	if d.fatal {
		r.Diags = d.diags
		r.Units = scanUnits(src)
		return r
	}
	r.Parsed = true
	c := &compiler{d: d, env: env, name: name, file: path}
	p := c.compile()
	r.Units = dedupeStrings(c.units)
	r.manualHL = c.manualHL
	r.Diags = d.diags
	if !r.Diags.HasErrors() {
		r.Plan = p
	}
	return r
}

// unitScanRe finds "unit: foo.service" even in a file that no longer parses,
// so a typo elsewhere cannot unconfine the units it lists.
var unitScanRe = regexp.MustCompile(`(?m)^[\s-]*unit\s*:\s*["']?([^"'\s#]+)`)

// ScanUnits is the lenient scan for callers that cannot compile at all.
func ScanUnits(src []byte) []string { return scanUnits(src) }

func scanUnits(src []byte) []string {
	var out []string
	for _, m := range unitScanRe.FindAllSubmatch(src, -1) {
		u := string(m[1])
		if ValidUnitName(u) && (strings.HasSuffix(u, ".service") || strings.HasSuffix(u, ".socket")) {
			out = append(out, u)
		}
	}
	return dedupeStrings(out)
}

type compiler struct {
	d        *decoded
	env      Env
	name     string
	file     string
	units    []string
	manualHL bool
	ha       bool
	// peerLines locates peers imported from wireguard.configFile.
	peerLines map[int]srcLine
	// configFileFailed: wireguard.configFile is set but could not be used
	// (its error is reported); what the file would have given (key,
	// addresses, peers, resolvers) is then not reported missing as well.
	configFileFailed bool
}

type srcLine struct {
	file string
	line int
}

func (c *compiler) errorf(key, f string, a ...any) { c.d.errorf(key, f, a...) }
func (c *compiler) warnf(key, f string, a ...any)  { c.d.warnf(key, f, a...) }

func str(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func boolean(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func (c *compiler) enum(key string, p *string, def string, allowed ...string) string {
	v := str(p, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	c.errorf(key, "must be one of %s (got %q)", strings.Join(quoteAll(allowed), ", "), v)
	return def
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func (c *compiler) compile() *plan.Namespace {
	s := &c.d.schema
	if unsafePath(c.file) {
		c.errorf("", "the file's path must not contain whitespace, quotes, backslashes or control characters: %q", c.file)
	}
	if !ValidNamespaceName(c.name) {
		c.errorf("", "file name %q does not give a valid namespace name: it must be 1-64 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit", c.name)
	}
	n := &plan.Namespace{Version: plan.Version, Name: c.name, Source: c.file}
	n.SecurityProfile = c.enum("securityProfile", s.SecurityProfile, ProfileBalanced, ProfileBalanced, ProfileHighAssurance)
	c.ha = n.SecurityProfile == ProfileHighAssurance
	n.Autostart = boolean(s.Autostart, true)

	ipv6Mode := c.enum("ipv6.mode", s.IPv6.Mode, "disable", "disable", "tunnel")
	n.IPv6 = ipv6Mode == "tunnel"

	wgq := c.importWgQuick(n)
	c.configFileFailed = s.WireGuard.ConfigFile != nil && wgq == nil
	c.compileWireGuard(n, wgq)
	c.compileDNS(n, wgq)
	c.compileEgress(n)
	c.compileToHost(n)
	c.compileIngressAndHostLink(n)
	c.compilePublish(n)
	c.compileLifecycle(n)
	c.compilePortForwarding(n)
	c.compileUnits(n)
	c.checkPublishTargets(n)
	return n
}

func (c *compiler) compileDNS(n *plan.Namespace, wgq *wgQuickImport) {
	s := &c.d.schema.DNS
	defMode := plan.DNSStrict
	n.DNS.Mode = c.enum("dns.mode", s.Mode, defMode, plan.DNSStrict, plan.DNSCompat)
	n.DNS.AllowHostResolverIPC = boolean(s.AllowHostResolverIPC, false)
	servers, search := s.Servers, s.Search
	if len(servers) == 0 && wgq != nil {
		for _, a := range wgq.dns {
			servers = append(servers, a.String())
		}
		if len(search) == 0 {
			search = wgq.dnsSearch
		}
	}
	seen := map[netip.Addr]bool{}
	for i, sv := range servers {
		key := fmt.Sprintf("dns.servers[%d]", i)
		if len(s.Servers) == 0 {
			key = "wireguard.configFile"
		}
		a, ok := ParseIPLiteral(sv)
		if !ok {
			c.errorf(key, "must be a literal IPv4 or IPv6 address (got %q)", sv)
			continue
		}
		if a.Is6() && !a.Is4In6() && !n.IPv6 {
			c.errorf(key, "IPv6 resolver %s cannot be used while ipv6.mode is \"disable\"", a)
			continue
		}
		if seen[a] {
			c.errorf(key, "duplicate resolver %s", a)
			continue
		}
		seen[a] = true
		n.DNS.Servers = append(n.DNS.Servers, a)
	}
	if n.DNS.Mode == plan.DNSStrict && len(servers) == 0 && !c.configFileFailed {
		c.errorf("dns.servers", "must list at least one resolver reachable through the tunnel (strict DNS pins name resolution to it)")
	}
	if len(n.DNS.Servers) > 3 {
		if len(s.Servers) == 0 {
			// From a provider file the admin cannot easily edit: the same
			// as import-wg-quick, the first 3 are used and the rest named.
			c.warnf("wireguard.configFile", "the provider file lists %d resolvers; the C library uses only 3, so only %s are used (not %s)", len(n.DNS.Servers), joinAddrs(n.DNS.Servers[:3]), joinAddrs(n.DNS.Servers[3:]))
			n.DNS.Servers = n.DNS.Servers[:3]
		} else {
			c.errorf("dns.servers", "lists %d resolvers; the C library uses only the first 3, so the rest would be allowed through the firewall but never used", len(n.DNS.Servers))
		}
	}
	for i, dom := range search {
		if !ValidSearchDomain(dom) {
			c.errorf(fmt.Sprintf("dns.search[%d]", i), "must be a domain-style search suffix (valid labels, no empty labels, no whitespace): %q", dom)
			continue
		}
		n.DNS.Search = append(n.DNS.Search, strings.TrimSuffix(dom, "."))
	}
	if c.ha && n.DNS.Mode != plan.DNSStrict {
		c.errorf("dns.mode", "highAssurance requires dns.mode \"strict\"")
	}
	if n.DNS.AllowHostResolverIPC {
		if c.ha {
			c.errorf("dns.allowHostResolverIPC", "highAssurance rejects allowHostResolverIPC: host resolver IPC resolves names over the host's network")
		} else if n.DNS.Mode == plan.DNSStrict {
			c.warnf("dns.allowHostResolverIPC", "host resolver IPC (nscd, D-Bus) stays reachable: names may be resolved over the host's network")
		}
	}
}

func joinAddrs(as []netip.Addr) string {
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = a.String()
	}
	return strings.Join(ss, ", ")
}

func (c *compiler) ports(key string, in []int) []uint16 {
	set := map[uint16]bool{}
	for i, p := range in {
		if p < 1 || p > 65535 {
			c.errorf(fmt.Sprintf("%s[%d]", key, i), "port must be between 1 and 65535 (got %d)", p)
			continue
		}
		if set[uint16(p)] {
			c.warnf(fmt.Sprintf("%s[%d]", key, i), "duplicate port %d", p)
		}
		set[uint16(p)] = true
	}
	out := make([]uint16, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	if len(out) == 0 {
		return nil
	}
	return out
}

func (c *compiler) compileEgress(n *plan.Namespace) {
	s := &c.d.schema.Egress
	def := plan.EgressAllowAllTunnel
	if c.ha {
		def = plan.EgressAllowList
	}
	n.Egress.Mode = c.enum("egress.mode", s.Mode, def, plan.EgressAllowAllTunnel, plan.EgressAllowList)
	n.Egress.AllowEssentialICMP = boolean(s.AllowEssentialIcmp, true)
	var cidrs []netip.Prefix
	for i, raw := range s.AllowedCidrs {
		key := fmt.Sprintf("egress.allowedCidrs[%d]", i)
		p, ok := ParseCIDR(raw)
		if !ok {
			c.errorf(key, "must be a literal IPv4/IPv6 CIDR or address (got %q)", raw)
			continue
		}
		if p.Addr().Is6() && !n.IPv6 {
			c.errorf(key, "IPv6 CIDR %s cannot be allowed while ipv6.mode is \"disable\"", raw)
			continue
		}
		if p.Masked() != p {
			c.warnf(key, "%s has host bits set; it is used as %s", raw, p.Masked())
		}
		if c.ha && p.Bits() == 0 {
			c.errorf(key, "highAssurance requires destination-constrained egress; %s allows every destination", raw)
		}
		cidrs = append(cidrs, p.Masked())
	}
	merged, overlaps := MergePrefixes(cidrs)
	if overlaps {
		c.warnf("egress.allowedCidrs", "overlapping or adjacent CIDRs were merged into %d ranges", len(merged))
	}
	if c.ha && n.Egress.Mode != plan.EgressAllowList {
		c.errorf("egress.mode", "highAssurance requires egress.mode \"allowList\"")
	}
	tcp := c.ports("egress.allowedTcpPorts", s.AllowedTCPPorts)
	udp := c.ports("egress.allowedUdpPorts", s.AllowedUDPPorts)
	if n.Egress.Mode == plan.EgressAllowAllTunnel {
		if len(s.AllowedCidrs)+len(s.AllowedTCPPorts)+len(s.AllowedUDPPorts) > 0 {
			c.errorf("egress.mode", "allowAllTunnel allows every destination through the tunnel, so allowedCidrs/allowedTcpPorts/allowedUdpPorts would have no effect; set egress.mode: allowList to enforce them")
		}
		return
	}
	n.Egress.AllowedCIDRs = merged
	n.Egress.AllowedTCPPorts = tcp
	n.Egress.AllowedUDPPorts = udp
	if c.ha && len(s.AllowedCidrs) == 0 {
		c.errorf("egress.allowedCidrs", "highAssurance requires a non-empty allowedCidrs so egress stays destination-constrained")
	}
	if len(merged)+len(tcp)+len(udp) == 0 {
		c.warnf("egress.mode", "allowList with no CIDRs and no ports: only DNS to the configured resolvers can leave the namespace")
	}
}

// MergePrefixes sorts, dedupes and merges overlapping prefixes (a prefix
// contained in another disappears). It reports whether anything was merged.
// nftables interval sets reject overlapping elements, which broke the
// reference at run time; merging at compile time makes that impossible.
func MergePrefixes(in []netip.Prefix) ([]netip.Prefix, bool) {
	ps := append([]netip.Prefix(nil), in...)
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Addr().Is4() != b.Addr().Is4() {
			return a.Addr().Is4()
		}
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	var out []netip.Prefix
	merged := false
	for _, p := range ps {
		if len(out) > 0 {
			last := out[len(out)-1]
			if last.Addr().Is4() == p.Addr().Is4() && last.Contains(p.Addr()) && last.Bits() <= p.Bits() {
				merged = true
				continue
			}
		}
		out = append(out, p)
	}
	return out, merged
}

var unitNameRe = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?\.(service|socket)$`)

// ValidUnitName accepts concrete (non-template) service and socket names.
func ValidUnitName(u string) bool {
	return len(u) <= 255 && unitNameRe.MatchString(u)
}

var addressFamilyRe = regexp.MustCompile(`^AF_[A-Z0-9]+$`)

func (c *compiler) compileUnits(n *plan.Namespace) {
	s := &c.d.schema
	seen := map[string]bool{}
	do := func(list []unitSchema, kind, suffix string) []plan.Unit {
		var out []plan.Unit
		for i, u := range list {
			key := fmt.Sprintf("%s[%d]", kind, i)
			name := str(u.Unit, "")
			if name == "" {
				c.errorf(key+".unit", "is required: the unit to confine, e.g. \"qbittorrent%s\"", suffix)
				continue
			}
			c.units = append(c.units, name)
			if !ValidUnitName(name) || !strings.HasSuffix(name, suffix) {
				c.errorf(key+".unit", "must be a %s unit name like \"name%s\" or \"name@instance%s\" (got %q)", strings.TrimPrefix(suffix, "."), suffix, suffix, name)
				continue
			}
			if seen[name] {
				c.errorf(key+".unit", "%s is listed twice", name)
				continue
			}
			seen[name] = true
			pu := plan.Unit{Name: name}
			def := plan.HardeningBaseline
			if c.ha {
				def = plan.HardeningStrict
			}
			pu.HardeningProfile = c.enum(key+".hardeningProfile", u.HardeningProfile, def, plan.HardeningBaseline, plan.HardeningStrict)
			pu.RestrictBind = boolean(u.RestrictBind, false)
			pu.AllowRootInHighAssurance = boolean(u.AllowRootInHighAssurance, false) || boolean(u.AllowRoot, false)
			if u.AllowRootInHighAssurance != nil {
				c.warnf(key+".allowRootInHighAssurance", "is now allowRoot (root services need it in every profile); rename it")
			}
			pu.InstalledLater = boolean(u.InstalledLater, false)
			pu.AllowSystemBus = boolean(u.AllowSystemBus, false)
			if c.ha && pu.AllowSystemBus {
				c.errorf(key+".allowSystemBus", "highAssurance rejects allowSystemBus: the system bus can start units outside the namespace")
			}
			if kind == "services" {
				c.compileServiceHardening(key, u, &pu)
			}
			for j, af := range u.ExtraAddressFamilies {
				if !addressFamilyRe.MatchString(af) {
					c.errorf(fmt.Sprintf("%s.extraAddressFamilies[%d]", key, j), "must be an address family name like AF_NETLINK (got %q)", af)
					continue
				}
				pu.ExtraAddressFamilies = append(pu.ExtraAddressFamilies, af)
			}
			if kind == "sockets" && (u.HardeningProfile != nil || u.RestrictBind != nil || len(u.ExtraAddressFamilies) > 0 || u.AllowRootInHighAssurance != nil ||
				u.AllowRoot != nil || len(u.ReadWritePaths) > 0 || len(u.ExtraCapabilities) > 0 || u.App != nil || u.AllowSystemBus != nil) {
				c.errorf(key, "hardeningProfile, restrictBind, allowRoot, readWritePaths, extraCapabilities, app, allowSystemBus and extraAddressFamilies apply to services; set them on the service the socket activates")
			}
			out = append(out, pu)
		}
		return out
	}
	n.Services = do(s.Services, "services", ".service")
	n.Sockets = do(s.Sockets, "sockets", ".socket")
	if len(n.Services)+len(n.Sockets) == 0 && len(s.Services)+len(s.Sockets) == 0 {
		c.warnf("services", "no services or sockets are confined; the namespace and tunnel are still built")
	}
	c.checkUnitFiles(n)
}

func dedupeStrings(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
