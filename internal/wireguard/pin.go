//go:build linux

package wireguard

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// The pin table lives in the socket birthplace, which is this process's own
// namespace (systemd placed vpn-pin@/vpn-wg@ there). The firewall package
// is given a nil namespace: its netlink socket is then opened on the
// calling thread, without setns(). That is what lets vpn-pin@ work with
// only CAP_NET_ADMIN in a non-init birthplace (reference defect §8.5).

// PinUp is `vpn-confinement-pin up`: resolve the peer endpoints here and
// load the pin table of n into this namespace in one transaction.
func PinUp(ctx context.Context, n *plan.Namespace, r Resolver, log *journal.Logger) error {
	if n.WireGuard.Pinning == nil {
		return fmt.Errorf("namespace %s has no endpoint pinning in its plan", n.Name)
	}
	eps, err := ResolveEndpoints(ctx, r, n.WireGuard.Peers)
	if err != nil {
		return err
	}
	set := PinSet(eps)
	if err := firewall.ApplyPin(nil, firewall.BuildPin(n, set)); err != nil {
		return fmt.Errorf("load pin table: %w", err)
	}
	log.Infof("pinned the outer packets of %s (mark %#x) to %v in table %s", n.WireGuard.Interface, n.WireGuard.Pinning.FwMark, set, n.WireGuard.Pinning.Table)
	return nil
}

// PinDown is `vpn-confinement-pin down`: delete the pin table (idempotent).
func PinDown(n *plan.Namespace, log *journal.Logger) error {
	if n.WireGuard.Pinning == nil {
		return nil
	}
	if err := firewall.DeleteTable(nil, n.WireGuard.Pinning.Table); err != nil {
		return fmt.Errorf("delete pin table: %w", err)
	}
	return nil
}

// updatePinsHere replaces the pin set in this namespace.
func updatePinsHere(table string, eps []netip.AddrPort) error {
	if err := firewall.UpdatePinEndpoints(nil, table, eps); err != nil {
		return fmt.Errorf("update pin set: %w", err)
	}
	return nil
}
