package ct

import (
	"fmt"
	"strings"
	"time"
)

// The test world inside the container. The container's own network
// namespace plays the host; "vpnsrv" plays the VPN provider, reached over a
// veth "internet" (up0 on the host side). Every address lives in namespaces
// the test made.
const (
	UplinkIf   = "up0"
	HostUplink = "10.213.0.1"
	SrvUplink  = "10.213.0.2"
	SrvUplink2 = "10.213.0.3"  // second provider address (pinning re-point)
	SrvTunnel  = "10.123.0.1"  // server tunnel address: resolver + echo
	SrvOtherNS = "10.123.0.99" // a resolver the namespace is NOT configured to use
	WGPort     = 51820
)

// Peer is a client key pair registered on the server.
type Peer struct {
	Name, Private, Public, Address string
}

// World is the server side.
type World struct {
	c         *Container
	ServerPub string
	Peers     map[string]Peer
}

// SetupWorld creates the provider namespace with a userspace WireGuard
// server, DNS responders and echo servers, and client keys for peers.
func (c *Container) SetupWorld(clients ...string) (*World, error) {
	w := &World{c: c, Peers: map[string]Peer{}}
	srvPriv, srvPub, err := c.keypair()
	if err != nil {
		return nil, err
	}
	w.ServerPub = srvPub
	var peerConf strings.Builder
	for i, name := range clients {
		priv, pub, err := c.keypair()
		if err != nil {
			return nil, err
		}
		p := Peer{Name: name, Private: priv, Public: pub, Address: fmt.Sprintf("10.123.0.%d", 10+i)}
		w.Peers[name] = p
		fmt.Fprintf(&peerConf, "[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\n", pub, p.Address)
	}
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = %d\n%s", srvPriv, WGPort, peerConf.String())
	if err := c.WriteFile("/etc/vpnc-test/wgsrv.conf", []byte(conf), 0o600); err != nil {
		return nil, err
	}
	script := fmt.Sprintf(`set -e
ip netns add vpnsrv
ip link add %[1]s type veth peer name srv0 netns vpnsrv
ip addr add %[2]s/24 dev %[1]s; ip link set %[1]s up
ip -n vpnsrv addr add %[3]s/24 dev srv0; ip -n vpnsrv addr add %[4]s/24 dev srv0
ip -n vpnsrv link set srv0 up; ip -n vpnsrv link set lo up
systemd-run --quiet --unit=vpnsrv-wg -E WG_PROCESS_FOREGROUND=1 ip netns exec vpnsrv wireguard-go -f wgsrv
for i in $(seq 100); do [ -S /run/wireguard/wgsrv.sock ] && break; sleep 0.05; done
wg setconf wgsrv /etc/vpnc-test/wgsrv.conf
ip -n vpnsrv addr add %[5]s/24 dev wgsrv; ip -n vpnsrv addr add %[6]s/24 dev wgsrv
ip -n vpnsrv link set wgsrv up
systemd-run --quiet --unit=vpnsrv-peer ip netns exec vpnsrv /usr/local/bin/vpnc-testpeer \
  -dns %[5]s:53,%[6]s:53,%[6]s:853,%[6]s:5353,%[6]s:5355,%[3]s:53,%[3]s:853,%[3]s:5353,%[3]s:5355 \
  -tcp-echo %[5]s:7,%[5]s:8,%[6]s:7,%[3]s:7 -udp-echo %[5]s:7,%[6]s:7,%[3]s:7 \
  -answer 10.123.0.77 -log /run/vpnc-test/dns.log -echo-log /run/vpnc-test/echo.log -ready /run/vpnc-test/peer.ready
# A service on the host's own end of the uplink: reachable from the host,
# never from a confined service.
# It listens on every address, so it also answers on host-link addresses
# created later.
systemd-run --quiet --unit=host-echo /usr/local/bin/vpnc-testpeer -tcp-echo 0.0.0.0:7 -udp-echo 0.0.0.0:7 -ready /run/vpnc-test/host.ready
for i in $(seq 100); do [ -e /run/vpnc-test/peer.ready ] && [ -e /run/vpnc-test/host.ready ] && break; sleep 0.05; done
[ -e /run/vpnc-test/peer.ready ] && [ -e /run/vpnc-test/host.ready ]
`, UplinkIf, HostUplink, SrvUplink, SrvUplink2, SrvTunnel, SrvOtherNS)
	c.Sh("mkdir -p /run/vpnc-test")
	if r := c.Sh(script); r.Code != 0 {
		return nil, fmt.Errorf("set up the provider namespace: %s", r)
	}
	return w, nil
}

func (c *Container) keypair() (priv, pub string, err error) {
	r := c.Sh("k=$(wg genkey); echo $k; echo $k | wg pubkey")
	f := strings.Fields(r.Stdout)
	if r.Code != 0 || len(f) != 2 {
		return "", "", fmt.Errorf("wg genkey: %s", r)
	}
	return f[0], f[1], nil
}

