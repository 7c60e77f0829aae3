// Package runcmd implements `vpn-confinement run NAME -- CMD`: an ad-hoc
// command in a transient service confined exactly like a listed service.
// The properties are not a second copy of the confinement rules: they are
// the drop-in internal/units renders for a listed service, turned line by
// line into systemd-run -p KEY=VALUE arguments (as the e2e probes do), so
// what run gives is what a service gets.
package runcmd

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/hardening"
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
	// Families are address families beyond the drop-in's (AF_UNIX,
	// AF_INET, AF_INET6, AF_NETLINK), as a listed service's
	// extraAddressFamilies.
	Families []string
	// Props are extra KEY=VALUE unit properties, limited to SafeProps.
	Props []string
}

var familyRe = regexp.MustCompile(`^AF_[A-Z0-9]+$`)

// SafeProps are the unit properties run passes through with -p: resource
// limits and the process environment, which cannot weaken confinement,
// and paths, checked: ReadWritePaths= never into what privileged host
// processes load (hardening.WriteRefusal), ReadOnlyPaths= and
// InaccessiblePaths= only add. Everything else (capabilities, user and
// group, mounts, address families, IP filters, output files that PID 1
// would open) is refused: those are what the drop-in decides.
var SafeProps = map[string]func(v string) error{
	"Environment": nonEmpty, "WorkingDirectory": nonEmpty, "UMask": nonEmpty, "Nice": nonEmpty,
	"CPUQuota": nonEmpty, "CPUWeight": nonEmpty, "IOWeight": nonEmpty, "MemoryMax": nonEmpty, "MemoryHigh": nonEmpty,
	"TasksMax": nonEmpty, "LimitNOFILE": nonEmpty, "LimitNPROC": nonEmpty, "LimitCORE": nonEmpty, "LimitMEMLOCK": nonEmpty,
	"RuntimeMaxSec": nonEmpty, "TimeoutStopSec": nonEmpty, "KillSignal": nonEmpty,
	"ReadOnlyPaths": nonEmpty, "InaccessiblePaths": nonEmpty,
	"ReadWritePaths": func(v string) error {
		if err := nonEmpty(v); err != nil {
			return err
		}
		for _, f := range strings.Fields(v) {
			p := strings.TrimLeft(f, "-+")
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("%q is not an absolute path", p)
			}
			if why := hardening.WriteRefusal(filepath.Clean(p)); why != "" {
				return fmt.Errorf("%s", why)
			}
		}
		return nil
	},
}

// nonEmpty refuses an empty value: for list settings it would reset what
// the drop-in sets.
func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("an empty value resets the setting")
	}
	return nil
}

// SafePropNames lists SafeProps for messages.
func SafePropNames() string {
	names := make([]string, 0, len(SafeProps))
	for k := range SafeProps {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func checkProp(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("-p %q: want KEY=VALUE", kv)
	}
	if strings.ContainsAny(kv, "\n\r\x00") {
		return fmt.Errorf("-p %q: control characters", kv)
	}
	check, ok := SafeProps[k]
	if !ok {
		return fmt.Errorf("-p %s: not passed through, the confinement decides it (allowed: %s)", k, SafePropNames())
	}
	if err := check(v); err != nil {
		return fmt.Errorf("-p %s: %v", kv, err)
	}
	return nil
}

var userRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)

// Unit is the synthetic listed unit a run is confined as: the profile,
// root or not (a root command gets the root set of its profile and
// ProtectSystem=strict, as a listed service with allowRoot does), extra
// address families.
func Unit(profile string, root bool, families []string) plan.Unit {
	return plan.Unit{Name: "run.service", HardeningProfile: profile, Root: root, ExtraAddressFamilies: families,
		Capabilities: hardening.Capabilities(root, profile == plan.HardeningStrict, nil)}
}

// Properties returns the -p arguments that confine a transient service in
// n's namespace like listed unit u: the [Unit] and [Service] settings of
// its drop-in, the tripwire hooks (ExecStartPre=+/ExecStopPost=+, which
// systemd-run accepts, measured under systemd 252) included.
func Properties(n *plan.Namespace, u plan.Unit) []string {
	return units.TransientProperties(units.ServiceDropIn(n, u, nil))
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
	var families []string
	for _, f := range o.Families {
		af := strings.ToUpper(f)
		if !strings.HasPrefix(af, "AF_") {
			af = "AF_" + af
		}
		if !familyRe.MatchString(af) {
			return nil, fmt.Errorf("--family %q is not an address family name like AF_PACKET", f)
		}
		families = append(families, af)
	}
	for _, kv := range o.Props {
		if err := checkProp(kv); err != nil {
			return nil, err
		}
	}
	root := o.Root || o.User == "root" || o.User == "0"
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
	argv = append(argv, Properties(o.Plan, Unit(o.Hardening, root, families))...)
	for _, kv := range o.Props {
		argv = append(argv, "-p", kv)
	}
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
