// Package wgimport implements `vpn-confinement import-wg-quick`: it turns a
// VPN provider's wg-quick file into a namespace file plus 0600 key files,
// so the admin starts from a file that validates and that says, in
// comments, what was decided (IPv6, hostname endpoints) and why.
//
// Keys are written to key files and referenced; they never appear in the
// YAML, in messages or in errors (wgquick.Secret prints as "(hidden)").
package wgimport

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/validate"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/wgquick"
)

// Options of one import.
type Options struct {
	File      string   // the provider's wg-quick file
	Name      string   // namespace name; "" derives it from File
	Dir       string   // configuration directory
	IPv6      string   // "disable" (default) or "tunnel"
	Services  []string // units to confine
	Publish   []string // publish[].listen entries (host address and port)
	DNS       []string // resolvers replacing the file's DNS =
	Interface string   // "" picks wg0 or the first free wgN
	UnitPath  []string // for the validation's unit-file checks
	StateDir  string
}

// Result says what was written and what the admin should know.
type Result struct {
	Name     string
	YAMLPath string
	KeyPath  string
	PSKPaths []string
	// Notes are things that were not imported or were decided, each a
	// line for the admin ("file:line: ..." where a line is known).
	Notes []string
	// Report is the validation of the written file.
	Report *validate.Report
}

// Error is a refusal with several located reasons (problems in the
// provider file, or validation errors of the would-be result).
type Error struct {
	Msg   string
	Lines []string
}

func (e *Error) Error() string {
	if len(e.Lines) == 0 {
		return e.Msg
	}
	return e.Msg + ":\n  " + strings.Join(e.Lines, "\n  ")
}

// Import does the conversion; nothing is written unless the result
// validates together with the other files of Dir.
func Import(o Options) (*Result, error) {
	if o.Dir == "" {
		o.Dir = generator.DefaultConfigDir
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	src, err := filepath.Abs(o.File)
	if err != nil {
		return nil, err
	}
	f, problems, err := wgquick.ParseFile(src)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.File, err)
	}
	if len(problems) > 0 {
		lines := strings.Split(wgquick.Join(src, problems).Error(), "\n")
		return nil, &Error{Msg: fmt.Sprintf("%s is not a usable wg-quick file (%s); nothing was written", o.File, plural(len(problems), "problem")), Lines: lines}
	}
	name := o.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))
		if !config.ValidNamespaceName(name) {
			return nil, fmt.Errorf("cannot use %q (from the file name) as namespace name: it must be 1-64 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit; pass --name", name)
		}
	} else if !config.ValidNamespaceName(name) {
		return nil, fmt.Errorf("--name %q is not a valid namespace name: 1-64 characters of [A-Za-z0-9_.-], beginning and ending with a letter or digit", name)
	}
	switch o.IPv6 {
	case "", "disable", "tunnel":
	default:
		return nil, fmt.Errorf(`--ipv6 must be "disable" or "tunnel" (got %q)`, o.IPv6)
	}
	for _, u := range o.Services {
		if !config.ValidUnitName(u) || !strings.HasSuffix(u, ".service") {
			return nil, fmt.Errorf("--service %q is not a service unit name like name.service", u)
		}
	}
	if o.Interface != "" && !config.ValidInterfaceName(o.Interface) {
		return nil, fmt.Errorf("--interface %q is not a valid interface name (1-15 characters of [A-Za-z0-9_.-])", o.Interface)
	}

	res := &Result{
		Name:     name,
		YAMLPath: filepath.Join(dir, name+".yaml"),
		KeyPath:  filepath.Join(dir, "keys", name+".key"),
	}
	d, err := build(f, o, src, dir, name, res)
	if err != nil {
		return nil, err
	}
	if err := refuseExisting(dir, name, res); err != nil {
		return nil, err
	}
	if o.Interface == "" {
		d.iface, err = freeInterface(dir)
		if err != nil {
			return nil, err
		}
	}
	yaml := d.render()
	if err := prevalidate(dir, name, yaml, o); err != nil {
		return nil, err
	}
	if err := write(dir, res, f, yaml); err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, keysDirNote(dir)...)
	res.Report, err = validate.Run(validate.Options{Targets: []string{res.YAMLPath}, UnitPath: o.UnitPath, StateDir: o.StateDir})
	if err != nil {
		return res, fmt.Errorf("validate the result: %w", err)
	}
	return res, nil
}

