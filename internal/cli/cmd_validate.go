package cli

import (
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/validate"
)

func cmdValidate(e *Env, args []string) (int, error) {
	fs := newFlags("validate")
	asJSON := fs.Bool("json", false, "")
	quiet := fs.Bool("quiet", false, "")
	fs.BoolVar(quiet, "q", false, "")
	strict := fs.Bool("strict", false, "")
	configDir := fs.String("config-dir", e.Paths.ConfigDir, "")
	unitPath := fs.String("unit-path", strings.Join(e.Paths.UnitPath, ":"), "")
	pos, _, err := parseArgs(fs, args, 0)
	if err != nil {
		return exitTrouble, err
	}
	rep, err := validate.Run(validate.Options{
		Targets:   pos,
		ConfigDir: *configDir,
		UnitPath:  splitPath(*unitPath),
		StateDir:  e.Paths.StateDir,
	})
	if err != nil {
		return exitTrouble, err
	}
	if *asJSON {
		if err := rep.WriteJSON(e.Stdout); err != nil {
			return exitTrouble, err
		}
	} else {
		rep.WriteText(e.Stdout, *quiet)
	}
	if rep.Errors() > 0 || (*strict && rep.Warnings() > 0) {
		return exitFindings, nil
	}
	return exitOK, nil
}

// splitPath splits a colon-separated path list; "" is the empty list (no
// unit-file checks), not the system default.
func splitPath(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ":")
}
