// Command vpn-confinement-netns builds and removes the confinement namespace
// NAME (vpn-ns@NAME.service, Type=oneshot):
//
//	vpn-confinement-netns [-plan PATH] [-state-dir DIR] [-v] up NAME     build /run/netns/NAME (firewall first, pin last)
//	vpn-confinement-netns [-plan PATH] [-state-dir DIR] [-v] reload NAME apply the current plan live (ExecReload=)
//	vpn-confinement-netns [-plan PATH] [-state-dir DIR] [-v] down NAME   remove it (idempotent; also after a failed up)
//
// All logic lives in internal/namespace. `down` also works without a plan
// (the namespace was removed from the configuration before it was stopped):
// it then unpins /run/netns/NAME, deletes the host link tagged as NAME's and
// removes /run/vpn-confinement/NAME.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/namespace"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("vpn-confinement-netns", flag.ContinueOnError)
	planPath := fs.String("plan", "", "plan file (default: the generator's plan of NAME)")
	// Same flag and variable as the generator's: the record written here is
	// what the generator reads.
	stateDir := fs.String("state-dir", envOr("VPN_CONFINEMENT_STATE_DIR", plan.StateDir), "directory of units recorded at each namespace's last good start (env VPN_CONFINEMENT_STATE_DIR)")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: vpn-confinement-netns [-plan PATH] [-state-dir DIR] [-v] up|reload|down NAME")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 || (fs.Arg(0) != "up" && fs.Arg(0) != "down" && fs.Arg(0) != "reload") {
		fs.Usage()
		return 2
	}
	cmd, name := fs.Arg(0), fs.Arg(1)
	plan.StateDir = *stateDir
	log := journal.New(*verbose)
	if !config.ValidNamespaceName(name) {
		log.Errorf("%s: invalid namespace name %q", cmd, name)
		return 1
	}
	if *planPath == "" {
		*planPath = plan.Path(plan.DefaultGeneratorDir, name)
	}
	n, err := plan.LoadTrusted(*planPath)
	if err == nil && n.Name != name {
		err = fmt.Errorf("plan %s is for namespace %q, not %q", *planPath, n.Name, name)
	}
	if err != nil {
		if cmd != "down" {
			log.Errorf("%s %s: %v", cmd, name, err)
			return 1
		}
		// Fail-safe cleanup: what Up created is found by name and alias.
		derr := namespace.DownName(name, log)
		if errors.Is(err, os.ErrNotExist) && derr == nil {
			log.Infof("down %s: no plan at %s; removed what was left by name", name, *planPath)
			return 0
		}
		log.Errorf("down %s: %v", name, errors.Join(err, derr))
		return 1
	}
	switch cmd {
	case "up":
		err = namespace.Up(n, log)
		if err == nil {
			err = namespace.RecordApplied(name, *planPath)
		}
	case "reload":
		err = namespace.Reload(context.Background(), n, *planPath, log)
	case "down":
		err = namespace.Down(n, log)
	}
	if err != nil {
		log.Errorf("%s %s: %v", cmd, name, err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
