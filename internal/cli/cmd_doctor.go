package cli

import (
	"fmt"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/doctor"
)

func cmdDoctor(e *Env, args []string) (int, error) {
	fs := newFlags("doctor")
	asJSON := fs.Bool("json", false, "")
	noProbe := fs.Bool("no-probe", false, "")
	fs.StringVar(&e.Paths.ConfigDir, "config-dir", e.Paths.ConfigDir, "")
	unitPath := fs.String("unit-path", strings.Join(e.Paths.UnitPath, ":"), "")
	pos, _, err := parseArgs(fs, args, 0)
	if err != nil {
		return exitTrouble, err
	}
	if len(pos) > 0 {
		return exitTrouble, usagef("doctor takes no arguments")
	}
	e.Paths.UnitPath = splitPath(*unitPath)
	o := doctor.Defaults(e.Paths, !*noProbe)
	l := doctor.Run(o)
	if *asJSON {
		if err := check.WriteJSON(e.Stdout, doctor.Report{OK: !l.Failed(), Checks: l}); err != nil {
			return exitTrouble, err
		}
	} else {
		l.WriteText(e.Stdout)
		fmt.Fprintf(e.Stdout, "%d OK, %d WARN, %d FAIL", l.Count(check.OK), l.Count(check.Warn), l.Count(check.Fail))
		if !o.Root {
			fmt.Fprint(e.Stdout, " (not root: kernel probes and ownership checks were limited)")
		}
		fmt.Fprintln(e.Stdout)
	}
	if l.Failed() {
		return exitFindings, nil
	}
	return exitOK, nil
}
