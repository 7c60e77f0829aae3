// Package plan defines the compiled plan of one confinement namespace: the
// validated, normalized, secret-free description that the generator writes
// next to the units it generates and that the helpers apply to the kernel.
//
// The plan is the only contract between compile time (generator, pure) and
// run time (helpers, side effects). Helpers never re-read the YAML for policy:
// what runs is exactly what was compiled at the last daemon-reload. The one
// exception is key material, which the plan only points to (KeySource).
package plan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
)

// Version is bumped on any incompatible change of the JSON layout; helpers
// refuse a plan of another version (fail closed) rather than guess.
const Version = 2

// Defaults for paths. They are variables so tests and packagers can move them.
var (
	// NetnsDir is where named network namespaces are pinned (iproute2 compatible).
	NetnsDir = "/run/netns"
	// RuntimeDir holds per-namespace runtime files (resolv.conf, nsswitch.conf).
	RuntimeDir = "/run/vpn-confinement"
	// StateDir holds the record of units confined at the last good start; the
	// generator reads it to keep blocking those units when a file becomes unparsable.
	StateDir = "/var/lib/vpn-confinement"
	// DefaultGeneratorDir is the normal output dir of system generators; the
	// plan lives in its PlanSubdir.
	DefaultGeneratorDir = "/run/systemd/generator"
)

// PlanSubdir is the directory, inside the generator's normal output dir, that
// holds NAME.json plans.
const PlanSubdir = "vpn-confinement"

// Namespace is the compiled plan of one /etc/vpn-confinement.d/NAME.yaml.
type Namespace struct {
	Version         int       `json:"version"`
	Name            string    `json:"name"`
	Source          string    `json:"source"` // absolute path of the YAML file
	SecurityProfile string    `json:"securityProfile"`
	Autostart       bool      `json:"autostart"`
	DNS             DNS       `json:"dns"`
	IPv6            bool      `json:"ipv6"` // ipv6.mode == tunnel
	Egress          Egress    `json:"egress"`
	Ingress         Ingress   `json:"ingress"`
	HostLink        *HostLink `json:"hostLink,omitempty"`
	WireGuard       WireGuard `json:"wireguard"`
	Services        []Unit    `json:"services,omitempty"`
	Sockets         []Unit    `json:"sockets,omitempty"`
	// Lifecycle: what confined services go through while the tunnel is
	// down (OnTunnelLoss*), and when a live tunnel counts as stalled.
	OnTunnelLoss string   `json:"onTunnelLoss"`
	Watchdog     Watchdog `json:"watchdog"`
	// Publish lists confined ports published on host addresses.
	Publish        []Publish       `json:"publish,omitempty"`
	PortForwarding *PortForwarding `json:"portForwarding,omitempty"`
}

// What happens to confined services while their tunnel is down.
const (
	// OnTunnelLossBlock: they keep running with no way out; traffic
	// resumes by itself when the tunnel is back.
	OnTunnelLossBlock = "block"
	// OnTunnelLossStop: they are stopped, and started again when the
	// tunnel is back.
	OnTunnelLossStop = "stop"
	// OnTunnelLossFreeze: they are frozen (cgroup freezer), and thawed
	// when the tunnel is back.
	OnTunnelLossFreeze = "freeze"
)

// LossMode is OnTunnelLoss, block when unset.
func (n *Namespace) LossMode() string {
	if n.OnTunnelLoss == "" {
		return OnTunnelLossBlock
	}
	return n.OnTunnelLoss
}

// IPFiltered reports whether the listed services get systemd's cgroup IP
// filter (IPAddressDeny=any + IPAddressAllow=), the second egress layer of
// an allowList namespace. It filters addresses only, so it exists only
// when allowedCidrs restricts them (a list of ports alone allows any
// destination on those ports); it is skipped when the tunnel accepts
// inbound connections (inbound ports, port forwarding): their peers are
// arbitrary.
func (n *Namespace) IPFiltered() bool {
	return n.Egress.Mode == EgressAllowList && len(n.Egress.AllowedCIDRs) > 0 &&
		len(n.Ingress.FromTunnelTCP)+len(n.Ingress.FromTunnelUDP) == 0 && n.PortForwarding == nil
}

