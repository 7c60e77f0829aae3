package schemacheck

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/wgimport"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

var schemaFile = filepath.Join(testutil.RepoRoot(), "schema", "vpn-confinement.schema.json")

// manDescriptions takes each key's description from vpn-confinement.d(5),
// the documentation the schema's hover texts must agree with.
func manDescriptions(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "man", "vpn-confinement.d.5.md"))
	if err != nil {
		t.Fatal(err)
	}
	keyRe := regexp.MustCompile(`\*\*([A-Za-z0-9.\[\]]+)\*\*`)
	strip := strings.NewReplacer("**", "", "*", "")
	out := map[string]string{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], ":   ") || !strings.HasPrefix(lines[i], "**") {
			continue
		}
		var keys []string
		for _, m := range keyRe.FindAllStringSubmatch(lines[i], -1) {
			keys = append(keys, m[1])
		}
		var text []string
		for j := i + 1; j < len(lines) && (strings.HasPrefix(lines[j], ":   ") || strings.HasPrefix(lines[j], "    ")); j++ {
			text = append(text, strings.TrimSpace(strings.TrimPrefix(lines[j], ":")))
		}
		d := strings.Join(strings.Fields(strip.Replace(strings.Join(text, " "))), " ")
		for _, k := range keys {
			out[k] = d
		}
	}
	return out
}

