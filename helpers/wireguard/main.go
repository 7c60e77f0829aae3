// Command vpn-confinement-wireguard runs the WireGuard tunnel of one
// confinement namespace (vpn-wg@NAME.service, Type=notify):
//
//	vpn-confinement-wireguard [-plan PATH] [-v] run NAME    bring up, notify READY, watch, tear down on SIGTERM
//	vpn-confinement-wireguard [-plan PATH] [-v] down NAME   remove what a tunnel left (idempotent)
//
// It must run in the socket birthplace namespace (systemd puts it there).
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
	skel.Main("vpn-confinement-wireguard", map[string]skel.Verb{
		"run": wireguard.RunHelper,
		"down": func(_ context.Context, n *plan.Namespace, log *journal.Logger) error {
			return wireguard.Down(n, log)
		},
	})
}