// Watchdog tunes stall detection. A tunnel is stalled when no handshake
// completed for StallAfterSeconds while it was sending (WireGuard rekeys
// every 120 s while there is traffic, and a session is dead after 180 s);
// an endpoint that never completes a first handshake within
// FirstHandshakeSeconds is failed over to the next one.
type Watchdog struct {
	StallAfterSeconds     int `json:"stallAfterSeconds"`
	FirstHandshakeSeconds int `json:"firstHandshakeSeconds"`
}

// Publish is one published port: sockets on the host (ListenStream=
// values) whose connections reach Port inside the namespace, through a
// confined proxy or, with Activate, handed to a listed service directly.
type Publish struct {
	// Unit is the name (without suffix) of the generated socket and proxy
	// units, vpn-publish-NAME-PORT.
	Unit         string   `json:"unit"`
	Listen       []string `json:"listen"`
	Port         uint16   `json:"port"`
	Activate     string   `json:"activate,omitempty"`
	BindToDevice string   `json:"bindToDevice,omitempty"`
	// LAN: a listen address beyond loopback (reachable from other hosts).
	LAN bool `json:"lan,omitempty"`
}

// Port-forwarding protocols.
const (
	PortForwardNATPMP = "natpmp"
	PortForwardPIA    = "pia"
	PortForwardStatic = "static"
)

// PortForwarding is the provider port-forwarding lease of the namespace.
type PortForwarding struct {
	Protocol string     `json:"protocol"`
	Gateway  netip.Addr `json:"gateway,omitempty"`
	// StaticPort is the port of protocol static.
	StaticPort uint16 `json:"staticPort,omitempty"`
	PIA        *PIA   `json:"pia,omitempty"`
	Apps       []App  `json:"apps,omitempty"`
	// HookUnit is (re)started after every port change and on loss.
	HookUnit string `json:"hookUnit,omitempty"`
}

// PIA is what PIA's port-forwarding API needs.
type PIA struct {
	Hostname    string    `json:"hostname"`
	CAFile      string    `json:"caFile"`
	Credentials KeySource `json:"credentials"`
	TokenURL    string    `json:"tokenURL,omitempty"`
}

// App is a torrent client whose listen port follows the lease.
type App struct {
	Type            string `json:"type"`
	URL             string `json:"url"`
	CredentialsFile string `json:"credentialsFile,omitempty"`
}

// DNS modes.
const (
	DNSStrict = "strict"
	DNSCompat = "compat"
)

// DNS is the resolver policy.
type DNS struct {
	Mode                 string       `json:"mode"`
	Servers              []netip.Addr `json:"servers"`
	Search               []string     `json:"search,omitempty"`
	AllowHostResolverIPC bool         `json:"allowHostResolverIPC"`
}

// Egress modes.
const (
	EgressAllowAllTunnel = "allowAllTunnel"
	EgressAllowList      = "allowList"
)

// Egress is the tunnel egress policy. CIDRs are normalized (masked) and
// merged so that no two overlap; ports are sorted and unique.
type Egress struct {
	Mode               string         `json:"mode"`
	AllowedCIDRs       []netip.Prefix `json:"allowedCidrs,omitempty"`
	AllowedTCPPorts    []uint16       `json:"allowedTcpPorts,omitempty"`
	AllowedUDPPorts    []uint16       `json:"allowedUdpPorts,omitempty"`
	AllowEssentialICMP bool           `json:"allowEssentialIcmp"`
	// ToHostTCP/UDP are host ports confined services may open over the
	// host link (to HostLink.HostAddr only).
	ToHostTCP []uint16 `json:"toHostTcp,omitempty"`
	ToHostUDP []uint16 `json:"toHostUdp,omitempty"`
}

// Ingress lists inbound ports. FromHostTCP already merges
// ingress.fromHost.tcp and publishToHost.tcp.
type Ingress struct {
	FromTunnelTCP []uint16 `json:"fromTunnelTcp,omitempty"`
	FromTunnelUDP []uint16 `json:"fromTunnelUdp,omitempty"`
	FromHostTCP   []uint16 `json:"fromHostTcp,omitempty"`
}

