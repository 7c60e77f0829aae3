// Package config reads /etc/vpn-confinement.d/NAME.yaml files, rejects
// unknown keys, validates every rule (reference rules plus the gaps the
// reference misses) and compiles each valid file into a plan.Namespace.
//
// It is pure apart from reading files: no kernel, no network, no IPC, so the
// generator, the CLI and tests share exactly the same verdicts. It never
// reads key files; inline keys are only detected, never copied.
package config

// The YAML schema. Pointer fields distinguish "unset" (take the default,
// which may depend on securityProfile) from an explicit zero value. Field
// names mirror the NixOS reference module's options 1:1 (camelCase).
//
// Every field is documented in man/vpn-confinement.d.5.md; a test fails when
// a key is missing there.

type fileSchema struct {
	SecurityProfile *string         `yaml:"securityProfile"`
	Autostart       *bool           `yaml:"autostart"`
	DNS             dnsSchema       `yaml:"dns"`
	IPv6            ipv6Schema      `yaml:"ipv6"`
	Egress          egressSchema    `yaml:"egress"`
	Ingress         ingressSchema   `yaml:"ingress"`
	PublishToHost   publishSchema   `yaml:"publishToHost"`
	HostLink        hostLinkSchema  `yaml:"hostLink"`
	WireGuard       wireguardSchema `yaml:"wireguard"`
	Services        []unitSchema    `yaml:"services"`
	Sockets         []unitSchema    `yaml:"sockets"`
	OnTunnelLoss    *string         `yaml:"onTunnelLoss"`
	Publish         []publishEntry  `yaml:"publish"`
	PortForwarding  *portFwdSchema  `yaml:"portForwarding"`
}

// publishEntry is one "host address:port → confined port" of publish.
type publishEntry struct {
	Listen       *string `yaml:"listen"`
	Port         *int    `yaml:"port"`
	Unit         *string `yaml:"unit"`
	AllowLAN     *bool   `yaml:"allowLAN"`
	BindToDevice *string `yaml:"bindToDevice"`
}

type portFwdSchema struct {
	Protocol *string      `yaml:"protocol"`
	Gateway  *string      `yaml:"gateway"`
	Port     *int         `yaml:"port"`
	PIA      piaSchema    `yaml:"pia"`
	Apps     []pfAppEntry `yaml:"apps"`
	Hook     pfHookSchema `yaml:"hook"`
}

type piaSchema struct {
	Hostname        *string `yaml:"hostname"`
	CAFile          *string `yaml:"caFile"`
	CredentialsFile *string `yaml:"credentialsFile"`
	Credential      *string `yaml:"credential"`
	TokenURL        *string `yaml:"tokenURL"`
}

type pfAppEntry struct {
	Type            *string `yaml:"type"`
	URL             *string `yaml:"url"`
	CredentialsFile *string `yaml:"credentialsFile"`
}

type pfHookSchema struct {
	Unit *string `yaml:"unit"`
}

type dnsSchema struct {
	Mode                 *string  `yaml:"mode"`
	Servers              []string `yaml:"servers"`
	Search               []string `yaml:"search"`
	AllowHostResolverIPC *bool    `yaml:"allowHostResolverIPC"`
}

type ipv6Schema struct {
	Mode *string `yaml:"mode"`
}

type egressSchema struct {
	Mode               *string     `yaml:"mode"`
	ToHost             portsSchema `yaml:"toHost"`
	AllowedCidrs       []string    `yaml:"allowedCidrs"`
	AllowedTCPPorts    []int       `yaml:"allowedTcpPorts"`
	AllowedUDPPorts    []int       `yaml:"allowedUdpPorts"`
	AllowEssentialIcmp *bool       `yaml:"allowEssentialIcmp"`
}

type ingressSchema struct {
	FromTunnel portsSchema    `yaml:"fromTunnel"`
	FromHost   tcpPortsSchema `yaml:"fromHost"`
}

type portsSchema struct {
	TCP []int `yaml:"tcp"`
	UDP []int `yaml:"udp"`
}

type tcpPortsSchema struct {
	TCP []int `yaml:"tcp"`
}

type publishSchema struct {
	TCP []int `yaml:"tcp"`
}

type hostLinkSchema struct {
	Enable     *bool   `yaml:"enable"`
	HostIf     *string `yaml:"hostIf"`
	NsIf       *string `yaml:"nsIf"`
	SubnetIPv4 *string `yaml:"subnetIPv4"`
}

type wireguardSchema struct {
	ConfigFile             *string       `yaml:"configFile"`
	Interface              *string       `yaml:"interface"`
	Backend                *string       `yaml:"backend"`
	PrivateKey             *string       `yaml:"privateKey"`
	PrivateKeyFile         *string       `yaml:"privateKeyFile"`
	GeneratePrivateKeyFile *bool         `yaml:"generatePrivateKeyFile"`
	Addresses              []string      `yaml:"addresses"`
	ListenPort             *int          `yaml:"listenPort"`
	MTU                    *int          `yaml:"mtu"`
	FwMark                 *int64        `yaml:"fwMark"`
	SocketNamespace        *string       `yaml:"socketNamespace"`
	AllowHostnameEndpoints *bool         `yaml:"allowHostnameEndpoints"`
	EndpointRefreshSeconds *int          `yaml:"endpointRefreshSeconds"`
	EndpointPinning        pinningSchema `yaml:"endpointPinning"`
	AllowedIPsAsRoutes     *bool         `yaml:"allowedIPsAsRoutes"`
	Peers                  []peerSchema  `yaml:"peers"`
}

type pinningSchema struct {
	Enable *bool  `yaml:"enable"`
	FwMark *int64 `yaml:"fwMark"`
}

type peerSchema struct {
	PublicKey              *string  `yaml:"publicKey"`
	PresharedKey           *string  `yaml:"presharedKey"`
	PresharedKeyFile       *string  `yaml:"presharedKeyFile"`
	Endpoint               *string  `yaml:"endpoint"`
	Endpoints              []string `yaml:"endpoints"`
	AllowedIPs             []string `yaml:"allowedIPs"`
	PersistentKeepalive    *int     `yaml:"persistentKeepalive"`
	EndpointRefreshSeconds *int     `yaml:"endpointRefreshSeconds"`
}

type unitSchema struct {
	Unit                     *string  `yaml:"unit"`
	HardeningProfile         *string  `yaml:"hardeningProfile"`
	RestrictBind             *bool    `yaml:"restrictBind"`
	AllowRootInHighAssurance *bool    `yaml:"allowRootInHighAssurance"`
	ExtraAddressFamilies     []string `yaml:"extraAddressFamilies"`
	InstalledLater           *bool    `yaml:"installedLater"`
	AllowRoot                *bool    `yaml:"allowRoot"`
	ReadWritePaths           []string `yaml:"readWritePaths"`
	ExtraCapabilities        []string `yaml:"extraCapabilities"`
	App                      *string  `yaml:"app"`
	AllowSystemBus           *bool    `yaml:"allowSystemBus"`
}
