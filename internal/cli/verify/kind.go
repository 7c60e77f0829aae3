package verify

import (
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// Kinds of units verify attests: the listed services and sockets, and the
// units the generator adds that run inside the namespace.
const (
	KindService = "service"
	KindSocket  = "socket"
	// KindProxy is a published port's proxy (vpn-publish-NAME-PORT.service):
	// systemd-socket-proxyd, DynamicUser, no capabilities.
	KindProxy = "publish proxy"
	// KindPublishSocket is a published port's host socket
	// (vpn-publish-NAME-PORT.socket), in the host's namespace.
	KindPublishSocket = "published socket"
	// KindPortFwd is the lease helper vpn-pf@NAME: root with CAP_NET_ADMIN
	// only (the forwarded-port set of its namespace's firewall).
	KindPortFwd = "port forwarding"
)

// findUnit returns the plan that runs unit, the unit's plan entry (listed
// services only) and its kind.
func findUnit(plans []paths.PlanFile, unit string) (*plan.Namespace, *plan.Unit, string) {
	for _, pf := range plans {
		n := pf.Plan
		if n == nil {
			continue
		}
		for i, u := range n.Services {
			if u.Name == unit {
				return n, &n.Services[i], KindService
			}
		}
		for i, u := range n.Sockets {
			if u.Name == unit {
				return n, &n.Sockets[i], KindSocket
			}
		}
		for _, p := range n.Publish {
			if p.Activate == "" && p.Unit+".service" == unit {
				return n, nil, KindProxy
			}
			if p.Unit+".socket" == unit {
				return n, nil, KindPublishSocket
			}
		}
		if n.PortForwarding != nil && unit == units.Instance(units.PfTemplate, n.Name) {
			return n, nil, KindPortFwd
		}
	}
	return nil, nil, ""
}

// allowedCaps is the capability bounding set the unit may have.
func allowedCaps(f Facts) map[string]bool {
	out := map[string]bool{}
	switch f.Kind {
	case KindService:
		if f.Service != nil {
			for _, c := range f.Service.Capabilities {
				out[c] = true
			}
		}
	case KindPortFwd:
		out["CAP_NET_ADMIN"] = true
	}
	return out
}