// build takes the decisions: what is copied, what is left out (and said
// so), and what is needed for the result to validate.
func build(f *wgquick.File, o Options, src, dir, name string, res *Result) (*doc, error) {
	tunnel6 := o.IPv6 == "tunnel"
	base := filepath.Base(src)
	d := &doc{name: name, source: src, dir: dir, keyPath: res.KeyPath, ipv6Tunnel: tunnel6, iface: o.Interface}
	note := func(line int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if line > 0 {
			msg = fmt.Sprintf("%s:%d: %s", base, line, msg)
		}
		res.Notes = append(res.Notes, msg)
	}
	const v6note = "IPv6: needs ipv6.mode: tunnel"
	is6 := func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }
	var dropped6 []string
	keep := func(a netip.Addr, shown string) item {
		if is6(a) {
			d.has6 = true
			if !tunnel6 {
				dropped6 = append(dropped6, shown)
				return item{v: shown, commented: true, note: v6note}
			}
		}
		return item{v: shown}
	}

	for _, s := range f.Interface.Unsupported {
		note(s.Line, "%s is a wg-quick-only key: not imported and never executed (vpn-confinement builds routes, DNS and the kill switch itself)", s.Key)
	}

	// DNS: the provider's unless --dns replaces it.
	if len(o.DNS) > 0 {
		d.dnsFromCL = true
		for _, s := range o.DNS {
			a, ok := config.ParseIPLiteral(s)
			if !ok {
				return nil, fmt.Errorf("--dns %q is not an IP address", s)
			}
			if is6(a) && !tunnel6 {
				return nil, fmt.Errorf("--dns %s is an IPv6 resolver; it needs --ipv6 tunnel", a)
			}
			d.dns = append(d.dns, item{v: a.String()})
		}
	} else {
		for _, a := range f.Interface.DNS {
			d.dns = append(d.dns, keep(a.Value, a.Value.String()))
		}
	}
	for _, s := range f.Interface.DNSSearch {
		if !config.ValidSearchDomain(s.Value) {
			note(s.Line, "DNS entry %q is neither an address nor a valid search domain: not imported", s.Value)
			continue
		}
		d.search = append(d.search, item{v: s.Value})
	}
	n := 0
	for i := range d.dns {
		if d.dns[i].commented {
			continue
		}
		if n++; n > 3 {
			d.dns[i] = item{v: d.dns[i].v, commented: true, note: "the C library uses only 3 resolvers"}
			note(0, "resolver %s left out: the C library uses only the first 3", d.dns[i].v)
		}
	}
	if len(active(d.dns)) == 0 {
		if len(d.dns) > 0 {
			return nil, fmt.Errorf("%s names only IPv6 resolvers, and IPv6 is disabled: pass --ipv6 tunnel, or --dns ADDR with an IPv4 resolver reachable through the tunnel; nothing was written", base)
		}
		return nil, fmt.Errorf("%s has no DNS = line; strict DNS needs a resolver reachable through the tunnel: pass --dns ADDR (your provider documents it); nothing was written", base)
	}

	for _, a := range f.Interface.Address {
		d.addresses = append(d.addresses, keep(a.Value.Addr(), a.Value.String()))
	}
	if len(active(d.addresses)) == 0 {
		if len(d.addresses) > 0 {
			return nil, fmt.Errorf("%s has only IPv6 tunnel addresses, and IPv6 is disabled: pass --ipv6 tunnel; nothing was written", base)
		}
		return nil, fmt.Errorf("%s has no Address = line: the tunnel needs an address (your provider assigns it); nothing was written", base)
	}
	d.mtu = f.Interface.MTU.Value
	d.port = int(f.Interface.ListenPort.Value)
	d.fwMark = f.Interface.FwMark.Value
	// ProtonVPN writes "# NAT-PMP (Port Forwarding) = on" into files made
	// for servers and keys with port forwarding.
	if raw, err := os.ReadFile(src); err == nil && natpmpOnRe.Match(raw) {
		d.natpmp = true
		note(0, "the provider file says NAT-PMP (Port Forwarding) = on: portForwarding with protocol natpmp is set up (gateway: the tunnel address with its last byte 1)")
	}

	for i, fp := range f.Peers {
		p := peer{publicKey: fp.PublicKey.Value, keepalive: int(fp.PersistentKeepalive.Value)}
		if !fp.PresharedKey.Value.IsZero() {
			p.pskPath = filepath.Join(dir, "keys", fmt.Sprintf("%s-peer%d.psk", name, i+1))
		}
		if fp.Endpoint.IsSet() {
			host, _, isHost, err := config.ParseEndpoint(fp.Endpoint.Value)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: Endpoint %q: %v; nothing was written", base, fp.Endpoint.Line, fp.Endpoint.Value, err)
			}
			if isHost {
				d.hostnames = true
				note(fp.Endpoint.Line, "endpoint %s is a hostname: allowHostnameEndpoints is set, and it is resolved on the host every %d s", host, HostnameRefreshSeconds)
			}
			p.endpoint = fp.Endpoint.Value
		}
		for _, a := range fp.AllowedIPs {
			p.allowed = append(p.allowed, keep(a.Value.Addr(), a.Value.String()))
		}
		if len(active(p.allowed)) == 0 {
			p.commented = true
			note(fp.Line, "peer %d routes only IPv6, which is disabled: left out (as a comment)", i+1)
		}
		if p.commented && p.pskPath != "" {
			p.pskPath = "" // no key file for a peer that is not used
		}
		if p.pskPath != "" {
			res.PSKPaths = append(res.PSKPaths, p.pskPath)
		}
		d.peers = append(d.peers, p)
	}
	used := 0
	for _, p := range d.peers {
		if !p.commented {
			used++
		}
	}
	if used == 0 {
		return nil, fmt.Errorf("every peer of %s routes only IPv6, which is disabled: pass --ipv6 tunnel; nothing was written", base)
	}
	if tunnel6 && !d.has6 {
		return nil, fmt.Errorf("--ipv6 tunnel, but %s configures no IPv6 address and no IPv6 AllowedIPs; nothing was written", base)
	}
	if len(dropped6) > 0 {
		note(0, "IPv6 left out (ipv6.mode: disable): %s; they are comments in %s.yaml, use --ipv6 tunnel to import them", strings.Join(dropped6, ", "), name)
	}
	d.services, d.publish = o.Services, o.Publish
	return d, nil
}

