// Package schemacheck checks a decoded YAML document against the subset of
// JSON Schema (draft 2020-12) that config.JSONSchema emits: type,
// properties, additionalProperties: false, required, items, enum,
// minimum, maximum, maxItems, pattern and anyOf. It exists so the tests
// can prove the published schema agrees with the validator without a new
// module; it is not a general JSON Schema implementation.
package schemacheck

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// Validate returns one message per violation ("path: message"); none
// means doc conforms. schema is the JSON-decoded schema (map[string]any),
// doc a YAML or JSON document decoded into interface values.
func Validate(schema map[string]any, doc any) []string {
	var errs []string
	check(schema, doc, "$", &errs)
	return errs
}

func check(s map[string]any, v any, path string, errs *[]string) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, path+": "+fmt.Sprintf(format, args...))
	}
	if alts, ok := s["anyOf"].([]any); ok && !anyOf(alts, v, path) {
		fail("%v matches none of the allowed forms", v)
		return
	}
	if t, ok := s["type"]; ok && !typeOK(t, v) {
		fail("is %s, want %v", typeName(v), t)
		return
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if equal(e, v) {
				found = true
			}
		}
		if !found {
			fail("%v is not one of %v", v, enum)
		}
	}
	if n, ok := number(v); ok {
		if m, ok := s["minimum"].(float64); ok && n < m {
			fail("%v is less than %v", v, m)
		}
		if m, ok := s["maximum"].(float64); ok && n > m {
			fail("%v is greater than %v", v, m)
		}
	}
	if str, ok := v.(string); ok {
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub, ok := props[k].(map[string]any)
			if !ok {
				if ap, ok := s["additionalProperties"].(bool); ok && !ap {
					*errs = append(*errs, path+"."+k+": unknown key")
				}
				continue
			}
			check(sub, x[k], path+"."+k, errs)
		}
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					fail("missing required key %s", r)
				}
			}
		}
	case []any:
		if m, ok := s["maxItems"].(float64); ok && float64(len(x)) > m {
			fail("has %d items, at most %v allowed", len(x), m)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				check(items, e, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
}

func anyOf(alts []any, v any, path string) bool {
	for _, a := range alts {
		var sub []string
		check(a.(map[string]any), v, path, &sub)
		if len(sub) == 0 {
			return true
		}
	}
	return false
}

func typeOK(t any, v any) bool {
	switch tt := t.(type) {
	case string:
		return isType(tt, v)
	case []any:
		for _, x := range tt {
			if isType(x.(string), v) {
				return true
			}
		}
	}
	return false
}

func isType(t string, v any) bool {
	switch t {
	case "null":
		return v == nil
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := number(v)
		return ok
	case "integer":
		n, ok := number(v)
		return ok && n == math.Trunc(n)
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	if _, ok := number(v); ok {
		return "a number"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}

func equal(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	return reflect.DeepEqual(a, b)
}
