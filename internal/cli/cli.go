// Package cli is the operator command vpn-confinement: validate the
// configuration, show and attest what runs, check the host, run ad-hoc
// confined commands and import providers' wg-quick files. The verbs' logic
// lives in the packages below internal/cli; this package parses arguments,
// picks output formats and maps results to exit codes:
//
//	0  everything checked is fine
//	1  findings: invalid configuration, a failed check, a problem in status
//	2  the command could not do its job (usage, unreadable input, not root)
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
)

// Version is set at build time: -ldflags "-X .../internal/cli.Version=1.2.3".
var Version = "dev"

// Exit codes.
const (
	exitOK       = 0
	exitFindings = 1
	exitTrouble  = 2
)

// Env is what a verb runs with; tests replace any part of it.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Paths          paths.Paths
	// StdinIsTerminal decides between systemd-run --pty and --pipe.
	StdinIsTerminal func() bool
	// Exec replaces the process (run: systemd-run); nil uses syscall.Exec.
	Exec func(argv0 string, argv []string, env []string) error
}

// DefaultEnv is the environment of the real command.
func DefaultEnv() *Env {
	return &Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Paths:           paths.Default(),
		StdinIsTerminal: func() bool { return isTerminal(os.Stdin) },
	}
}

type command struct {
	name    string
	summary string
	help    string
	run     func(e *Env, args []string) (int, error)
}

func commands() []command {
	return []command{
		{"validate", "check configuration files exactly as the generator does", helpValidate, cmdValidate},
		{"status", "show namespaces, tunnels, firewalls and confined units", helpStatus, cmdStatus},
		{"verify", "attest that a running confined unit is really confined", helpVerify, cmdVerify},
		{"doctor", "check that this host can enforce confinement", helpDoctor, cmdDoctor},
		{"run", "run a command confined like a listed service", helpRun, cmdRun},
		{"import-wg-quick", "turn a provider's wg-quick file into NAME.yaml and a key file", helpImport, cmdImport},
	}
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Main runs the command line args (without the program name).
func Main(e *Env, args []string) int {
	if len(args) == 0 {
		writeTopHelp(e.Stderr)
		return exitTrouble
	}
	switch args[0] {
	case "-h", "--help", "-help":
		writeTopHelp(e.Stdout)
		return exitOK
	case "help":
		if len(args) > 1 {
			if c, ok := findCommand(args[1]); ok {
				fmt.Fprint(e.Stdout, c.help)
				return exitOK
			}
			fmt.Fprintf(e.Stderr, "vpn-confinement: unknown command %q\n", args[1])
			return exitTrouble
		}
		writeTopHelp(e.Stdout)
		return exitOK
	case "version", "--version", "-version":
		fmt.Fprintf(e.Stdout, "vpn-confinement %s\n", Version)
		return exitOK
	}
	c, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(e.Stderr, "vpn-confinement: unknown command %q%s\nRun 'vpn-confinement --help' for the list of commands.\n", args[0], suggest(args[0]))
		return exitTrouble
	}
	code, err := c.run(e, args[1:])
	switch {
	case err == nil:
		return code
	case errors.Is(err, errHelp):
		fmt.Fprint(e.Stdout, c.help)
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.Stderr, "vpn-confinement %s: %v\nRun 'vpn-confinement %s --help' for usage.\n", c.name, err, c.name)
		return exitTrouble
	default:
		fmt.Fprintf(e.Stderr, "vpn-confinement %s: %v\n", c.name, err)
		if code == exitOK {
			code = exitTrouble
		}
		return code
	}
}

func writeTopHelp(w io.Writer) {
	fmt.Fprint(w, helpTop)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, helpTopFooter)
}

func suggest(name string) string {
	var names []string
	for _, c := range commands() {
		if strings.HasPrefix(c.name, name) || strings.HasPrefix(name, c.name) {
			names = append(names, c.name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return " (did you mean " + strings.Join(names, " or ") + "?)"
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
