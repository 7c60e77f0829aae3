// Package check is the result format shared by verify (PASS/FAIL/SKIP)
// and doctor (OK/WARN/FAIL): one named check, one verdict, one line of
// explanation, in text or JSON.
package check

import (
	"encoding/json"
	"fmt"
	"io"
)

// Result is a verdict.
type Result string

// Verdicts. Verify uses Pass/Fail/Skip, doctor OK/Warn/Fail.
const (
	Pass Result = "PASS"
	Fail Result = "FAIL"
	Skip Result = "SKIP"
	OK   Result = "OK"
	Warn Result = "WARN"
)

// Check is one verdict with its explanation.
type Check struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
	Detail string `json:"detail"`
}

// List is an ordered set of checks.
type List []Check

// Add appends a check.
func (l *List) Add(name string, r Result, format string, args ...any) {
	*l = append(*l, Check{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
}

// Failed reports whether any check failed.
func (l List) Failed() bool {
	for _, c := range l {
		if c.Result == Fail {
			return true
		}
	}
	return false
}

// Count returns how many checks have result r.
func (l List) Count(r Result) int {
	n := 0
	for _, c := range l {
		if c.Result == r {
			n++
		}
	}
	return n
}

// WriteText prints one aligned line per check: "PASS namespace  detail".
func (l List) WriteText(w io.Writer) {
	width := 0
	for _, c := range l {
		width = max(width, len(c.Name))
	}
	for _, c := range l {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", c.Result, width, c.Name, c.Detail)
	}
}

// WriteJSON writes v (which embeds the list) indented.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
