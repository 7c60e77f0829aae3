// Command vpn-confinement-wireguard runs the WireGuard tunnel of one
// confinement namespace (vpn-wg@NAME.service, Type=notify):
//
//	vpn-confinement-wireguard [-plan PATH] [-v] run NAME     bring up, notify READY, keep it up for good, tear down on SIGTERM
//	vpn-confinement-wireguard [-plan PATH] [-v] reload NAME  apply the current plan to the running tunnel (ExecReload=)
//	vpn-confinement-wireguard [-plan PATH] [-v] down NAME    remove what a tunnel left; apply onTunnelLoss if it died (ExecStopPost=)
//
// It must run in the socket birthplace namespace (systemd puts it there).
// All logic lives in internal/tunnel and internal/wireguard.
package main

import (
	"context"
	"runtime/debug"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/skel"
	"github.com/vpn-confinement/vpn-confinement/internal/tunnel"
)

func main() {
	// The unit restarts a dead helper at once (RestartSec=0); the run verb
	// brakes a crash loop itself, before it even loads its plan.
	var restart *tunnel.RestartThrottle
	before := func(ctx context.Context, cmd, name string, log *journal.Logger) error {
		if cmd == "run" {
			// Most of this process's heap is wireguard-go's batches of 64 KiB
			// message buffers (~24 MiB, barely touched), and GOGC=100 lets
			// garbage grow to the size of the live heap before a collection.
			// The garbage is touched: every netlink receive (vishvananda's
			// Receive) allocates and zeroes a 64 KiB array, so a helper's RSS
			// climbed towards 2x its real footprint (P7: 16-33 MiB of 50 at
			// once). 10 % bounds it to a couple of MiB; a collection of this
			// heap (large noscan objects) costs next to nothing.
			debug.SetGCPercent(10)
			restart, _ = tunnel.ThrottleStart(ctx, tunnel.RestartPath(name), log, func(s string) { daemon.SdNotify(false, s) })
		}
		return nil
	}
	skel.MainWith("vpn-confinement-wireguard", map[string]skel.Verb{
		"run": func(ctx context.Context, n *plan.Namespace, log *journal.Logger) error {
			return tunnel.Run(ctx, n, log, tunnel.Options{PlanPath: skel.PlanPath(), Tripwire: tunnel.TripwireCounter(n), Restart: restart})
		},
		"reload": func(_ context.Context, n *plan.Namespace, _ *journal.Logger) error {
			return tunnel.Reload(n.Name, false)
		},
		"down": func(ctx context.Context, n *plan.Namespace, log *journal.Logger) error {
			return tunnel.Down(ctx, n, log, nil)
		},
	}, before)
}
