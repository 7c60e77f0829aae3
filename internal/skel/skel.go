// Package skel is the shared skeleton of the helper commands (as CNI's
// pkg/skel is for plugins): parse "[-plan PATH] [-v] VERB NAME", load and
// check the compiled plan, cancel on SIGTERM/SIGINT, run the verb, and turn
// an error into one log line and exit status 1. MainCommands is the same
// for helpers whose verbs need no plan.
package skel

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Verb is one command of a helper.
type Verb func(ctx context.Context, n *plan.Namespace, log *journal.Logger) error

// planPath is the plan the running verb loaded.
var planPath string

// PlanPath is the path of the plan the running verb loaded (reload reads
// it again).
func PlanPath() string { return planPath }

// Main runs the helper prog with the given verbs and exits.
func Main(prog string, verbs map[string]Verb) { MainWith(prog, verbs, nil) }

// Before runs ahead of a verb, before its plan is loaded (so it also
// brakes a helper whose plan is refused); an error ends the helper like
// the verb's would.
type Before func(ctx context.Context, cmd, name string, log *journal.Logger) error

// MainWith is Main with a Before step (nil: none).
func MainWith(prog string, verbs map[string]Verb, before Before) {
	planPathFlag := flag.String("plan", "", "plan file (default: the generator's plan of NAME)")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-plan PATH] [-v] %s NAME\n", prog, strings.Join(sortedKeys(verbs), "|"))
		flag.PrintDefaults()
	}
	flag.Parse()
	verb, ok := verbs[flag.Arg(0)]
	if flag.NArg() != 2 || !ok {
		flag.Usage()
		os.Exit(2)
	}
	cmd, name := flag.Arg(0), flag.Arg(1)
	log := journal.New(*verbose)
	if *planPathFlag == "" {
		*planPathFlag = plan.Path(plan.DefaultGeneratorDir, name)
	}
	planPath = *planPathFlag
	run(log, cmd+" "+name, func(ctx context.Context) error {
		if before != nil {
			if err := before(ctx, cmd, name, log); err != nil || ctx.Err() != nil {
				return err
			}
		}
		n, err := plan.LoadTrusted(planPath)
		if err == nil && n.Name != name {
			err = fmt.Errorf("plan %s is for namespace %q, not %q", planPath, n.Name, name)
		}
		if err != nil {
			log.Errorf("%v", err)
			os.Exit(1)
		}
		return verb(ctx, n, log)
	})
}

// Command is a verb of a helper that needs no plan; Args names its
// operands ("NAME"), for the usage line and the operand count.
type Command struct {
	Args []string
	Run  func(ctx context.Context, args []string, log *journal.Logger) error
}

// MainCommands runs the helper prog with plan-less commands and exits.
// Flags the helper registered on flag.CommandLine are parsed too.
func MainCommands(prog string, cmds map[string]Command) {
	verbose := flag.Bool("v", false, "debug logging")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] COMMAND\n", prog)
		for _, name := range sortedKeys(cmds) {
			fmt.Fprintf(os.Stderr, "  %s\n", strings.Join(append([]string{name}, cmds[name].Args...), " "))
		}
		flag.PrintDefaults()
	}
	flag.Parse()
	c, ok := cmds[flag.Arg(0)]
	if !ok || flag.NArg() != 1+len(c.Args) {
		flag.Usage()
		os.Exit(2)
	}
	log := journal.New(*verbose)
	args := flag.Args()[1:]
	run(log, strings.Join(flag.Args(), " "), func(ctx context.Context) error { return c.Run(ctx, args, log) })
}

// run runs f with a context cancelled by SIGTERM/SIGINT and exits 1 with
// one log line "what: error" if it fails.
func run(log *journal.Logger, what string, f func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := f(ctx)
	stop()
	if err != nil {
		log.Errorf("%s: %v", what, err)
		os.Exit(1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
