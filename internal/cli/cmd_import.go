package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/wgimport"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
)

func cmdImport(e *Env, args []string) (int, error) {
	fs := newFlags("import-wg-quick")
	o := wgimport.Options{}
	fs.StringVar(&o.Name, "name", "", "")
	fs.StringVar(&o.Dir, "dir", e.Paths.ConfigDir, "")
	fs.StringVar(&o.IPv6, "ipv6", "disable", "")
	fs.StringVar(&o.Interface, "interface", "", "")
	var services, dns, publish stringList
	fs.Var(&services, "service", "")
	fs.Var(&publish, "publish", "")
	fs.Var(&dns, "dns", "")
	unitPath := fs.String("unit-path", strings.Join(e.Paths.UnitPath, ":"), "")
	pos, _, err := parseArgs(fs, args, 0)
	if err != nil {
		return exitTrouble, err
	}
	if len(pos) != 1 {
		return exitTrouble, usagef("expected one wg-quick FILE, got %d arguments", len(pos))
	}
	o.File = pos[0]
	o.Services, o.DNS, o.Publish = services, dns, publish
	o.UnitPath = splitPath(*unitPath)
	o.StateDir = e.Paths.StateDir
	res, err := wgimport.Import(o)
	var refusal *wgimport.Error
	switch {
	case errors.As(err, &refusal):
		return exitFindings, err // the file has problems, or the result would not validate
	case err != nil:
		return exitTrouble, err
	}
	w := e.Stdout
	fmt.Fprintf(w, "imported %s as namespace %s:\n", o.File, res.Name)
	fmt.Fprintf(w, "  wrote %s\n", res.YAMLPath)
	fmt.Fprintf(w, "  wrote %s (private key, mode 0600)\n", res.KeyPath)
	for _, p := range res.PSKPaths {
		fmt.Fprintf(w, "  wrote %s (preshared key, mode 0600)\n", p)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(w, "  note: the key files are owned by uid %d; chown them to root (the tunnel unit reads them as root)\n", os.Geteuid())
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	f := res.Report.Files[0]
	verdict := "valid"
	if !f.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(w, "validation: %s\n", verdict)
	for _, d := range append(append(config.Diags{}, f.Errors...), f.Warnings...) {
		fmt.Fprintf(w, "  %s\n", d.String())
	}
	if !f.Valid {
		return exitFindings, nil
	}
	if len(o.Services) == 0 {
		fmt.Fprintf(w, "next: list the services to confine under services: in %s, then run systemctl daemon-reload\n", res.YAMLPath)
	} else {
		fmt.Fprintln(w, "next: review the file, then run systemctl daemon-reload")
	}
	return exitOK, nil
}
