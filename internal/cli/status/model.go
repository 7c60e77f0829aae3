// Package status implements `vpn-confinement status`: what runs, per
// namespace, next to what was compiled. Collect reads systemd, /proc and
// the kernel (linux only); Assess turns the facts into a state and a list
// of problems (pure, tested on hand-made facts); the JSON form of Report
// is a stable interface for monitoring.
package status

import (
	"net/netip"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/kstate"
)

// States of a namespace, from best to worst.
const (
	StateUp       = "up"       // namespace, kill switch and tunnel in place
	StateDown     = "down"     // stopped cleanly: no namespace, units inactive
	StateDegraded = "degraded" // fail-closed but not working (no tunnel, no handshake...)
	StateFailed   = "failed"   // a unit of the chain or a confined unit failed
	StateUnsafe   = "unsafe"   // confinement is broken: act now
	StateUnknown  = "unknown"  // the state could not be read (not root, plan unreadable)
)

// HandshakeStale is when a handshake is considered old: WireGuard
// re-handshakes every 2 minutes while traffic flows and drops a session
// after 3 (REJECT_AFTER_TIME).
const HandshakeStale = 180 * time.Second

// Report is the status of every compiled namespace.
type Report struct {
	// Systemd is "running" or why unit states are unknown.
	Systemd    string      `json:"systemd"`
	Namespaces []Namespace `json:"namespaces"`
	// NotCompiled lists namespace files without a plan.
	NotCompiled []NotCompiled `json:"notCompiled"`
	// Tripwire is the host-side tripwire (tripwire.go); nil when it was
	// not read (not root).
	Tripwire *HostTripwire `json:"tripwire"`
	// Orphans are namespaces that run, or ran, without a file (orphans.go).
	Orphans []Orphan `json:"orphans"`
}

// NotCompiled is a configuration file the running system does not use.
type NotCompiled struct {
	File      string `json:"file"`
	Namespace string `json:"namespace"`
	Reason    string `json:"reason"`
}

// Namespace is the status of one namespace.
type Namespace struct {
	Name   string `json:"name"`
	Config string `json:"config"`
	Plan   string `json:"plan"`
	State  string `json:"state"`
	// Problems make status exit 1; Notes are worth knowing.
	Problems []string `json:"problems"`
	Notes    []string `json:"notes"`
	// Errors say what could not be read.
	Errors []string `json:"errors"`

	Units    []Unit `json:"units"`    // vpn-ns@, vpn-wg@, vpn-pin@
	Confined []Unit `json:"confined"` // the listed services and sockets

	Netns      Netns            `json:"netns"`
	Interfaces []kstate.Link    `json:"interfaces"`
	Routes     []kstate.Route   `json:"routes"`
	Tunnel     Tunnel           `json:"tunnel"`
	Firewall   *kstate.Firewall `json:"firewall"`
	Pinning    *Pinning         `json:"pinning,omitempty"`
	DNS        DNS              `json:"dns"`
	HostLink   *HostLink        `json:"hostLink,omitempty"`

	// Round-2 sections, one file each: what it is, how it is read, how it
	// is assessed and shown.
	Supervisor     *Supervisor        `json:"supervisor"`               // tunnel.go: vpn-wg@'s state file
	Pending        *PendingPlan       `json:"pendingPlan"`              // pending.go: compiled vs applied plan
	Tripwire       *NamespaceTripwire `json:"tripwire"`                 // tripwire.go: host-side drop counter
	Published      []Published        `json:"published"`                // publish.go: published ports (socket, holder, listeners)
	ToHost         *ToHost            `json:"toHost,omitempty"`         // publish.go: egress.toHost exceptions
	PortForwarding *PortForwarding    `json:"portForwarding,omitempty"` // portfwd.go: the provider lease
}

