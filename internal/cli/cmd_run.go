package cli

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/runcmd"
)

func cmdRun(e *Env, args []string) (int, error) {
	fs := newFlags("run")
	o := runcmd.Options{}
	fs.StringVar(&o.User, "user", "", "")
	fs.BoolVar(&o.Root, "root", false, "")
	fs.StringVar(&o.Hardening, "hardening", "baseline", "")
	pty := fs.Bool("pty", false, "")
	pipe := fs.Bool("pipe", false, "")
	var env stringList
	fs.Var(&env, "setenv", "")
	fs.Var(&env, "E", "")
	fs.BoolVar(&o.Quiet, "quiet", false, "")
	fs.BoolVar(&o.Quiet, "q", false, "")
	var families, props stringList
	fs.Var(&families, "family", "")
	fs.Var(&props, "p", "")
	fs.Var(&props, "property", "")
	dry := fs.Bool("dry-run", false, "")
	fs.StringVar(&e.Paths.GeneratorDir, "generator-dir", e.Paths.GeneratorDir, "")
	pos, cmd, err := parseArgs(fs, args, 1)
	if err != nil {
		return exitTrouble, err
	}
	if len(pos) != 1 {
		return exitTrouble, usagef("expected NAME, then the COMMAND to run")
	}
	if len(cmd) == 0 {
		return exitTrouble, usagef("no COMMAND given (vpn-confinement run %s -- COMMAND [ARG]...)", pos[0])
	}
	if *pty && *pipe {
		return exitTrouble, usagef("--pty and --pipe exclude each other")
	}
	n, err := e.Paths.LoadPlan(pos[0])
	if err != nil {
		return exitTrouble, err
	}
	o.Plan, o.Command, o.Env, o.Families, o.Props = n, cmd, env, families, props
	o.Pty = *pty || (!*pipe && e.StdinIsTerminal != nil && e.StdinIsTerminal())
	argv, err := runcmd.Argv(o)
	if err != nil {
		return exitTrouble, usageError{err.Error()}
	}
	if *dry {
		fmt.Fprintln(e.Stdout, runcmd.Quote(argv))
		return exitOK, nil
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return exitTrouble, fmt.Errorf("systemd-run is needed: %w", err)
	}
	// Replace this process: the terminal, signals and the exit status
	// (systemd-run --wait returns the command's) belong to systemd-run.
	execve := e.Exec
	if execve == nil {
		execve = syscall.Exec
	}
	if err := execve(bin, argv, os.Environ()); err != nil {
		return exitTrouble, fmt.Errorf("exec %s: %w", bin, err)
	}
	return exitOK, nil
}
