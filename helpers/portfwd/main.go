// Command vpn-confinement-portfwd keeps the provider-forwarded port of one
// confinement namespace (vpn-pf@NAME.service, inside the namespace):
//
//	vpn-confinement-portfwd [-plan PATH] [-v] run NAME    lease, open, hand to the apps; close on loss and at stop
//	vpn-confinement-portfwd [-plan PATH] [-v] down NAME   close the port and remove its files (ExecStopPost=)
//
// All logic lives in internal/portfwd.
package main

import (
	"context"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd"
	"github.com/vpn-confinement/vpn-confinement/internal/skel"
)

func main() {
	skel.Main("vpn-confinement-portfwd", map[string]skel.Verb{
		"run": func(ctx context.Context, n *plan.Namespace, log *journal.Logger) error {
			return portfwd.Run(ctx, n, log, portfwd.Options{})
		},
		"down": func(_ context.Context, n *plan.Namespace, log *journal.Logger) error {
			return portfwd.Down(n, log)
		},
	})
}
