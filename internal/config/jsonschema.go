package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// JSON Schema of the namespace file, for editors (yaml-language-server) and
// CI linters. The structure (every key, nesting, lists, scalar types,
// additionalProperties: false) is produced by walking fileSchema, the same
// types whose yaml tags the decoder checks keys against, so a key can never
// exist in one and not the other. What the types cannot express (enums,
// ranges, name patterns) comes from SchemaRules below, built from the same
// constants and regular expressions the compiler uses; a test in
// internal/cli/schemacheck runs each rule against the compiler so the two
// cannot drift apart.
//
// The schema is deliberately a little stricter than the validator in two
// places, both about YAML typing rather than meaning: a scalar YAML reads as
// a number or boolean must be quoted where a string is expected, and the
// keys that are invalid on sockets (hardeningProfile, ...) are not offered
// there at all.

// JSONSchemaID is the $id of the schema.
const JSONSchemaID = "https://github.com/vpn-confinement/vpn-confinement/raw/main/schema/vpn-confinement.schema.json"

// yamlBoolWords are the strings yaml.v3 accepts for a typed bool (YAML 1.1
// compatibility), so "autostart: yes" is as valid for the schema as it is
// for the decoder.
var yamlBoolWords = []string{"y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
	"n", "N", "no", "No", "NO", "off", "Off", "OFF"}

// SchemaRule constrains one key path (SchemaKeys spelling; for a list the
// rule applies to its items).
type SchemaRule struct {
	Enum     []string
	Min, Max *int64
	Pattern  string
	MaxItems int
}

func i64(v int64) *int64 { return &v }

func portRule() SchemaRule { return SchemaRule{Min: i64(1), Max: i64(65535)} }

// ifacePattern is ValidInterfaceName as a regular expression.
const ifacePattern = `^[A-Za-z0-9]([A-Za-z0-9_.-]{0,13}[A-Za-z0-9])?$`

// SchemaRules returns the value constraints of the JSON schema by key path.
// Exported for the agreement test.
func SchemaRules() map[string]SchemaRule {
	unitPattern := func(suffix string) string {
		// unitNameRe restricted to one suffix.
		return strings.Replace(unitNameRe.String(), `\.(service|socket)$`, `\.`+suffix+`$`, 1)
	}
	return map[string]SchemaRule{
		"securityProfile":                          {Enum: []string{ProfileBalanced, ProfileHighAssurance}},
		"dns.mode":                                 {Enum: []string{plan.DNSStrict, plan.DNSCompat}},
		"dns.servers":                              {MaxItems: 3},
		"ipv6.mode":                                {Enum: []string{"disable", "tunnel"}},
		"egress.mode":                              {Enum: []string{plan.EgressAllowAllTunnel, plan.EgressAllowList}},
		"egress.allowedTcpPorts":                   portRule(),
		"egress.allowedUdpPorts":                   portRule(),
		"ingress.fromTunnel.tcp":                   portRule(),
		"ingress.fromTunnel.udp":                   portRule(),
		"ingress.fromHost.tcp":                     portRule(),
		"publishToHost.tcp":                        portRule(),
		"hostLink.hostIf":                          {Pattern: ifacePattern},
		"hostLink.nsIf":                            {Pattern: ifacePattern},
		"wireguard.interface":                      {Pattern: ifacePattern},
		"wireguard.backend":                        {Enum: []string{plan.BackendAuto, plan.BackendKernel, plan.BackendUserspace}},
		"wireguard.listenPort":                     portRule(),
		"wireguard.mtu":                            {Min: i64(576), Max: i64(65535)},
		"wireguard.fwMark":                         {Min: i64(0), Max: i64(0xffffffff)},
		"wireguard.endpointRefreshSeconds":         {Min: i64(0)},
		"wireguard.endpointPinning.fwMark":         {Min: i64(1), Max: i64(0xffffffff)},
		"wireguard.peers[].persistentKeepalive":    {Min: i64(0), Max: i64(65535)},
		"wireguard.peers[].endpointRefreshSeconds": {Min: i64(0)},
		"services[].unit":                          {Pattern: unitPattern("service")},
		"services[].hardeningProfile":              {Enum: []string{plan.HardeningBaseline, plan.HardeningStrict}},
		"services[].extraAddressFamilies":          {Pattern: addressFamilyRe.String()},
		"sockets[].unit":                           {Pattern: unitPattern("socket")},
	}
}

