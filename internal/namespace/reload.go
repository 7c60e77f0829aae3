//go:build linux

package namespace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/resolvconf"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
)

// RecordApplied stores the plan file a namespace was built from (see
// AppliedPath).
func RecordApplied(name, planPath string) error {
	b, err := os.ReadFile(planPath)
	if err != nil {
		return err
	}
	return saveApplied(name, b)
}

// Reload is `vpn-confinement-netns reload NAME` (ExecReload= of vpn-ns@):
// apply plan n, read from planPath, to the running namespace without
// restarting anything. What cannot change live is refused before anything
// changes (plan.LiveDiff, checked here and by the tunnel helper). Then, in
// this order: the firewall, replaced in one transaction (the forwarded
// port carried over), so there is never a moment with a policy weaker
// than the old or the new one; the host link's table; the DNS files,
// rewritten in place (services have them bind-mounted); the running
// tunnel (peers, endpoints, routes, addresses); published ports and port
// forwarding, by starting and stopping their units.
func Reload(ctx context.Context, n *plan.Namespace, planPath string, log *journal.Logger) error {
	applied, err := loadApplied(n.Name)
	if err != nil {
		return err
	}
	if diffs := plan.LiveDiff(applied, n); len(diffs) > 0 {
		return errors.New(plan.DescribeDiffs(diffs))
	}
	tunnelUp := true
	if err := tunnel.Reload(n.Name, true); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "reach the tunnel helper") {
			tunnelUp = false // it reads the new plan when it starts
		} else {
			return fmt.Errorf("the tunnel cannot take the new plan: %w", err)
		}
	}
	ns, err := netns.Open(plan.NetnsPath(n.Name))
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer ns.Close()
	if err := reloadFirewall(ns, n); err != nil {
		return err
	}
	if n.HostLink != nil {
		if err := firewall.Apply(nil, firewall.BuildHostLink(n)); err != nil {
			return fmt.Errorf("host-link firewall: %w", err)
		}
	}
	if err := resolvconf.Rewrite(plan.RuntimePath(n.Name), n.DNS); err != nil {
		return err
	}
	if err := prepareRuntimeFiles(n); err != nil {
		return err
	}
	if err := writeRecord(n); err != nil {
		return err
	}
	if err := RecordApplied(n.Name, planPath); err != nil {
		return err
	}
	var errs []error
	if tunnelUp {
		if err := tunnel.Reload(n.Name, false); err != nil {
			errs = append(errs, fmt.Errorf("tunnel: %w", err))
		}
	}
	if err := reloadUnits(ctx, applied, n, log); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	log.Infof("namespace %s: reloaded %s live", n.Name, planPath)
	return nil
}

// reloadFirewall replaces the namespace's table in one transaction,
// carrying the forwarded port over (the lease helper owns it).
func reloadFirewall(ns *netns.NetNS, n *plan.Namespace) error {
	unlock, err := firewall.Lock(n.Name)
	if err != nil {
		return err
	}
	defer unlock()
	r := firewall.Build(n)
	if s := r.Set(firewall.SetForwarded); s != nil && n.PortForwarding.Protocol != plan.PortForwardStatic {
		if ports, err := firewall.Ports(ns, firewall.TableName, firewall.SetForwarded); err == nil {
			s.Ports = ports
		}
	}
	if err := firewall.Apply(ns, r); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}

// reloadUnits brings the published ports to the new plan
// (reloadPublish), and (re)starts or stops the lease unit when port
// forwarding changed.
func reloadUnits(ctx context.Context, old, n *plan.Namespace, log *journal.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer c.Close()
	errs := reloadPublish(systemdJobs{ctx: ctx, c: c}, old, n, log)
	pf := "vpn-pf@" + n.Name + ".service"
	ob, _ := json.Marshal(old.PortForwarding)
	nb, _ := json.Marshal(n.PortForwarding)
	switch {
	case string(ob) == string(nb):
	case n.PortForwarding == nil:
		_, err = c.StopUnitContext(ctx, pf, "replace", nil)
	default:
		_, err = c.RestartUnitContext(ctx, pf, "replace", nil)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("port forwarding: %w", err))
	}
	if len(errs) > 0 {
		log.Warnf("namespace %s: reload: %v", n.Name, errors.Join(errs...))
	}
	return errors.Join(errs...)
}
