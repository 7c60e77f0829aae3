// Package skel is the shared skeleton of the plan-driven helper commands
// (as CNI's pkg/skel is for plugins): parse "[-plan PATH] [-v] VERB NAME",
// load and check the compiled plan, cancel on SIGTERM/SIGINT, run the verb,
// and turn an error into one log line and exit status 1.
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
func Main(prog string, verbs map[string]Verb) {
	planPathFlag := flag.String("plan", "", "plan file (default: the generator's plan of NAME)")
	verbose := flag.Bool("v", false, "debug logging")
	names := make([]string, 0, len(verbs))
	for v := range verbs {
		names = append(names, v)
	}
	sort.Strings(names)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-plan PATH] [-v] %s NAME\n", prog, strings.Join(names, "|"))
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
	n, err := plan.LoadTrusted(planPath)
	if err == nil && n.Name != name {
		err = fmt.Errorf("plan %s is for namespace %q, not %q", planPath, n.Name, name)
	}
	if err != nil {
		log.Errorf("%v", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err = verb(ctx, n, log)
	stop()
	if err != nil {
		log.Errorf("%s %s: %v", cmd, name, err)
		os.Exit(1)
	}
}
