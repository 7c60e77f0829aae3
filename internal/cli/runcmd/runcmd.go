// Package runcmd implements `vpn-confinement run NAME -- CMD`: an ad-hoc
// command in a transient service confined exactly like a listed service.
// The properties are not a second copy of the confinement rules: they are
// the drop-in internal/units renders for a listed service, turned line by
// line into systemd-run -p KEY=VALUE arguments (as the e2e probes do), so
// what run gives is what a service gets.
package runcmd

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Options of one run.
type Options struct {
	Plan    *plan.Namespace
	Command []string
	// User runs the command as this user; "" with Root false means a
	// dynamic user (DynamicUser=yes), the least privileged choice.
	User string
	Root bool
	// Hardening is the profile of the synthetic unit: baseline or strict.
	Hardening string
	// Pty attaches the terminal (systemd-run --pty); else --pipe.
	Pty bool
	// Env are VAR=VALUE assignments.
	Env   []string
	Quiet bool
}

var userRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)

// Properties returns the -p arguments that confine a transient service in
// o.Plan's namespace: the [Unit] and [Service] settings of the drop-in of a
// synthetic listed unit "run".
func Properties(n *plan.Namespace, hardening string) []string {
	return units.TransientProperties(units.ServiceDropIn(n, plan.Unit{Name: "run.service", HardeningProfile: hardening}, nil))
}

// Argv builds the systemd-run command line.
func Argv(o Options) ([]string, error) {
	if o.Plan == nil {
		return nil, fmt.Errorf("no plan")
	}
	if len(o.Command) == 0 {
		return nil, fmt.Errorf("no command to run")
	}
	switch o.Hardening {
	case "":
		o.Hardening = plan.HardeningBaseline
	case plan.HardeningBaseline, plan.HardeningStrict:
	default:
		return nil, fmt.Errorf("--hardening must be %s or %s (got %q)", plan.HardeningBaseline, plan.HardeningStrict, o.Hardening)
	}
	if o.Root && o.User != "" {
		return nil, fmt.Errorf("--root and --user exclude each other")
	}
	if o.User != "" && !userRe.MatchString(o.User) {
		return nil, fmt.Errorf("--user %q is not a valid user name", o.User)
	}
	argv := []string{"systemd-run", "--wait", "--collect", "--service-type=exec",
		"--description=" + fmt.Sprintf("vpn-confinement run in %s: %s", o.Plan.Name, strings.Join(o.Command, " "))}
	if o.Pty {
		argv = append(argv, "--pty")
	} else {
		argv = append(argv, "--pipe")
	}
	if o.Quiet {
		argv = append(argv, "--quiet")
	}
	for _, e := range o.Env {
		if !strings.Contains(e, "=") {
			return nil, fmt.Errorf("--setenv %q: want VAR=VALUE", e)
		}
		argv = append(argv, "--setenv="+e)
	}
	switch {
	case o.Root:
	case o.User != "":
		argv = append(argv, "-p", "User="+o.User)
	default:
		argv = append(argv, "-p", "DynamicUser=yes")
	}
	argv = append(argv, Properties(o.Plan, o.Hardening)...)
	argv = append(argv, "--")
	return append(argv, o.Command...), nil
}

// Quote renders argv for a shell (for --dry-run and messages).
func Quote(argv []string) string {
	out := make([]string, len(argv))
	safe := regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)
	for i, a := range argv {
		if safe.MatchString(a) {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
