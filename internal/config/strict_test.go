package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
	"go.yaml.in/yaml/v3"
)

// strictShapes are files whose head is valid but whose tail YAML's
// single-document reader drops: each must be unparsable (fail closed: its
// units blocked), with a diagnostic at the line where the problem starts.
var strictShapes = []struct {
	name, src string
	line      int
	msg       string
}{
	{"second document holding the services", strings.Replace(base, "services:", "---\nservices:", 1), 10, "a second YAML document starts here"},
	{"second document after the services", base + "---\negress:\n  mode: allowList\n", 12, "a second YAML document starts here"},
	{"content after a document end marker", base + "...\negress:\n  mode: allowList\n", 0, "did not find expected <document start>"},
	{"syntax error after the first document", base + "---\negress: [\n", 0, ""},
	{"misindented tail block", base + "  egress: {mode: allowList, allowedCidrs: [1.1.1.1]}\n x: 1\n", 0, ""},
	{"first line indented", " " + strings.Replace(base, "\n", "\n", 1), 3, "indentation: this line starts in column 1, left of the first key"},
	{"tab in indentation", strings.Replace(base, "  servers:", "\tservers:", 1), 2, "a tab character in the indentation"},
	{"tab after a list dash", strings.Replace(base, "  - unit:", "  -\tunit:", 1), 11, "a tab character in the indentation"},
	{"key indented one more than its siblings", strings.Replace(base, "  addresses:", "   addresses:", 1), 5, "indented"},
}

func TestStrictYAML(t *testing.T) {
	for _, tc := range strictShapes {
		t.Run(tc.name, func(t *testing.T) {
			r := compile(t, tc.src)
			if r.Plan != nil || r.Parsed {
				t.Fatalf("accepted (parsed=%v): a truncated file must never compile; diags:\n%s", r.Parsed, dump(r.Diags))
			}
			if !r.Diags.HasErrors() {
				t.Fatal("no error")
			}
			d := r.Diags.Errors()[0]
			if d.Line == 0 {
				t.Errorf("error without a line: %v", d)
			}
			if tc.line != 0 && d.Line != tc.line {
				t.Errorf("error at line %d, want %d: %v", d.Line, tc.line, d)
			}
			if !strings.Contains(d.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", d.Message, tc.msg)
			}
			// Fail closed: the units named in the file are still known,
			// so the generator blocks them.
			if !contains(r.Units, "app.service") {
				t.Errorf("units %v: app.service would not be blocked", r.Units)
			}
		})
	}
}

