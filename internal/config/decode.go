package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	// Strict YAML: a tab in the indentation, a syntax error anywhere (also
	// after the first document), or a second document make the file
	// unparsable. yaml.Unmarshal reads only the first document and never
	// reports what follows it, which once let a "---" hide the services
	// list (they then ran on the host's network).
	if tabs := tabIndentDiags(file, src); len(tabs) > 0 {
		d.diags = append(d.diags, tabs...)
		d.fatal = true
		return d
	}
	root, extra := decodeDocuments(file, src)
	if len(extra) > 0 {
		d.diags = append(d.diags, extra...)
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

// decodeDocuments parses src as exactly one YAML document. Every problem
// that yaml.Unmarshal would swallow is reported: a syntax error after the
// first document, a second document ("---" or content after "..."), and
// content indented less than the first key (YAML ends the document there).
func decodeDocuments(file string, src []byte) (yaml.Node, Diags) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return yaml.Node{}, nil // empty file: one empty document
		}
		return root, yamlErrorDiags(file, err)
	}
	var next yaml.Node
	err := dec.Decode(&next)
	switch {
	case errors.Is(err, io.EOF):
		return root, nil
	case err == nil:
		line := next.Line
		if sep := documentSeparator(src, line); sep > 0 {
			line = sep
		}
		return root, Diags{{File: file, Line: line, Column: 1, Message: "a second YAML document starts here; a namespace file holds exactly one document (remove the \"---\" and merge the keys, or move them to another NAME.yaml)"}}
	default:
		if ds := outdentDiags(file, src, &root); len(ds) > 0 {
			return root, ds
		}
		return root, yamlErrorDiags(file, err)
	}
}

// documentSeparator returns the line (1-based) of the last "---" or "..."
// marker before line, or 0: the second document's node starts after it.
func documentSeparator(src []byte, line int) int {
	sep := 0
	for i, l := range strings.Split(string(src), "\n") {
		if i+1 >= line {
			break
		}
		if t := strings.TrimRight(l, " \r"); strings.HasPrefix(t, "---") || t == "..." {
			sep = i + 1
		}
	}
	return sep
}

// outdentDiags explains the most common cause of "did not find expected
// <document start>": the first key is indented, and a later line starts
// further left, which ends the document in YAML's eyes.
func outdentDiags(file string, src []byte, root *yaml.Node) Diags {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	col := root.Content[0].Column
	if col <= 1 {
		return nil
	}
	for i, l := range strings.Split(string(src), "\n") {
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") || i+1 <= root.Content[0].Line {
			continue
		}
		if ind := len(l) - len(t); ind+1 < col {
			return Diags{{File: file, Line: i + 1, Column: ind + 1, Message: fmt.Sprintf("indentation: this line starts in column %d, left of the first key (line %d, column %d), which ends the YAML document here; top-level keys must start in the same column (best: column 1)", ind+1, root.Content[0].Line, col)}}
		}
	}
	return nil
}

// tabIndentDiags reports every line whose indentation contains a tab: YAML
// forbids tabs there, and the parser's own message ("found character that
// cannot start any token") does not say so.
func tabIndentDiags(file string, src []byte) Diags {
	var out Diags
	for i, l := range strings.Split(string(src), "\n") {
		for j, r := range l {
			if r == '\t' {
				out = append(out, Diag{File: file, Line: i + 1, Column: j + 1, Message: "a tab character in the indentation; YAML indents with spaces only"})
				break
			}
			if r != ' ' && r != '-' {
				break
			}
		}
	}
	return out
}

// yamlHints explains the parser's messages that do not name their usual
// cause, which is nearly always indentation.
var yamlHints = map[string]string{
	"mapping values are not allowed in this context": "usually a key indented differently from the keys above it, or a value containing \": \" that needs quotes",
	"did not find expected key":                      "check the indentation: keys of one mapping must start in the same column",
	"did not find expected '-' indicator":            "a list item or the key after a list is indented differently from the items above it",
	"did not find expected <document start>":         "content after the end of the document: check the indentation of this line",
	"found character that cannot start any token":    "a value starting with @ or ` must be quoted",
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
		if h, ok := yamlHints[d.Message]; ok {
			d.Message += " (" + h + ")"
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
