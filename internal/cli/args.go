package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errUsage marks a command-line mistake (exit 2, usage hint on stderr).
var errUsage = errors.New("usage")

// errHelp is returned for -h/--help: the verb's help goes to stdout, exit 0.
var errHelp = flag.ErrHelp

// usageError is a command-line mistake with a message for the user.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
func (e usageError) Unwrap() error { return errUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// flagSets records the flag set of each verb, so a test can check that
// every option is documented in the help text and the man page.
var flagSets = map[string]*flag.FlagSet{}

// newFlags returns a flag set that reports errors instead of exiting and
// prints nothing itself (we print the verb's help text).
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flagSets[name] = fs
	return fs
}

// parseArgs parses flags anywhere among the arguments ("validate a.yaml
// --json" works like "validate --json a.yaml"), which Go's flag package
// alone does not do. Everything after "--" is positional. With
// commandAfter > 0, the first positional argument after the first
// commandAfter ones starts a command line that is returned verbatim in cmd
// (so "run NAME id -u" passes "-u" to id, like sudo and systemd-run do).
func parseArgs(fs *flag.FlagSet, args []string, commandAfter int) (pos, cmd []string, err error) {
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			rest := args[i+1:]
			if commandAfter > 0 {
				return pos, rest, nil
			}
			return append(pos, rest...), nil, nil
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			if err := fs.Parse(args[i:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return nil, nil, errHelp
				}
				return nil, nil, usageError{err.Error()}
			}
			rem := fs.Args()
			consumed := len(args) - i - len(rem)
			i += consumed
			// flag stops after consuming a "--" terminator.
			if consumed > 0 && args[i-1] == "--" {
				if commandAfter > 0 {
					return pos, rem, nil
				}
				return append(pos, rem...), nil, nil
			}
			continue
		}
		if commandAfter > 0 && len(pos) == commandAfter {
			return pos, args[i:], nil
		}
		pos = append(pos, a)
		i++
	}
	return pos, nil, nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