// HostLink is the veth pair between the host and the namespace.
type HostLink struct {
	HostIf   string       `json:"hostIf"`
	NsIf     string       `json:"nsIf"`
	Subnet   netip.Prefix `json:"subnet"`   // a /30
	HostAddr netip.Addr   `json:"hostAddr"` // base+1
	NsAddr   netip.Addr   `json:"nsAddr"`   // base+2
}

// WireGuard backends.
const (
	BackendAuto      = "auto"
	BackendKernel    = "kernel"
	BackendUserspace = "userspace"
)

// WireGuard describes the tunnel device. It never holds key material.
type WireGuard struct {
	Interface          string         `json:"interface"`
	Backend            string         `json:"backend"`
	PrivateKey         KeySource      `json:"privateKey"`
	Addresses          []netip.Prefix `json:"addresses"`
	ListenPort         int            `json:"listenPort,omitempty"`
	MTU                int            `json:"mtu,omitempty"`
	FwMark             uint32         `json:"fwMark,omitempty"`
	SocketNamespace    string         `json:"socketNamespace,omitempty"` // "" = init
	AllowedIPsAsRoutes bool           `json:"allowedIPsAsRoutes"`
	Peers              []Peer         `json:"peers"`
	Pinning            *Pinning       `json:"pinning,omitempty"`
}

// KeySource tells a helper where to read a key at run time.
type KeySource struct {
	// File is an absolute path of a file holding the base64 key.
	File string `json:"file,omitempty"`
	// Generate creates File (0600) when it is missing.
	Generate bool `json:"generate,omitempty"`
	// Credential names a systemd credential ($CREDENTIALS_DIRECTORY/NAME).
	Credential string `json:"credential,omitempty"`
	// WgQuickFile is a wg-quick file whose [Interface] PrivateKey is used.
	WgQuickFile string `json:"wgQuickFile,omitempty"`
	// InlineYAML means the key is inline in Source (wireguard.privateKey);
	// the helper reads it from there, so it never lands in generated files.
	InlineYAML bool `json:"inlineYaml,omitempty"`
}

// Endpoint is a peer endpoint: a literal address or a hostname, and a port.
type Endpoint struct {
	Host string `json:"host"` // literal IP (no brackets) or hostname
	Port uint16 `json:"port"`
}

// IsHostname reports whether the endpoint must be resolved at run time.
func (e Endpoint) IsHostname() bool {
	_, err := netip.ParseAddr(e.Host)
	return err != nil
}

// Peer is one WireGuard peer.
type Peer struct {
	PublicKey    string     `json:"publicKey"`
	PresharedKey *KeySource `json:"presharedKey,omitempty"`
	Endpoint     *Endpoint  `json:"endpoint,omitempty"`
	// Failover are further endpoints of the same peer, tried in order
	// when the current one stalls or never answers.
	Failover               []Endpoint     `json:"failover,omitempty"`
	AllowedIPs             []netip.Prefix `json:"allowedIPs"`
	PersistentKeepalive    int            `json:"persistentKeepalive,omitempty"`
	EndpointRefreshSeconds int            `json:"endpointRefreshSeconds,omitempty"`
}

// Pinning restricts the tunnel's outer UDP packets (marked FwMark) in the
// socket birthplace namespace to the peer endpoints.
type Pinning struct {
	FwMark uint32 `json:"fwMark"`
	Table  string `json:"table"` // nft table name, unique per namespace name
}

// Hardening profiles.
const (
	HardeningBaseline = "baseline"
	HardeningStrict   = "strict"
)