func TestStrictYAMLAcceptsOneDocument(t *testing.T) {
	for name, src := range map[string]string{
		"leading document marker":  "---\n" + base,
		"trailing document end":    base + "...\n",
		"comments after the end":   base + "# the end\n\n",
		"comment-only indentation": base + "   # an indented comment\n",
	} {
		t.Run(name, func(t *testing.T) {
			if r := compile(t, src); r.Plan == nil {
				t.Fatalf("rejected:\n%s", dump(r.Diags))
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// lastContentLine is the last line of src that is not blank, a comment or
// a document marker.
func lastContentLine(src []byte) int {
	last := 0
	for i, l := range strings.Split(string(src), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" || t == "..." {
			continue
		}
		last = i + 1
	}
	return last
}

// maxNodeLine is the last line any node of the tree starts on, and whether
// the tree holds a block scalar (whose text runs past its start line).
func maxNodeLine(n *yaml.Node) (int, bool) {
	m, block := n.Line, n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	for _, c := range n.Content {
		l, b := maxNodeLine(c)
		m, block = max(m, l), block || b
	}
	return m, block
}

// checkNoTruncation is FuzzCompile's invariant against silent truncation:
// when a file compiles, the node tree it was compiled from reaches its
// last line of content.
func checkNoTruncation(t *testing.T, src []byte) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		t.Fatalf("compiled, but yaml cannot parse it: %v", err)
	}
	got, block := maxNodeLine(&root)
	if want := lastContentLine(src); !block && got < want {
		t.Fatalf("compiled from a tree ending at line %d, but the file has content up to line %d:\n%s", got, want, src)
	}
}

func TestUnitTypoIsAnError(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"qbittorrent-nox@.service", "transmission-daemon.service", "nginx.service"} {
		if err := os.WriteFile(filepath.Join(dir, u), []byte("[Service]\nExecStart=/bin/true\nUser=x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := Env{Units: unitfile.Search{Path: []string{dir}}}
	for _, tc := range []struct{ unit, extra, want string }{
		{"qbitorrent.service", "", "did you mean an instance of the template qbittorrent-nox@.service, such as qbittorrent-nox@NAME.service?"},
		{"qbittorrent.service", "", "qbittorrent-nox@NAME.service"},
		{"transmision-daemon.service", "", "did you mean transmission-daemon.service?"},
		{"ngnix.service", "", "did you mean nginx.service?"},
		{"zzzz.service", "", "is not installed (not found in the unit search path); if it will be installed later, add installedLater: true"},
	} {
		src := strings.Replace(base, "app.service", tc.unit, 1) + tc.extra
		r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte(src), env)
		CompileAll([]*Result{r})
		if r.Plan != nil || !strings.Contains(dump(r.Diags.Errors()), tc.want) {
			t.Errorf("%s: want an error containing %q, got:\n%s", tc.unit, tc.want, dump(r.Diags))
		}
	}
	src := strings.Replace(base, "app.service", "later.service\n    installedLater: true", 1)
	r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte(src), env)
	CompileAll([]*Result{r})
	if r.Plan == nil || !strings.Contains(dump(r.Diags.Warnings()), "not installed yet") {
		t.Errorf("installedLater: want a valid file with a warning, got:\n%s", dump(r.Diags))
	}
}

func TestPublishPlan(t *testing.T) {
	src := base + "publish:\n  - listen: 8080\n  - listen: 0.0.0.0:9091\n    port: 9091\n  - listen: \"[::1]:8112\"\n    unit: app.service\n"
	r := compile(t, src)
	if r.Plan == nil {
		t.Fatalf("rejected:\n%s", dump(r.Diags))
	}
	want := []plan.Publish{
		{Unit: "vpn-publish-ns-8080", Listen: []string{"127.0.0.1:8080", "[::1]:8080"}, Port: 8080},
		{Unit: "vpn-publish-ns-8112", Listen: []string{"[::1]:8112"}, Port: 8112, Activate: "app.service"},
		{Unit: "vpn-publish-ns-9091", Listen: []string{"0.0.0.0:9091"}, Port: 9091, LAN: true},
	}
	if d := cmp.Diff(want, r.Plan.Publish); d != "" {
		t.Errorf("publish (-want +got):\n%s", d)
	}
}

func TestPublishCollisionAcrossFiles(t *testing.T) {
	a := CompileFile("/etc/vpn-confinement.d/a.yaml", []byte(base+"publish:\n  - listen: 0.0.0.0:8080\n"), Env{})
	b2 := strings.Replace(strings.Replace(base, "app.service", "other.service", 1), "privateKeyFile", "interface: wg1\n  privateKeyFile", 1)
	b := CompileFile("/etc/vpn-confinement.d/b.yaml", []byte(b2+"publish:\n  - listen: 127.0.0.1:8080\n"), Env{})
	CompileAll([]*Result{a, b})
	for _, r := range []*Result{a, b} {
		if r.Plan != nil || !strings.Contains(dump(r.Diags.Errors()), "a host address and port can be published once") {
			t.Errorf("%s: want a collision error, got:\n%s", r.File, dump(r.Diags))
		}
	}
}

func TestLifecycleDefaults(t *testing.T) {
	r := compile(t, strings.Replace(base, "allowedIPs: [0.0.0.0/0]", "allowedIPs: [0.0.0.0/0]\n      persistentKeepalive: 25", 1))
	if r.Plan == nil {
		t.Fatalf("rejected:\n%s", dump(r.Diags))
	}
	if r.Plan.OnTunnelLoss != plan.OnTunnelLossBlock || r.Plan.Watchdog.StallAfterSeconds != 205 || r.Plan.Watchdog.FirstHandshakeSeconds != 15 {
		t.Errorf("lifecycle %q %+v", r.Plan.OnTunnelLoss, r.Plan.Watchdog)
	}
	r = compile(t, strings.Replace(base, "      endpoint: 198.51.100.7:51820\n", "      endpoints: [198.51.100.7:51820, 198.51.100.8:51821]\n", 1))
	if r.Plan == nil {
		t.Fatalf("rejected:\n%s", dump(r.Diags))
	}
	p := r.Plan.WireGuard.Peers[0]
	if *p.Endpoint != (plan.Endpoint{Host: "198.51.100.7", Port: 51820}) || len(p.Failover) != 1 || p.Failover[0] != (plan.Endpoint{Host: "198.51.100.8", Port: 51821}) {
		t.Errorf("endpoints %+v %+v", p.Endpoint, p.Failover)
	}
}

func TestPortForwardingPlan(t *testing.T) {
	r := compile(t, base+"portForwarding:\n  protocol: natpmp\n  apps:\n    - type: qbittorrent\n      url: http://127.0.0.1:8080\n      credentialsFile: /etc/vpn-confinement.d/keys/qbt\n  hook:\n    unit: port-hook.service\n")
	if r.Plan == nil {
		t.Fatalf("rejected:\n%s", dump(r.Diags))
	}
	want := &plan.PortForwarding{Protocol: "natpmp", Gateway: netip.MustParseAddr("10.64.0.1"),
		Apps: []plan.App{{Type: "qbittorrent", URL: "http://127.0.0.1:8080", CredentialsFile: "/etc/vpn-confinement.d/keys/qbt"}}, HookUnit: "port-hook.service"}
	if d := cmp.Diff(want, r.Plan.PortForwarding, netipCmp...); d != "" {
		t.Errorf("portForwarding (-want +got):\n%s", d)
	}
}
