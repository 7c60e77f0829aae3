//go:build linux

package namespace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/sockdiag"
)

// Published ports are a socket unit in the host's namespace and the
// service that holds its listening socket once activated (the proxy, or
// the listed service of publish[].unit). Three systemd 252 behaviours
// (measured, FACTS §9 and test/e2e TestPublish) decide how they are
// managed here:
//
//   - A socket unit whose file vanishes at daemon-reload loses PID 1's
//     listening fd but stays "active"; when the file comes back it stays
//     "active" without listening. Starting it again is a no-op, so a
//     socket that is active but not held by PID 1 is restarted.
//   - An activated Accept=no service keeps its inherited copy of the
//     listening socket after PID 1 closed its own, and serves from it:
//     removing an entry must stop that service too, or the port stays open.
//   - A socket unit refuses to start while its service is active ("Socket
//     service ... already active, refusing"), and cannot bind while that
//     service holds the old listener: the service stops first.

// publishUnits returns the socket and service names of p.
func publishUnits(p plan.Publish) (socket, proxy string) {
	return p.Unit + ".socket", p.Unit + ".service"
}

// holder is the unit that holds p's listening socket once activated.
func holder(p plan.Publish) string {
	if p.Activate != "" {
		return p.Activate
	}
	return p.Unit + ".service"
}

func samePublish(a, b plan.Publish) bool {
	return a.Port == b.Port && a.Activate == b.Activate && a.BindToDevice == b.BindToDevice && slices.Equal(a.Listen, b.Listen)
}

// systemdJobs runs unit jobs over D-Bus and waits for each.
type systemdJobs struct {
	ctx context.Context
	c   *sddbus.Conn
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (j systemdJobs) run(what string, f jobFunc, unit string) error {
	ch := make(chan string, 1)
	if _, err := f(j.ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", what, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job %s", what, unit, res)
		}
		return nil
	case <-j.ctx.Done():
		return fmt.Errorf("%s %s: %w", what, unit, j.ctx.Err())
	}
}

// start queues a start job without waiting for it: the published units
// are ordered after vpn-ns@, whose reload job is what runs this, so their
// start jobs wait for us (measured: waiting deadlocks until the timeout).
func (j systemdJobs) start(u string) error {
	if _, err := j.c.StartUnitContext(j.ctx, u, "replace", nil); err != nil {
		return fmt.Errorf("start %s: %w", u, err)
	}
	return nil
}

// stop stops u and waits (a stop job is not held back by the reload);
// a unit systemd does not know is stopped already.
func (j systemdJobs) stop(u string) error {
	err := j.run("stop", j.c.StopUnitContext, u)
	if err != nil && isNoSuchUnit(err) {
		return nil
	}
	return err
}

func (j systemdJobs) active(u string) bool {
	p, err := j.c.GetUnitPropertyContext(j.ctx, u, "ActiveState")
	if err != nil {
		return false
	}
	s, _ := p.Value.Value().(string)
	return s == "active" || s == "activating" || s == "reloading"
}

