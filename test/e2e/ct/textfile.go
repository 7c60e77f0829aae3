package ct

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// ParseTextfile checks text against the Prometheus text exposition format
// (what node_exporter's textfile collector accepts: HELP and TYPE before a
// family's samples, each family in one block, valid metric and label
// names, quoted label values with escapes, float values, no duplicate
// series, counters never negative) and returns family → labels → value,
// labels as written ("" or `{k="v",...}`).
func ParseTextfile(text string) (map[string]map[string]float64, error) {
	name := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	label := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	out := map[string]map[string]float64{}
	types := map[string]string{}
	done := map[string]bool{}
	cur := ""
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the last line has no newline (a partly written file?)")
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		errf := func(f string, a ...any) error { return fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(f, a...)) }
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a comment
			}
			if !name.MatchString(f[2]) {
				return nil, errf("bad metric name")
			}
			if f[2] != cur {
				if done[f[2]] {
					return nil, errf("family %s appears in two blocks", f[2])
				}
				if cur != "" {
					done[cur] = true
				}
				cur = f[2]
			}
			if f[1] == "TYPE" {
				if len(f) != 4 || !strings.Contains(" counter gauge histogram summary untyped ", " "+f[3]+" ") {
					return nil, errf("bad TYPE")
				}
				if len(out[cur]) > 0 {
					return nil, errf("TYPE after samples")
				}
				types[cur] = f[3]
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			return nil, errf("empty line")
		}
		metric, rest := line, ""
		labels := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, errf("unbalanced braces")
			}
			metric, labels, rest = line[:i], line[i:j+1], strings.TrimSpace(line[j+1:])
			if err := checkLabels(labels[1:len(labels)-1], label); err != nil {
				return nil, errf("%v", err)
			}
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				return nil, errf("no value")
			}
			metric, rest = f[0], strings.Join(f[1:], " ")
		}
		if !name.MatchString(metric) {
			return nil, errf("bad metric name")
		}
		if metric != cur {
			if done[metric] || cur != "" && types[cur] == "" {
				return nil, errf("sample of %s outside its block", metric)
			}
			if cur != "" {
				done[cur] = true
			}
			cur = metric
		}
		vs := strings.Fields(rest)
		if len(vs) < 1 || len(vs) > 2 {
			return nil, errf("want a value and an optional timestamp")
		}
		v, err := strconv.ParseFloat(vs[0], 64)
		if err != nil {
			return nil, errf("bad value: %v", err)
		}
		if types[metric] == "counter" && (v < 0 || math.IsNaN(v)) {
			return nil, errf("negative counter")
		}
		if out[metric] == nil {
			out[metric] = map[string]float64{}
		}
		if _, dup := out[metric][labels]; dup {
			return nil, errf("duplicate series")
		}
		out[metric][labels] = v
	}
	return out, nil
}

func checkLabels(s string, label *regexp.Regexp) error {
	seen := map[string]bool{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return fmt.Errorf("bad label pair in %q", s)
		}
		k := s[:eq]
		if !label.MatchString(k) || seen[k] {
			return fmt.Errorf("bad or repeated label name %q", k)
		}
		seen[k] = true
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
				if i >= len(s) || !strings.ContainsRune(`\\"n`, rune(s[i])) {
					return fmt.Errorf("bad escape in label %s", k)
				}
			}
			if s[i] == '\n' {
				return fmt.Errorf("newline in label %s", k)
			}
		}
		if i >= len(s) {
			return fmt.Errorf("unterminated value of label %s", k)
		}
		s = s[i+1:]
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if s != "" {
			return fmt.Errorf("junk after label %s", k)
		}
	}
	return nil
}
