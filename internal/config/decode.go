package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vpn-confinement/vpn-confinement/internal/typo"
	"go.yaml.in/yaml/v3"
)

// pos is a location in the YAML source.
type pos struct{ line, col int }

// decoded is a YAML file decoded into the schema, with the position of every
// key path so that validation errors can name file, line and key.
type decoded struct {
	file   string
	schema fileSchema
	pos    map[string]pos
	diags  Diags
	// fatal: the document could not be decoded into the schema at all.
	fatal bool
}

// at returns a diagnostic located at key path k (falling back to the nearest
// parent that has a position).
func (d *decoded) diag(sev Severity, key, format string, args ...any) {
	p := d.lookup(key)
	d.diags = append(d.diags, Diag{Severity: sev, File: d.file, Line: p.line, Column: p.col, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (d *decoded) errorf(key, format string, args ...any) { d.diag(SevError, key, format, args...) }
func (d *decoded) warnf(key, format string, args ...any)  { d.diag(SevWarning, key, format, args...) }

func (d *decoded) lookup(key string) pos {
	for k := key; k != ""; k = parentKey(k) {
		if p, ok := d.pos[k]; ok {
			return p
		}
	}
	// A key missing from the file: point at its start, so every
	// diagnostic still carries file, line and key.
	return pos{1, 1}
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

// maxFileSize bounds what we read: a namespace file is a few KiB; anything
// huge is a mistake (or an attack on the boot path) and is rejected.
const maxFileSize = 1 << 20

// decode parses src. Syntax errors, unknown keys and type errors are all
// reported (not only the first); schema is filled as far as possible.
func decode(file string, src []byte) *decoded {
	d := &decoded{file: file, pos: map[string]pos{}}
	if len(src) > maxFileSize {
		d.errorf("", "file is larger than %d bytes", maxFileSize)
		d.fatal = true
		return d
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		d.diags = append(d.diags, yamlErrorDiags(file, err)...)
		d.fatal = true
		return d
	}
	if len(root.Content) == 0 {
		// An empty file is a valid YAML document with no keys; validation
		// then reports the missing required keys.
		return d
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		d.diags = append(d.diags, Diag{File: file, Line: doc.Line, Column: doc.Column, Message: "top level must be a mapping of keys"})
		d.fatal = true
		return d
	}
	walk(d, doc, reflect.TypeOf(fileSchema{}), "")
	// Decode from the node tree (the text is parsed once). walk already
	// reported unknown keys with a hint; decoding the rest anyway lets
	// validation report every other problem of the file in the same run
	// (the file stays invalid either way).
	if err := doc.Decode(&d.schema); err != nil {
		d.diags = append(d.diags, yamlErrorDiags(file, err)...)
		d.fatal = true
	}
	return d
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrorDiags turns yaml.v3 errors ("yaml: line 3: ...", or a TypeError
// with several "line N: ..." entries) into located diagnostics.
func yamlErrorDiags(file string, err error) Diags {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Diags
	for _, m := range msgs {
		d := Diag{File: file, Message: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLineRe.FindStringSubmatch(m); sm != nil {
			d.Line, _ = strconv.Atoi(sm[1])
			d.Message = sm[2]
		}
		out = append(out, d)
	}
	return out
}

// walk records key positions and reports unknown keys, duplicate keys and
// shape mismatches by comparing the node tree with the schema's yaml tags.
func walk(d *decoded, n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		d.diags = append(d.diags, Diag{File: d.file, Line: n.Line, Column: n.Column, Key: path, Message: "YAML aliases are not supported here"})
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return // "dns:" with nothing below: treat as empty
			}
			d.diags = append(d.diags, Diag{File: d.file, Line: n.Line, Column: n.Column, Key: path, Message: "expected a mapping of keys"})
			return
		}
		fields := schemaFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if seen[k.Value] {
				d.diags = append(d.diags, Diag{File: d.file, Line: k.Line, Column: k.Column, Key: key, Message: "duplicate key"})
				continue
			}
			seen[k.Value] = true
			ft, ok := fields[k.Value]
			if !ok {
				d.diags = append(d.diags, Diag{File: d.file, Line: k.Line, Column: k.Column, Key: key, Message: unknownKeyMessage(k.Value, fields)})
				continue
			}
			d.pos[key] = pos{k.Line, k.Column}
			walk(d, v, ft, key)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			d.diags = append(d.diags, Diag{File: d.file, Line: n.Line, Column: n.Column, Key: path, Message: "expected a list"})
			return
		}
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			d.pos[key] = pos{c.Line, c.Column}
			walk(d, c, t.Elem(), key)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			d.diags = append(d.diags, Diag{File: d.file, Line: n.Line, Column: n.Column, Key: path, Message: "expected a single value"})
		}
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// fieldCache memoizes schemaFields: walk calls it for every mapping node.
var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

func schemaFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	defer fieldCache.Store(t, m)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			m[tag] = f.Type
		}
	}
	return m
}

// unknownKeyMessage suggests the closest known key: typos must not silently
// weaken a policy, and a hint saves a round trip.
func unknownKeyMessage(k string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	lower := map[string]string{}
	for name := range fields {
		names = append(names, name)
		lower[strings.ToLower(name)] = name
	}
	sort.Strings(names)
	lowers := make([]string, 0, len(names))
	for _, n := range names {
		lowers = append(lowers, strings.ToLower(n))
	}
	if best := typo.Closest(strings.ToLower(k), lowers, 3); best != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", lower[best])
	}
	return "unknown key (known keys: " + strings.Join(names, ", ") + ")"
}

// SchemaKeys lists the key paths a user sets: every scalar or list key
// ("dns.servers", "wireguard.peers", "wireguard.peers[].endpoint"), but not
// the pure grouping mappings ("dns"). Used by the documentation test.
func SchemaKeys() []string {
	var out []string
	var rec func(t reflect.Type, path string)
	rec = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
				rec(f.Type, join(path, tag))
			}
		case reflect.Slice:
			out = append(out, path)
			if e := t.Elem(); e.Kind() == reflect.Struct {
				rec(e, path+"[]")
			}
		default:
			out = append(out, path)
		}
	}
	rec(reflect.TypeOf(fileSchema{}), "")
	return out
}