// reloadPublish brings the published ports from old to n: removed entries
// are stopped (socket and holder), changed or stale ones replaced, new
// ones started.
func reloadPublish(j systemdJobs, old, n *plan.Namespace, log *journal.Logger) []error {
	var errs []error
	want := map[string]plan.Publish{}
	for _, p := range n.Publish {
		want[p.Unit] = p
	}
	for _, q := range old.Publish {
		if _, ok := want[q.Unit]; ok {
			continue
		}
		sock, proxy := publishUnits(q)
		// The holder first: it serves from its own copy of the listener.
		for _, u := range []string{holder(q), proxy, sock} {
			if err := j.stop(u); err != nil {
				errs = append(errs, err)
			}
		}
		log.Infof("namespace %s: %s removed: stopped %s and %s", n.Name, q.Unit, sock, holder(q))
	}
	socks, sockErr := sockdiag.TCP(nil)
	for _, p := range n.Publish {
		sock, _ := publishUnits(p)
		var q *plan.Publish
		for i := range old.Publish {
			if old.Publish[i].Unit == p.Unit {
				q = &old.Publish[i]
			}
		}
		reason := ""
		switch {
		case q != nil && !samePublish(*q, p):
			reason = "changed"
		case !j.active(sock) || sockErr != nil:
		default:
			held, err := heldByInit(socks, p.Listen)
			if err != nil {
				errs = append(errs, fmt.Errorf("check %s: %w", sock, err))
			} else if !held {
				reason = "active but systemd holds no listener (its unit file was gone at a daemon-reload)"
			}
		}
		if reason == "" {
			if err := j.start(sock); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := replacePublish(j, q, p); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Infof("namespace %s: %s %s: restarted", n.Name, sock, reason)
	}
	if sockErr != nil {
		errs = append(errs, fmt.Errorf("check published sockets: %w", sockErr))
	}
	return errs
}

// replacePublish restarts p's socket: its holders stop first (the old and
// the new one), and a listed service that was running is started again.
func replacePublish(j systemdJobs, q *plan.Publish, p plan.Publish) error {
	sock, proxy := publishUnits(p)
	holders := []string{proxy}
	if q != nil && q.Activate != "" {
		holders = append(holders, q.Activate)
	}
	if p.Activate != "" && !slices.Contains(holders, p.Activate) {
		holders = append(holders, p.Activate)
	}
	var restart []string
	for _, u := range holders {
		if u != proxy && j.active(u) {
			restart = append(restart, u)
		}
		if err := j.stop(u); err != nil {
			return err
		}
	}
	if err := j.stop(sock); err != nil {
		return err
	}
	if err := j.start(sock); err != nil {
		return err
	}
	for _, u := range restart {
		if u == p.Activate {
			if err := j.start(u); err != nil {
				return err
			}
		}
	}
	return nil
}

// heldByInit reports whether every listen address has a listening socket
// that PID 1 holds (the socket unit's own fd, not only an activated
// service's inherited copy). It fails when PID 1's descriptors cannot be
// read (it needs CAP_SYS_PTRACE), so a reader without it never takes a
// healthy socket for a stale one.
func heldByInit(socks []sockdiag.Socket, listen []string) (bool, error) {
	if _, err := os.ReadDir("/proc/1/fd"); err != nil {
		return false, fmt.Errorf("read PID 1's file descriptors: %w", err)
	}
	for _, l := range listen {
		ap, ok := sockdiag.ParseListen(l)
		if !ok {
			return false, fmt.Errorf("listen address %q", l)
		}
		var inodes []uint32
		for _, s := range sockdiag.Listeners(socks, ap) {
			inodes = append(inodes, s.Inode)
		}
		held := false
		for _, hs := range sockdiag.Holders("/proc", inodes) {
			for _, h := range hs {
				held = held || h.PID == 1
			}
		}
		if !held {
			return false, nil
		}
	}
	return true, nil
}

// stopPublished stops the published units of every plan given (the one
// the namespace runs and the current one) when the namespace goes down.
// Loaded units are stopped by BindsTo= already; this reaches the ones
// whose files vanished at a daemon-reload (an entry removed, the file
// invalid), which no dependency stops any more and whose activated
// service would otherwise keep listening on the host. Best effort: the
// jobs are queued, not waited for (this runs inside vpn-ns@'s own stop).
func stopPublished(name string, plans []*plan.Namespace, log *journal.Logger) {
	var us []string
	for _, n := range plans {
		if n == nil {
			continue
		}
		for _, p := range n.Publish {
			sock, proxy := publishUnits(p)
			for _, u := range []string{holder(p), proxy, sock} {
				if !slices.Contains(us, u) {
					us = append(us, u)
				}
			}
		}
	}
	if len(us) == 0 {
		return
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return // not under systemd (root tests)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		log.Warnf("namespace %s: cannot stop its published units: %v", name, err)
		return
	}
	defer c.Close()
	log.Infof("namespace %s: stopping its published units: %s", name, strings.Join(us, " "))
	var errs []error
	for _, u := range us {
		if _, err := c.StopUnitContext(ctx, u, "replace", nil); err != nil && !isNoSuchUnit(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		log.Warnf("namespace %s: stop published units: %v", name, errors.Join(errs...))
	}
}

func isNoSuchUnit(err error) bool {
	return strings.Contains(err.Error(), "NoSuchUnit") || strings.Contains(err.Error(), "not loaded")
}