// schemaRequired lists keys that must be present in their mapping.
var schemaRequired = map[string][]string{
	"wireguard.peers[]": {"publicKey"},
	"services[]":        {"unit"},
	"sockets[]":         {"unit"},
}

// socketOnlyKeys are the keys a sockets[] entry may carry (the compiler
// rejects the service-only ones there).
var socketOnlyKeys = map[string]bool{"unit": true}

// JSONSchema returns the schema as a JSON-marshalable value (maps marshal
// with sorted keys, so the output is deterministic). descriptions, keyed by
// SchemaKeys paths, become "description" fields; nil leaves them out.
func JSONSchema(descriptions map[string]string) map[string]any {
	rules := SchemaRules()
	root := schemaFor(reflect.TypeOf(fileSchema{}), "", rules, descriptions)
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = JSONSchemaID
	root["title"] = "vpn-confinement namespace file (/etc/vpn-confinement.d/NAME.yaml)"
	root["description"] = "One confinement namespace; see vpn-confinement.d(5). Validate with: vpn-confinement validate FILE"
	root["$comment"] = "Generated from internal/config (the validator's own schema types); do not edit. Quote scalars that YAML would read as numbers or booleans where a string is expected."
	root["type"] = []string{"object", "null"}
	return root
}

func schemaFor(t reflect.Type, path string, rules map[string]SchemaRule, desc map[string]string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]any{}
	if d := desc[path]; d != "" {
		out["description"] = d
	}
	switch t.Kind() {
	case reflect.Struct:
		// A mapping may be left empty ("dns:" alone is null): the decoder
		// treats that as "all defaults".
		out["type"] = []string{"object", "null"}
		out["additionalProperties"] = false
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			if path == "sockets[]" && !socketOnlyKeys[tag] {
				continue
			}
			props[tag] = schemaFor(f.Type, join(path, tag), rules, desc)
		}
		out["properties"] = props
		if req := schemaRequired[path]; req != nil {
			out["required"] = req
		}
	case reflect.Slice:
		out["type"] = []string{"array", "null"}
		var item map[string]any
		if t.Elem().Kind() == reflect.Struct {
			item = schemaFor(t.Elem(), path+"[]", rules, desc)
			item["type"] = "object" // a null entry in a list is an error
		} else {
			item = scalarSchema(t.Elem(), false)
			applyRule(item, rules[path])
		}
		if r := rules[path]; r.MaxItems > 0 {
			out["maxItems"] = r.MaxItems
		}
		out["items"] = item
	default:
		for k, v := range scalarSchema(t, true) {
			out[k] = v
		}
		applyRule(out, rules[path])
	}
	return out
}

// scalarSchema describes a scalar the way yaml.v3 decodes it into t.
// nullable: an explicit null means "unset" for pointer fields.
func scalarSchema(t reflect.Type, nullable bool) map[string]any {
	typ := func(name string) any {
		if nullable {
			return []string{name, "null"}
		}
		return name
	}
	switch t.Kind() {
	case reflect.Bool:
		alts := []any{map[string]any{"type": typ("boolean")}, map[string]any{"type": "string", "enum": yamlBoolWords}}
		return map[string]any{"anyOf": alts}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": typ("integer")}
	case reflect.String:
		return map[string]any{"type": typ("string")}
	}
	panic(fmt.Sprintf("config: no JSON schema for %s", t))
}

func applyRule(s map[string]any, r SchemaRule) {
	if r.Enum != nil {
		enum := []any{}
		for _, e := range r.Enum {
			enum = append(enum, e)
		}
		if t, ok := s["type"].([]string); ok && len(t) == 2 && t[1] == "null" {
			enum = append(enum, nil) // null means "unset, take the default"
		}
		s["enum"] = enum
	}
	if r.Min != nil {
		s["minimum"] = *r.Min
	}
	if r.Max != nil {
		s["maximum"] = *r.Max
	}
	if r.Pattern != "" {
		s["pattern"] = r.Pattern
	}
}
