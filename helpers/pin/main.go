// Command vpn-confinement-pin loads the endpoint pinning table of one
// confinement namespace into its own namespace, the socket birthplace
// (vpn-pin@NAME.service, Type=oneshot):
//
//	vpn-confinement-pin [-plan PATH] [-v] up NAME     resolve endpoints here, load the pin table
//	vpn-confinement-pin [-plan PATH] [-v] down NAME   delete the pin table (idempotent)
//
// All logic lives in internal/wireguard.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

func main() {
	planPath := flag.String("plan", "", "plan file (default: the generator's plan of NAME)")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: vpn-confinement-pin [-plan PATH] [-v] up|down NAME")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || (flag.Arg(0) != "up" && flag.Arg(0) != "down") {
		flag.Usage()
		os.Exit(2)
	}
	cmd, name := flag.Arg(0), flag.Arg(1)
	log := journal.New(*verbose)
	if *planPath == "" {
		*planPath = plan.Path(plan.DefaultGeneratorDir, name)
	}
	n, err := plan.Load(*planPath)
	if err == nil && n.Name != name {
		err = fmt.Errorf("plan %s is for namespace %q, not %q", *planPath, n.Name, name)
	}
	if err != nil {
		log.Errorf("%v", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "up":
		err = wireguard.PinUp(ctx, n, nil, log)
	case "down":
		err = wireguard.PinDown(n, log)
	}
	if err != nil {
		log.Errorf("%s %s: %v", cmd, name, err)
		os.Exit(1)
	}
}