// refuseExisting never overwrites: an existing namespace file or key file
// is the admin's, and a second NAME.yml would invalidate both.
func refuseExisting(dir, name string, res *Result) error {
	paths := []string{res.YAMLPath, filepath.Join(dir, name+".yml"), res.KeyPath}
	paths = append(paths, res.PSKPaths...)
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite it (choose another --name, or remove it first); nothing was written", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// freeInterface picks wg0, or the first wgN no other namespace uses
// (interface names must be unique across files).
func freeInterface(dir string) (string, error) {
	out, err := generator.Generate(generator.Options{ConfigDir: dir, UnitPath: []string{}})
	if err != nil {
		return "", fmt.Errorf("read %s: %w", dir, err)
	}
	used := map[string]bool{}
	for _, r := range out.Results {
		if r.Plan != nil {
			used[r.Plan.WireGuard.Interface] = true
		}
	}
	for i := 0; ; i++ {
		if name := fmt.Sprintf("wg%d", i); !used[name] {
			return name, nil
		}
	}
}

var natpmpOnRe = regexp.MustCompile(`(?mi)^\s*#\s*NAT-PMP \(Port Forwarding\)\s*=\s*on\s*$`)

// prevalidate compiles the would-be file together with the files already
// in dir, in a scratch directory of links, with the generator itself; the
// scratch path is rewritten to dir in messages.
func prevalidate(dir, name string, yaml []byte, o Options) error {
	tmp, err := os.MkdirTemp("", "vpnc-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if _, ok := config.NameFromPath(e.Name()); ok && !e.IsDir() {
			if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, name+".yaml"), yaml, 0o600); err != nil {
		return err
	}
	rep, err := validate.Run(validate.Options{Targets: []string{filepath.Join(tmp, name+".yaml")}, UnitPath: o.UnitPath, StateDir: o.StateDir})
	if err != nil {
		return err
	}
	if f := rep.Files[0]; !f.Valid {
		// Messages about the would-be file must not point into a file that
		// was never written: name it as such and show its numbered text.
		would := filepath.Join(tmp, name+".yaml")
		var lines []string
		own := false
		for _, d := range f.Errors {
			own = own || d.File == would
			l := strings.ReplaceAll(d.String(), would, "(not written) "+name+".yaml")
			lines = append(lines, strings.ReplaceAll(l, tmp, dir))
		}
		if own {
			lines = append(lines, "the file that would have been written:")
			for i, l := range strings.Split(strings.TrimSuffix(string(yaml), "\n"), "\n") {
				lines = append(lines, fmt.Sprintf("%4d  %s", i+1, l))
			}
		}
		return &Error{Msg: "the imported file would not validate; nothing was written", Lines: lines}
	}
	return nil
}

func keysDirNote(dir string) []string {
	fi, err := os.Stat(filepath.Join(dir, "keys"))
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s has mode %04o: other users can list it; chmod 0700 it", filepath.Join(dir, "keys"), fi.Mode().Perm())}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
