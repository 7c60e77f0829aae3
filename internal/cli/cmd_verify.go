package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/verify"
)

// errNotRoot is returned by verbs that cannot work without root.
var errNotRoot = errors.New("needs root: it reads other processes' /proc entries and the namespace's firewall")

func cmdVerify(e *Env, args []string) (int, error) {
	fs := newFlags("verify")
	asJSON := fs.Bool("json", false, "")
	fs.StringVar(&e.Paths.GeneratorDir, "generator-dir", e.Paths.GeneratorDir, "")
	pos, _, err := parseArgs(fs, args, 0)
	if err != nil {
		return exitTrouble, err
	}
	if len(pos) != 1 {
		return exitTrouble, usagef("expected one UNIT, got %d arguments", len(pos))
	}
	if os.Geteuid() != 0 {
		return exitTrouble, errNotRoot
	}
	unit := paths.NormalizeUnit(pos[0])
	facts, err := verify.Gather(e.Paths, systemd.Systemctl{}, unit)
	if err != nil {
		return exitTrouble, fmt.Errorf("%s: %w", unit, err)
	}
	l := verify.Checks(e.Paths, facts)
	if *asJSON {
		if err := check.WriteJSON(e.Stdout, verify.NewReport(facts, l)); err != nil {
			return exitTrouble, err
		}
	} else {
		l.WriteText(e.Stdout)
		if l.Failed() {
			fmt.Fprintf(e.Stdout, "%s: %d of %d checks FAILED\n", unit, l.Count(check.Fail), len(l))
		} else {
			fmt.Fprintf(e.Stdout, "%s: confined as compiled (%d checks passed)\n", unit, l.Count(check.Pass))
		}
	}
	if l.Failed() {
		return exitFindings, nil
	}
	return exitOK, nil
}