func render(t *testing.T) []byte {
	t.Helper()
	b, err := json.MarshalIndent(config.JSONSchema(manDescriptions(t)), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestSchemaFileUpToDate: schema/vpn-confinement.schema.json is what
// config.JSONSchema generates (go test ./internal/cli/schemacheck -update
// rewrites it), and every key has a description.
func TestSchemaFileUpToDate(t *testing.T) {
	want := render(t)
	if *testutil.Update {
		os.MkdirAll(filepath.Dir(schemaFile), 0o755)
		if err := os.WriteFile(schemaFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s is stale; run go test ./internal/cli/schemacheck -update (-generated +file):\n%s", schemaFile, d)
	}
	desc := manDescriptions(t)
	for _, k := range config.SchemaKeys() {
		if desc[k] == "" {
			t.Errorf("no description for %s", k)
		}
	}
}

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal(render(t), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func decodeYAML(t *testing.T, b []byte) (any, bool) {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, false
	}
	return doc, true
}

// TestFixturesAgree: every file the generator accepts in testdata/generator
// (and every file import-wg-quick writes) conforms to the schema; files
// the schema rejects are ones the validator rejects too.
func TestFixturesAgree(t *testing.T) {
	s := loadSchema(t)
	checked := 0
	for _, name := range gentest.Cases(t) {
		c := gentest.Prepare(t, name)
		opts := generator.Options{ConfigDir: c.ConfigDir, StateDir: c.StateDir, UnitPath: []string{}}
		if c.UnitDir != "" {
			opts.UnitPath = []string{c.UnitDir}
		}
		out, err := generator.Generate(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Results {
			b, _ := os.ReadFile(r.File)
			doc, ok := decodeYAML(t, b)
			if !ok {
				if r.Plan != nil {
					t.Errorf("%s/%s: valid for the generator but not YAML", name, filepath.Base(r.File))
				}
				continue
			}
			errs := Validate(s, doc)
			if r.Plan != nil && len(errs) > 0 {
				t.Errorf("%s/%s is valid but the schema rejects it: %v", name, filepath.Base(r.File), errs)
			}
			if r.Plan == nil && len(errs) > 0 && !r.Diags.HasErrors() {
				t.Errorf("%s/%s: schema errors without validator errors: %v", name, filepath.Base(r.File), errs)
			}
			checked++
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"proton.conf", "mullvad.conf", "ivpn.conf"} {
		res, err := wgimport.Import(wgimport.Options{File: filepath.Join(testutil.RepoRoot(), "internal", "wgquick", "testdata", f), Dir: dir, UnitPath: []string{}, Services: []string{"app-" + f[:4] + ".service"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(res.YAMLPath)
		doc, _ := decodeYAML(t, b)
		if errs := Validate(s, doc); len(errs) > 0 {
			t.Errorf("imported %s: %v", f, errs)
		}
		checked++
	}
	if checked < 15 {
		t.Errorf("only %d files checked", checked)
	}
}

// objectPaths lists the key paths of every mapping in doc, plus the
// schema mappings the doc leaves out, so an unknown key is tried at every
// level.
func objectPaths(doc any, path []any, out *[][]any) {
	switch x := doc.(type) {
	case map[string]any:
		*out = append(*out, append([]any{}, path...))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			objectPaths(x[k], append(path, k), out)
		}
	case []any:
		for i, e := range x {
			objectPaths(e, append(path, i), out)
		}
	}
}

func at(doc any, path []any) map[string]any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			doc = doc.(map[string]any)[k]
		case int:
			doc = doc.([]any)[k]
		}
	}
	return doc.(map[string]any)
}

// TestUnknownKeysRejectedByBoth adds an unknown key at every mapping of
// every valid fixture: the validator reports it and the schema rejects it.
func TestUnknownKeysRejectedByBoth(t *testing.T) {
	s := loadSchema(t)
	tried := 0
	for _, name := range gentest.Cases(t) {
		c := gentest.Prepare(t, name)
		entries, _ := os.ReadDir(c.ConfigDir)
		for _, e := range entries {
			if _, ok := config.NameFromPath(e.Name()); !ok {
				continue
			}
			p := filepath.Join(c.ConfigDir, e.Name())
			b, _ := os.ReadFile(p)
			doc, ok := decodeYAML(t, b)
			if !ok || doc == nil {
				continue
			}
			var paths [][]any
			objectPaths(doc, nil, &paths)
			for _, path := range paths {
				d, _ := decodeYAML(t, b)
				at(d, path)["bogusKey"] = 1
				mutated, err := yaml.Marshal(d)
				if err != nil {
					t.Fatal(err)
				}
				r := config.CompileFile(p, mutated, config.Env{})
				found := false
				for _, dg := range r.Diags.Errors() {
					found = found || strings.HasPrefix(dg.Message, "unknown key")
				}
				if !found {
					t.Errorf("%s at %v: the validator accepts an unknown key", e.Name(), path)
				}
				errs := Validate(s, d)
				if !strings.Contains(strings.Join(errs, "\n"), "bogusKey: unknown key") {
					t.Errorf("%s at %v: the schema accepts an unknown key: %v", e.Name(), path, errs)
				}
				tried++
			}
		}
	}
	if tried < 50 {
		t.Errorf("only %d mutations tried", tried)
	}
}

// base is a valid namespace file the rule tests modify.
const base = `dns:
  servers: [10.64.0.1]
hostLink:
  enable: true
wireguard:
  privateKeyFile: /etc/keys/k
  addresses: [10.64.0.2/32]
  endpointPinning:
    enable: true
  peers:
    - publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
      endpoint: 198.51.100.7:51820
      allowedIPs: [0.0.0.0/0]
services:
  - unit: app.service
sockets:
  - unit: app.socket
`

// set puts v at a SchemaKeys path ("wireguard.peers[].mtu"), creating
// mappings; "[]" means the first entry of the list.
func set(doc map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	cur := doc
	for i, p := range parts {
		last := i == len(parts)-1
		name, list := strings.CutSuffix(p, "[]")
		if last {
			cur[name] = v
			return
		}
		if list {
			cur = cur[name].([]any)[0].(map[string]any)
			continue
		}
		next, ok := cur[name].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[name] = next
		}
		cur = next
	}
}

// validatorKey turns a rule path into the validator's diagnostic key
// ("wireguard.peers[].x" -> "wireguard.peers[0].x").
func validatorKey(path string) string { return strings.ReplaceAll(path, "[]", "[0]") }

// TestRulesAgree: for every value rule of the schema, a value just outside
// is rejected by the schema and by the validator at that key, and values
// at the edges are accepted by both (the validator reports nothing at the
// key).
func TestRulesAgree(t *testing.T) {
	s := loadSchema(t)
	isList := func(path string) bool {
		return strings.HasSuffix(path, "Ports") || strings.HasSuffix(path, ".tcp") || strings.HasSuffix(path, ".udp") ||
			path == "dns.servers" || strings.HasSuffix(path, "extraAddressFamilies")
	}
	try := func(path string, v any) (schemaErrs []string, validatorErrs []string) {
		var doc map[string]any
		yaml.Unmarshal([]byte(base), &doc)
		// Keep the rest of the file consistent with the value, so that
		// only the rule under test can fail.
		if path != "wireguard.endpointPinning.fwMark" {
			delete(doc["wireguard"].(map[string]any), "endpointPinning")
		}
		if path == "ipv6.mode" && v == "tunnel" {
			set(doc, "wireguard.addresses", []any{"10.64.0.2/32", "fd00::2/128"})
			set(doc, "wireguard.peers[].allowedIPs", []any{"0.0.0.0/0", "::/0"})
		}
		set(doc, path, v)
		b, _ := yaml.Marshal(doc)
		r := config.CompileFile("/etc/vpn-confinement.d/ns.yaml", b, config.Env{})
		config.CompileAll([]*config.Result{r})
		key := validatorKey(path)
		for _, d := range r.Diags.Errors() {
			if d.Key == key || strings.HasPrefix(d.Key, key+"[") {
				validatorErrs = append(validatorErrs, d.String())
			}
		}
		var generic any
		yaml.Unmarshal(b, &generic)
		return Validate(s, generic), validatorErrs
	}
	for path, r := range config.SchemaRules() {
		var bad, good []any
		switch {
		case r.Enum != nil:
			bad = []any{"bogus"}
			for _, e := range r.Enum {
				good = append(good, e)
			}
		case r.Pattern != "":
			switch {
			case path == "services[].unit":
				bad, good = []any{"bad name.service", "x.timer", "a.socket"}, []any{"app.service", "a@b-1.service"}
			case path == "sockets[].unit":
				// The socket must activate a listed service (app.service).
				bad, good = []any{"bad name.socket", "x.timer", "a.service"}, []any{"app.socket"}
			case strings.HasSuffix(path, "extraAddressFamilies"):
				bad, good = []any{"inet", "AF_"}, []any{"AF_NETLINK"}
			default: // interface names
				bad, good = []any{"-bad", "abcdefghijklmnop", "a b"}, []any{"wg-x1", "abcdefghijklmno"}
			}
		case r.MaxItems > 0:
			bad = []any{[]any{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}}
			good = []any{[]any{"10.0.0.1", "10.0.0.2", "10.0.0.3"}}
		default:
			if r.Min != nil {
				bad, good = append(bad, *r.Min-1), append(good, *r.Min)
			}
			if r.Max != nil {
				bad, good = append(bad, *r.Max+1), append(good, *r.Max)
			}
		}
		wrap := func(v any) any {
			if _, already := v.([]any); !already && isList(path) {
				return []any{v}
			}
			return v
		}
		for _, v := range bad {
			se, ve := try(path, wrap(v))
			if len(se) == 0 || len(ve) == 0 {
				t.Errorf("%s = %v: schema errors %v, validator errors %v; both must reject", path, v, se, ve)
			}
		}
		for _, v := range good {
			se, ve := try(path, wrap(v))
			if len(se) > 0 || len(ve) > 0 {
				t.Errorf("%s = %v: schema errors %v, validator errors %v; both must accept", path, v, se, ve)
			}
		}
	}
}

// TestSchemaShape spot-checks the generated structure.
func TestSchemaShape(t *testing.T) {
	s := loadSchema(t)
	for _, tc := range []struct {
		doc  string
		errs string
	}{
		{"dns:\n", ""},
		{"autostart: yes\n", ""},
		{"autostart: maybe\n", "$.autostart"},
		{"autostart: 1\n", "$.autostart"},
		{"wireguard:\n  mtu: 1420.0\n", ""},
		{"wireguard:\n  mtu: 1420.5\n", "$.wireguard.mtu"},
		{"wireguard:\n  peers: [{endpoint: 1.2.3.4:5}]\n", "missing required key publicKey"},
		{"services: [~]\n", "$.services[0]"},
		{"sockets: [{unit: a.socket, restrictBind: true}]\n", "restrictBind: unknown key"},
		{"dns: {mode: ~}\n", ""},
		{"- a\n", "$: is a list"},
	} {
		doc, _ := decodeYAML(t, []byte(tc.doc))
		got := strings.Join(Validate(s, doc), "\n")
		if (tc.errs == "") != (got == "") || !strings.Contains(got, tc.errs) {
			t.Errorf("%q: got %q, want %q", tc.doc, got, tc.errs)
		}
	}
	var buf bytes.Buffer
	json.Indent(&buf, render(t), "", "  ")
	if !strings.Contains(buf.String(), `"additionalProperties": false`) {
		t.Error("unknown keys must be rejected")
	}
}
