// Command vpn-confinement-pin loads the endpoint pinning table of one
// confinement namespace into its own namespace, the socket birthplace
// (vpn-pin@NAME.service, Type=oneshot):
//
//	vpn-confinement-pin [-plan PATH] [-v] up NAME     resolve endpoints here, load the pin table
//	vpn-confinement-pin [-plan PATH] [-v] down NAME   delete the pin table (idempotent)
//
// All logic lives in internal/wireguard.
package main

import (
	"context"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/skel"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

func main() {
	skel.Main("vpn-confinement-pin", map[string]skel.Verb{
		"up": func(ctx context.Context, n *plan.Namespace, log *journal.Logger) error {
			return wireguard.PinUp(ctx, n, nil, log)
		},
		"down": func(_ context.Context, n *plan.Namespace, log *journal.Logger) error {
			return wireguard.PinDown(n, log)
		},
	})
}