// Unit is a unit's state; for confined units with a main process, whether
// that process is inside the namespace.
type Unit struct {
	Name        string `json:"unit"`
	LoadState   string `json:"loadState"`
	ActiveState string `json:"activeState"`
	SubState    string `json:"subState"`
	MainPID     int    `json:"mainPID"`
	// ControlGroup is the unit's cgroup path ("" when it has none);
	// FreezerState is "running" or "frozen" (onTunnelLoss: freeze).
	ControlGroup string `json:"controlGroup,omitempty"`
	FreezerState string `json:"freezerState,omitempty"`
	// InNamespace is set for confined units with a main PID.
	InNamespace  *bool  `json:"inNamespace,omitempty"`
	ProcessNetns string `json:"processNetns,omitempty"`
}

// Netns is the namespace pin.
type Netns struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
	ID      string `json:"id,omitempty"` // net:[INODE]
}

// Tunnel is the WireGuard device inside the namespace.
type Tunnel struct {
	Interface string `json:"interface"`
	// Configured is the plan's backend (auto, kernel, userspace); Backend
	// what runs: "kernel" (link kind wireguard) or "userspace"
	// (wireguard-go, link kind tun), "" when absent.
	Configured string         `json:"configuredBackend"`
	Backend    string         `json:"backend"`
	Present    bool           `json:"present"`
	Up         bool           `json:"up"`
	Addresses  []netip.Prefix `json:"addresses"`
	MTU        int            `json:"mtu,omitempty"`
	ListenPort int            `json:"listenPort,omitempty"`
	PublicKey  string         `json:"publicKey,omitempty"`
	Peers      []Peer         `json:"peers"`
}

// Peer is a configured peer and what the device reports about it.
type Peer struct {
	PublicKey string `json:"publicKey"`
	// ConfiguredEndpoint is the plan's (host:port, possibly a hostname);
	// Endpoint the address the device uses now.
	ConfiguredEndpoint string `json:"configuredEndpoint,omitempty"`
	// Failover are the further endpoints (endpoints: [a, b, ...]).
	Failover        []string       `json:"failoverEndpoints,omitempty"`
	Endpoint        string         `json:"endpoint,omitempty"`
	LatestHandshake *time.Time     `json:"latestHandshake,omitempty"`
	HandshakeAge    *int64         `json:"handshakeAgeSeconds,omitempty"`
	RxBytes         int64          `json:"rxBytes"`
	TxBytes         int64          `json:"txBytes"`
	AllowedIPs      []netip.Prefix `json:"allowedIPs"`
	Keepalive       int            `json:"persistentKeepalive,omitempty"`
	// OnDevice is false when the plan's peer is missing from the device.
	OnDevice bool `json:"onDevice"`
}

// Pinning is the endpoint-pinning table in the socket namespace.
type Pinning struct {
	Namespace string           `json:"socketNamespace"` // "init" or a name
	Table     string           `json:"table"`
	Mark      uint32           `json:"fwMark"`
	Firewall  *kstate.Firewall `json:"firewall"`
}

// DNS is the resolver policy and the generated resolv.conf.
type DNS struct {
	Mode       string   `json:"mode"`
	Servers    []string `json:"servers"`
	Search     []string `json:"search,omitempty"`
	HostIPC    bool     `json:"allowHostResolverIPC"`
	ResolvConf string   `json:"resolvConf,omitempty"`
	// Generated lists the nameservers of the generated resolv.conf (nil
	// when it does not exist); Current says whether that file is what the
	// plan generates now (false after a DNS change without a restart).
	Generated []string `json:"generatedServers"`
	Current   bool     `json:"generatedIsCurrent"`
}

// HostLink is the veth pair between host and namespace.
type HostLink struct {
	HostIf       string   `json:"hostIf"`
	NsIf         string   `json:"nsIf"`
	Subnet       string   `json:"subnet"`
	HostAddr     string   `json:"hostAddress"`
	NsAddr       string   `json:"nsAddress"`
	PublishedTCP []uint16 `json:"publishedTcp"`
	HostPresent  bool     `json:"hostSidePresent"`
	HostUp       bool     `json:"hostSideUp"`
	NsPresent    bool     `json:"nsSidePresent"`
}
