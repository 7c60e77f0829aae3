// Command vpn-confinement-wireguard runs the WireGuard tunnel of one
// confinement namespace (vpn-wg@NAME.service, Type=notify):
//
//	vpn-confinement-wireguard [-plan PATH] [-v] run NAME    bring up, notify READY, watch, tear down on SIGTERM
//	vpn-confinement-wireguard [-plan PATH] [-v] down NAME   remove what a tunnel left (idempotent)
//
// It must run in the socket birthplace namespace (systemd puts it there).
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
		fmt.Fprintln(os.Stderr, "usage: vpn-confinement-wireguard [-plan PATH] [-v] run|down NAME")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || (flag.Arg(0) != "run" && flag.Arg(0) != "down") {
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
	case "run":
		err = wireguard.RunHelper(ctx, n, log)
	case "down":
		err = wireguard.Down(n, log)
	}
	if err != nil {
		log.Errorf("%s %s: %v", cmd, name, err)
		os.Exit(1)
	}
}
