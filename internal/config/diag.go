package config

import (
	"fmt"
	"sort"
)

// Severity of a diagnostic.
type Severity int

const (
	// SevError makes a file invalid: its units are blocked.
	SevError Severity = iota
	// SevWarning is reported but does not block.
	SevWarning
)

func (s Severity) String() string {
	if s == SevWarning {
		return "warning"
	}
	return "error"
}

// Diag is one problem, located as precisely as the input allows.
type Diag struct {
	Severity Severity `json:"-"`
	File     string   `json:"file"`
	Line     int      `json:"line,omitempty"`
	Column   int      `json:"column,omitempty"`
	Key      string   `json:"key,omitempty"` // dotted path, e.g. wireguard.peers[0].endpoint
	Message  string   `json:"message"`
}

// String renders file:line:col: key: message (missing parts are left out),
// the format editors and CI annotators understand.
func (d Diag) String() string {
	s := d.File
	if d.Line > 0 {
		s += fmt.Sprintf(":%d", d.Line)
		if d.Column > 0 {
			s += fmt.Sprintf(":%d", d.Column)
		}
	}
	s += ": "
	if d.Severity == SevWarning {
		s += "warning: "
	}
	if d.Key != "" {
		s += d.Key + ": "
	}
	return s + d.Message
}

// Diags is a list of diagnostics.
type Diags []Diag

// Errors returns only the errors.
func (ds Diags) Errors() Diags { return ds.filter(SevError) }

// Warnings returns only the warnings.
func (ds Diags) Warnings() Diags { return ds.filter(SevWarning) }

// HasErrors reports whether any diagnostic is an error.
func (ds Diags) HasErrors() bool { return len(ds.Errors()) > 0 }

func (ds Diags) filter(s Severity) Diags {
	var out Diags
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by file, line, column, key, message so output is
// deterministic.
func (ds Diags) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Message < b.Message
	})
}
