package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/status"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
)

func cmdStatus(e *Env, args []string) (int, error) {
	fs := newFlags("status")
	asJSON := fs.Bool("json", false, "")
	fs.StringVar(&e.Paths.GeneratorDir, "generator-dir", e.Paths.GeneratorDir, "")
	pos, _, err := parseArgs(fs, args, 0)
	if err != nil {
		return exitTrouble, err
	}
	if len(pos) > 1 {
		return exitTrouble, usagef("expected at most one NAME, got %d", len(pos))
	}
	only := ""
	if len(pos) == 1 {
		only = pos[0]
	}
	now := time.Now()
	c := status.Collector{Paths: e.Paths, Systemd: systemd.Systemctl{}, Kernel: os.Geteuid() == 0, Now: now}
	rep, err := c.Collect(only)
	if err != nil {
		return exitTrouble, err
	}
	if *asJSON {
		if err := rep.WriteJSON(e.Stdout); err != nil {
			return exitTrouble, err
		}
	} else {
		if !c.Kernel && len(rep.Namespaces) > 0 {
			fmt.Fprint(e.Stdout, "note: not root: interfaces, tunnel and firewall are not read (run as root for the full status)\n\n")
		}
		rep.WriteText(e.Stdout, now)
	}
	if rep.Problems() > 0 {
		return exitFindings, nil
	}
	return exitOK, nil
}
