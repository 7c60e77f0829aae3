// Command vpn-confinement-generator is a systemd generator: it compiles
// /etc/vpn-confinement.d/NAME.yaml files into unit drop-ins and plans.
// See vpn-confinement-generator(8). All logic lives in internal/generator;
// this file only handles arguments, logging and writing.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/generator"
	"github.com/vpn-confinement/vpn-confinement/internal/genout"
	"github.com/vpn-confinement/vpn-confinement/internal/kmsg"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet(units.Generator, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dryRun := fs.Bool("dry-run", false, "print what would be written instead of writing it")
	configDir := fs.String("config-dir", envOr("VPN_CONFINEMENT_CONFIG_DIR", generator.DefaultConfigDir), "directory of NAME.yaml files (env VPN_CONFINEMENT_CONFIG_DIR)")
	unitPath := fs.String("unit-path", os.Getenv("VPN_CONFINEMENT_UNIT_PATH"), "colon-separated unit search path for conflict checks (env VPN_CONFINEMENT_UNIT_PATH; default: the system unit path)")
	stateDir := fs.String("state-dir", envOr("VPN_CONFINEMENT_STATE_DIR", plan.StateDir), "directory of units recorded at each namespace's last good start (env VPN_CONFINEMENT_STATE_DIR)")
	passwd := fs.String("passwd", envOr("VPN_CONFINEMENT_PASSWD", "/etc/passwd"), "passwd file for services' home directories, \"-\" for none (env VPN_CONFINEMENT_PASSWD)")
	noKmsg := fs.Bool("no-kmsg", false, "log to stderr instead of /dev/kmsg")
	verbose := fs.Bool("v", false, "verbose: also log what is generated")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags] NORMAL-DIR [EARLY-DIR LATE-DIR]\n       %s -dry-run [flags]\n\n", units.Generator, units.Generator)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dirs := fs.Args()
	if !(len(dirs) == 1 || len(dirs) == 3 || (*dryRun && len(dirs) == 0)) {
		fs.Usage()
		return 2
	}
	// Under systemd stderr goes nowhere useful this early; the kernel log
	// reaches the journal once it runs.
	log := kmsg.Open(units.Generator, !*noKmsg && !*dryRun, *verbose)
	opts := generator.Options{ConfigDir: *configDir, StateDir: *stateDir, PasswdFile: *passwd}
	if *unitPath != "" {
		opts.UnitPath = strings.Split(*unitPath, ":")
	}
	// Fail closed even when we fail: if compiling breaks (a bug that
	// panics, a config dir that cannot be read), block every unit any
	// config file names or any namespace ran, rather than writing nothing
	// and letting them start on the host network.
	fallback := func(why string) int {
		log.Logf(kmsg.Err, "%s; blocking every unit named in %s or recorded in %s", why, opts.ConfigDir, opts.StateDir)
		if *dryRun {
			return 1
		}
		fb := generator.Fallback(opts)
		if err := genout.Write(dirs[0], fb.Files, fb.Links); err != nil {
			log.Logf(kmsg.Err, "write fallback output: %v", err)
		}
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			code = fallback(fmt.Sprintf("internal error: %v", r))
		}
	}()
	out, err := generator.Generate(opts)
	if err != nil {
		return fallback(err.Error())
	}
	invalid := 0
	for _, r := range out.Results {
		for _, d := range r.Diags {
			pri := kmsg.Warning
			if d.Severity == 0 {
				pri = kmsg.Err
			}
			log.Logf(pri, "%s", d.String())
		}
		if r.Plan == nil {
			invalid++
			log.Logf(kmsg.Err, "%s is invalid: namespace %s is not built and its units are blocked", r.File, r.Name)
		} else {
			log.Logf(kmsg.Debug, "%s: namespace %s compiled (%d services, %d sockets)", r.File, r.Name, len(r.Plan.Services), len(r.Plan.Sockets))
		}
	}
	for _, s := range out.Strays {
		pri := kmsg.Warning
		if s.Blocks {
			pri = kmsg.Err
		}
		log.Logf(pri, "%s", s.String())
	}
	for _, o := range out.Orphans {
		log.Logf(kmsg.Warning, "%s", strings.TrimPrefix(o.String(), "warning: "))
	}
	for _, u := range sortedKeys(out.Blocked) {
		log.Logf(kmsg.Err, "blocking %s: it is confined by invalid %s", u, out.Blocked[u])
	}
	if *dryRun {
		printTree(stdout, out)
		return exitCode(invalid)
	}
	// Write into the normal dir only, so that admins' units and drop-ins in
	// /etc/systemd/system still override ours.
	if err := genout.Write(dirs[0], out.Files, out.Links); err != nil {
		log.Logf(kmsg.Err, "write output: %v", err)
		return 1
	}
	return 0
}

// exitCode for -dry-run: non-zero when a file is invalid, so scripts can use
// it as a check. When run by systemd the generator exits 0 after writing its
// output (blocked units included): a failing generator must never be the
// reason a boot degrades, and its output is what keeps units confined.
func exitCode(invalid int) int {
	if invalid > 0 {
		return 1
	}
	return 0
}

func printTree(w io.Writer, out *generator.Output) {
	for _, p := range sortedKeys(out.Files) {
		fmt.Fprintf(w, "==> %s <==\n%s\n", p, out.Files[p])
	}
	for _, p := range sortedKeys(out.Links) {
		fmt.Fprintf(w, "==> %s -> %s <==\n\n", p, filepath.Clean(out.Links[p]))
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