// NamespaceYAML returns a namespace file for client peer p. extra is
// appended (services, egress, ...).
func (w *World) NamespaceYAML(p Peer, iface, extra string) string {
	return fmt.Sprintf(`dns:
  servers: [%s]
wireguard:
  interface: %s
  privateKeyFile: /etc/vpn-confinement.d/keys/%s.key
  addresses: [%s/32]
  peers:
    - publicKey: %s
      endpoint: %s:%d
      allowedIPs: [0.0.0.0/0]
      persistentKeepalive: 25
%s`, SrvTunnel, iface, p.Name, p.Address, w.ServerPub, SrvUplink, WGPort, extra)
}

// InstallNamespace writes the key and the namespace file.
func (w *World) InstallNamespace(p Peer, yaml string) error {
	if err := w.c.WriteFile("/etc/vpn-confinement.d/keys/"+p.Name+".key", []byte(p.Private+"\n"), 0o600); err != nil {
		return err
	}
	return w.c.WriteFile("/etc/vpn-confinement.d/"+p.Name+".yaml", []byte(yaml), 0o644)
}

// EchoLog returns the provider's echo log (one JSON line per connection,
// with the client address the server saw).
func (w *World) EchoLog() string {
	b, _ := w.c.ReadFile("/run/vpnc-test/echo.log")
	return string(b)
}

// DNSLog returns the provider's DNS query log.
func (w *World) DNSLog() string {
	b, _ := w.c.ReadFile("/run/vpnc-test/dns.log")
	return string(b)
}

// Capture records every packet on the uplink that is not the WireGuard flow.
type Capture struct {
	c       *Container
	unit    string
	file    string
	control bool
	// ControlSeen tells whether the positive control was captured.
	ControlSeen bool
}

// StartCapture starts tcpdump on the uplink, with a positive control: the
// host itself sends a DNS query for control.invalid over the uplink, which
// the capture must show (and Stop then excludes), so "zero packets" can
// never come from a capture that saw nothing at all.
func (c *Container) StartCapture(name string) (*Capture, error) {
	cp, err := c.StartCaptureOn(name, UplinkIf)
	if err != nil {
		return nil, err
	}
	cp.control = true
	c.Run("/usr/local/bin/vpnc-probe", "-timeout", "500ms", "dns", "udp", SrvUplink+":53", "control.invalid")
	return cp, nil
}

// StartCaptureOn records every non-WireGuard packet on interface ifname.
func (c *Container) StartCaptureOn(name, ifname string) (*Capture, error) {
	return c.StartCaptureFilter(name, ifname, fmt.Sprintf("not (udp and port %d)", WGPort))
}

// StartCaptureFilter records packets on ifname matching a pcap filter.
func (c *Container) StartCaptureFilter(name, ifname, filter string) (*Capture, error) {
	cp := &Capture{c: c, unit: "vpnc-capture-" + name, file: "/run/vpnc-test/" + name + ".pcap"}
	// --immediate-mode: without it, packets still in the kernel buffer are
	// lost when tcpdump is stopped.
	r := c.Run("systemd-run", "--quiet", "--unit="+cp.unit, "tcpdump", "--immediate-mode", "-Z", "root", "-i", ifname, "-n", "-U", "-w", cp.file, filter)
	if r.Code != 0 {
		return nil, fmt.Errorf("start tcpdump: %s", r)
	}
	for i := 0; i < 50; i++ {
		if _, err := c.ReadFile(cp.file); err == nil {
			time.Sleep(200 * time.Millisecond)
			return cp, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cp, nil
}

// Stop ends the capture and returns the packets seen (tcpdump text).
func (cp *Capture) Stop() []string {
	time.Sleep(300 * time.Millisecond)
	cp.c.Run("systemctl", "stop", cp.unit)
	r := cp.c.Run("tcpdump", "-n", "-r", cp.file)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	// The control query and its reply (which tcpdump prints without the
	// name) share the query's source address.port.
	var controlFlows []string
	for _, l := range lines {
		if strings.Contains(l, "control.invalid") {
			if f := strings.Fields(l); len(f) > 2 && f[1] == "IP" {
				controlFlows = append(controlFlows, f[2])
			}
		}
	}
	var out []string
	for _, l := range lines {
		isControl := strings.Contains(l, "control.invalid")
		for _, flow := range controlFlows {
			isControl = isControl || strings.Contains(l, flow+" ") || strings.Contains(l, flow+":")
		}
		if isControl {
			cp.ControlSeen = true
			continue
		}
		// ARP and IPv6 neighbour chatter of the link itself is not a leak
		// of confined traffic; everything else is.
		if l == "" || strings.Contains(l, "ARP,") || strings.Contains(l, "ICMP6, neighbor") || strings.Contains(l, "ICMP6, router") ||
			strings.Contains(l, "ICMP6, multicast listener") {
			continue
		}
		out = append(out, l)
	}
	return out
}
