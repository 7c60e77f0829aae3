package ct

import (
	"fmt"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// DropInProperties reads the generator's drop-in for unit inside the
// container and turns it into systemd-run -p arguments, so a probe runs in a
// transient unit confined exactly like the listed unit (same namespace, DNS
// mounts, hidden paths, capabilities, IP filter, hardening).
func (c *Container) DropInProperties(unit string) ([]string, error) {
	path := "/run/systemd/generator/" + unit + ".d/50-vpn-confinement.conf"
	b, err := c.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read drop-in of %s: %w", unit, err)
	}
	props := units.TransientProperties(b)
	return props, nil
}

// ProbeOpts says how a confined probe runs.
type ProbeOpts struct {
	Unit string // listed unit whose drop-in to copy
	Root bool   // run as root instead of DynamicUser
	// NoStart drops the drop-in's Wants=/Requires= of the tunnel: the
	// probe must not start a tunnel the test stopped on purpose.
	NoStart    bool
	ExtraProps []string
	Timeout    time.Duration
}

// RunConfined runs argv inside a transient unit confined like opts.Unit and
// waits for it (systemd-run --wait --pipe).
func (c *Container) RunConfined(opts ProbeOpts, argv ...string) Result {
	props, err := c.DropInProperties(opts.Unit)
	if err != nil {
		return Result{Code: -1, Stderr: err.Error()}
	}
	if opts.NoStart {
		var kept []string
		for i := 0; i+1 < len(props); i += 2 {
			if strings.HasPrefix(props[i+1], "Wants=") || strings.HasPrefix(props[i+1], "Requires=") {
				continue
			}
			kept = append(kept, props[i], props[i+1])
		}
		props = kept
	}
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	args := []string{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec"}
	if !opts.Root {
		args = append(args, "-p", "DynamicUser=yes")
	}
	args = append(args, props...)
	args = append(args, opts.ExtraProps...)
	args = append(args, "--")
	args = append(args, argv...)
	return c.RunTimeout(opts.Timeout, args...)
}

// Probe runs vpnc-probe confined like unit; true means the path is open.
func (c *Container) Probe(unit string, probe ...string) (bool, Result) {
	return c.ProbeWith(ProbeOpts{Unit: unit}, probe...)
}

// ProbeWith is Probe with options.
func (c *Container) ProbeWith(o ProbeOpts, probe ...string) (bool, Result) {
	r := c.RunConfined(o, append([]string{"/usr/local/bin/vpnc-probe", "-timeout", "1500ms"}, probe...)...)
	return r.Code == 0 && strings.HasPrefix(r.Stdout, "OPEN"), r
}