// Unit is a confined service or socket.
type Unit struct {
	Name                     string   `json:"unit"`
	HardeningProfile         string   `json:"hardeningProfile,omitempty"`
	RestrictBind             bool     `json:"restrictBind,omitempty"`
	AllowRootInHighAssurance bool     `json:"allowRootInHighAssurance,omitempty"`
	ExtraAddressFamilies     []string `json:"extraAddressFamilies,omitempty"`
	// InstalledLater: the unit may be missing from the unit search path at
	// compile time (otherwise a missing unit is an error: usually a typo).
	InstalledLater bool `json:"installedLater,omitempty"`
	// Root: the service runs as root (allowed with allowRoot only).
	Root bool `json:"root,omitempty"`
	// AllowSystemBus keeps the D-Bus system bus reachable.
	AllowSystemBus bool `json:"allowSystemBus,omitempty"`
	// Home is its user's home, made writable.
	Home string `json:"home,omitempty"`
	// App is the preset applied (qbittorrent, transmission, ...), if any.
	App string `json:"app,omitempty"`
	// ReadWritePaths are made writable for it (preset and user's).
	ReadWritePaths []string `json:"readWritePaths,omitempty"`
	// Capabilities is its capability bounding set (empty: none).
	Capabilities []string `json:"capabilities,omitempty"`
	// RuntimeFiles are files under /run the service writes (its PIDFile=),
	// created by the namespace helper so they can be made writable alone.
	RuntimeFiles []string `json:"runtimeFiles,omitempty"`
	// WriteExecute: the strict profile leaves out MemoryDenyWriteExecute=
	// because the service's app preset needs writable executable memory.
	WriteExecute bool `json:"writeExecute,omitempty"`
}

// NetnsPath is the pinned namespace path for name.
func NetnsPath(name string) string { return NetnsDir + "/" + name }

// RuntimePath is the runtime directory of namespace name: what its
// confined services may read (resolv.conf, nsswitch.conf, the forwarded
// port). They see it read-only and nothing else of RuntimeDir.
func RuntimePath(name string) string { return RuntimeDir + "/" + name }

// The private parts of RuntimeDir. Their names start with "_", which no
// namespace name can, so they never collide with a RuntimePath.
const (
	privateSubdir = "_private"
	metricsSubdir = "_metrics"
)

// PrivateDir holds the private runtime dirs of all namespaces (and the
// tripwire's lock and marker).
func PrivateDir() string { return RuntimeDir + "/" + privateSubdir }

// PrivatePath is the root-only runtime directory of namespace name (the
// tunnel's state and control socket, the applied plan, unit records,
// files bound into root services).
func PrivatePath(name string) string { return PrivateDir() + "/" + name }

// MetricsDir holds one Prometheus textfile per namespace (point
// node_exporter's --collector.textfile.directory at it).
func MetricsDir() string { return RuntimeDir + "/" + metricsSubdir }

// MetricsPath is the Prometheus textfile of namespace name.
func MetricsPath(name string) string { return MetricsDir() + "/" + name + ".prom" }

// Path is the plan file of namespace name inside generator dir dir.
func Path(dir, name string) string { return dir + "/" + PlanSubdir + "/" + name + ".json" }

// Marshal renders the plan deterministically (indented, trailing newline).
func (n *Namespace) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// LoadTrusted is Load for the helpers, which act on the plan with
// privileges: the plan must be a regular file owned by root that nobody
// else can write, in a directory that nobody but root can change (a
// sticky directory is enough: others cannot replace root's file in it).
// A plan a confined service managed to plant or edit is refused.
func LoadTrusted(path string) (*Namespace, error) {
	if err := checkTrusted(path); err != nil {
		return nil, err
	}
	return Load(path)
}

func checkTrusted(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("plan %s is not a regular file (%s); refusing it", path, fi.Mode().Type())
	}
	if err := rootOnly(path, fi); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check plan directory: %w", err)
	}
	if st, ok := di.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 {
		return fmt.Errorf("plan directory %s is not owned by root; refusing %s", dir, path)
	}
	if di.Mode().Perm()&0o022 != 0 && di.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("plan directory %s is writable by others (mode %04o); refusing %s", dir, di.Mode().Perm(), path)
	}
	return nil
}

func rootOnly(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 {
		return fmt.Errorf("plan %s is not owned by root; refusing it (run systemctl daemon-reload to rewrite it)", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("plan %s is writable by others (mode %04o); refusing it (run systemctl daemon-reload to rewrite it)", path, fi.Mode().Perm())
	}
	return nil
}

// Load reads and checks a plan file.
func Load(path string) (*Namespace, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var n Namespace
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("parse plan %s: %w", path, err)
	}
	if n.Version != Version {
		return nil, fmt.Errorf("plan %s has version %d, this helper understands %d (run systemctl daemon-reload)", path, n.Version, Version)
	}
	if n.Name == "" {
		return nil, fmt.Errorf("plan %s has no name", path)
	}
	return &n, nil
}
