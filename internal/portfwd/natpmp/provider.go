package natpmp

import (
	"context"

	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
)

// Proton is the ProtonVPN forwarded port as a lease.Provider: acquiring
// and renewing are the same MapProton exchange (the port may change on
// any renewal), and the lease loop renews at 3/4 of the granted lifetime,
// which for Proton's 60 s is the customary 45 s.
type Proton struct {
	Client *Client
}

var _ lease.Provider = Proton{}

// Acquire maps the Proton port.
func (p Proton) Acquire(ctx context.Context) (lease.Lease, error) {
	pair, err := p.Client.MapProton(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	return lease.Lease{Port: pair.Port(), Lifetime: pair.Lifetime()}, nil
}

// Renew maps the Proton port again.
func (p Proton) Renew(ctx context.Context, _ lease.Lease) (lease.Lease, error) {
	return p.Acquire(ctx)
}

// Release asks the gateway to drop the mappings (see UnmapProton).
func (p Proton) Release(ctx context.Context, _ lease.Lease) error {
	return p.Client.UnmapProton(ctx)
}
