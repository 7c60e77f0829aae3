package ct

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The provider's port forwarding (vpnc-pfpeer in vpnsrv): NAT-PMP on the
// server's tunnel address, PIA's gateway API there too, and PIA's token
// API on a tunnel-side address of its own that every name resolves to
// (the test DNS answers 10.123.0.77).
const (
	PFControl = "/run/vpnc-test/pf.sock"
	PIACAFile = "/etc/vpnc-test/pia-ca.crt"
	TokenAddr = "10.123.0.77"
	PIAHost   = "pf-test.privacy.network"
	TokenHost = "token.pia.test"
)

// PFOptions say what the provider serves.
type PFOptions struct {
	NATPMP   bool
	Port     uint16 // first NAT-PMP port (default 38534)
	Lifetime int    // NAT-PMP lifetime cap in seconds (default 60)

	PIA                  bool
	PIAUser, PIAPassword string
	PIAPort              uint16 // granted when nothing is queued
}

// PF is the running provider side.
type PF struct {
	c *Container
}

// StartPortForwarding installs bin (vpnc-pfpeer) and runs it in vpnsrv.
func (w *World) StartPortForwarding(bin string, o PFOptions) (*PF, error) {
	c := w.c
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := c.WriteFile("/usr/local/bin/vpnc-pfpeer", b, 0o755); err != nil {
		return nil, err
	}
	args := []string{"serve", "-control", PFControl, "-ready", "/run/vpnc-test/pf.ready"}
	if o.NATPMP {
		if o.Port == 0 {
			o.Port = 38534
		}
		if o.Lifetime == 0 {
			o.Lifetime = 60
		}
		args = append(args, "-natpmp", SrvTunnel+":5351", "-natpmp-stray", SrvOtherNS+":5351",
			"-natpmp-port", fmt.Sprint(o.Port), "-natpmp-lifetime", fmt.Sprint(o.Lifetime))
	}
	if o.PIA {
		if r := c.Sh("ip -n vpnsrv addr add " + TokenAddr + "/32 dev wgsrv"); r.Code != 0 {
			return nil, fmt.Errorf("token address: %s", r)
		}
		args = append(args, "-pia", SrvTunnel+":19999", "-pia-hostname", PIAHost, "-token", TokenAddr+":443",
			"-token-hostname", TokenHost, "-ca-out", PIACAFile, "-pia-user", o.PIAUser, "-pia-password", o.PIAPassword)
		if o.PIAPort != 0 {
			args = append(args, "-pia-port", fmt.Sprint(o.PIAPort))
		}
	}
	c.Sh("mkdir -p /etc/vpnc-test /run/vpnc-test; rm -f /run/vpnc-test/pf.ready")
	run := append([]string{"systemd-run", "--quiet", "--unit=vpnsrv-pf", "ip", "netns", "exec", "vpnsrv", "/usr/local/bin/vpnc-pfpeer"}, args...)
	if r := c.Run(run...); r.Code != 0 {
		return nil, fmt.Errorf("start vpnc-pfpeer: %s", r)
	}
	for i := 0; i < 100; i++ {
		if _, err := c.ReadFile("/run/vpnc-test/pf.ready"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.ReadFile("/run/vpnc-test/pf.ready"); err != nil {
		return nil, fmt.Errorf("vpnc-pfpeer not ready: %s", c.Run("journalctl", "--no-pager", "-u", "vpnsrv-pf").Stdout)
	}
	if o.PIA {
		// The token API is verified with the system roots (as PIA's real
		// one is): the test CA joins the container's bundle (an overlay
		// file; the machine's own bundle is untouched).
		if r := c.Sh("cat " + PIACAFile + " >> /etc/ssl/certs/ca-certificates.crt"); r.Code != 0 {
			return nil, fmt.Errorf("trust the test CA: %s", r)
		}
	}
	return &PF{c: c}, nil
}

// Ctl sends one control command and returns the answer.
func (p *PF) Ctl(words ...string) (string, error) {
	r := p.c.Run(append([]string{"/usr/local/bin/vpnc-pfpeer", "ctl", PFControl}, words...)...)
	if r.Code != 0 {
		return "", fmt.Errorf("vpnc-pfpeer ctl %s: %s", strings.Join(words, " "), r)
	}
	return r.Stdout, nil
}

// Log is the provider side's journal (one line per NAT-PMP request).
func (p *PF) Log() string {
	return p.c.Run("journalctl", "--no-pager", "-o", "cat", "-u", "vpnsrv-pf").Stdout
}

// Connect opens a TCP connection from the provider namespace (so through
// the tunnel when addr is a client's tunnel address) and holds it open
// for hold. It reports whether the connection was accepted.
func (w *World) Connect(addr string, hold time.Duration) (bool, Result) {
	r := w.c.Run("ip", "netns", "exec", "vpnsrv", "/usr/local/bin/vpnc-pfpeer", "connect", "-timeout", "1500ms", "-hold", hold.String(), addr)
	return r.Code == 0 && strings.HasPrefix(r.Stdout, "OPEN"), r
}

// SendUDP sends one datagram from the provider namespace to addr.
func (w *World) SendUDP(addr string) Result {
	return w.c.Run("ip", "netns", "exec", "vpnsrv", "/usr/local/bin/vpnc-probe", "-timeout", "300ms", "udp", addr)
}

// InNS runs argv in namespace ns (as root, not confined: an observer).
func (c *Container) InNS(ns string, argv ...string) Result {
	return c.Run(append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// ForwardedPorts lists the forwarded_ports set of ns's table, read by
// nft(8) (the kernel's view, through another encoder than ours).
func (c *Container) ForwardedPorts(ns string) ([]uint16, error) {
	r := c.InNS(ns, "nft", "-j", "list", "set", "inet", "vpn_confinement", "forwarded_ports")
	if r.Code != 0 {
		return nil, fmt.Errorf("nft list set: %s", r)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %v\n%s", err, r.Stdout)
	}
	ports := []uint16{}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			p, err := strconv.ParseUint(string(e), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("set element %s", e)
			}
			ports = append(ports, uint16(p))
		}
	}
	return ports, nil
}

// InputDrops is the packet count of the counted drop that ends ns's input
// chain (what the kill switch refused inbound).
func (c *Container) InputDrops(ns string) (uint64, error) {
	r := c.InNS(ns, "nft", "-j", "list", "chain", "inet", "vpn_confinement", "input")
	if r.Code != 0 {
		return 0, fmt.Errorf("nft list chain: %s", r)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		return 0, err
	}
	for _, o := range doc.Nftables {
		if o.Rule == nil || len(o.Rule.Expr) != 2 {
			continue
		}
		cnt, ok1 := o.Rule.Expr[0]["counter"]
		_, ok2 := o.Rule.Expr[1]["drop"]
		if ok1 && ok2 {
			var v struct{ Packets uint64 }
			if err := json.Unmarshal(cnt, &v); err != nil {
				return 0, err
			}
			return v.Packets, nil
		}
	}
	return 0, fmt.Errorf("no counted drop in the input chain:\n%s", r.Stdout)
}

// ForwardedPortFile reads /run/vpn-confinement/NS/forwarded-port (0 when
// it does not exist) and the env file's value.
func (c *Container) ForwardedPortFile(ns string) (port uint16, env string) {
	if b, err := c.ReadFile("/run/vpn-confinement/" + ns + "/forwarded-port"); err == nil {
		p, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16)
		port = uint16(p)
	}
	b, _ := c.ReadFile("/run/vpn-confinement/" + ns + "/forwarded-port.env")
	return port, string(b)
}

// PortSockets lists the sockets of ns on port (ss -Hanp, TCP and UDP), with
// the processes owning them.
func (c *Container) PortSockets(ns string, port uint16) string {
	return c.InNS(ns, "ss", "-Hanptu", fmt.Sprintf("( sport = :%d )", port)).Stdout
}

// Eventually polls f until it returns "" (done) or d passes; it returns
// the last complaint.
func Eventually(d time.Duration, f func() string) string {
	deadline := time.Now().Add(d)
	for {
		msg := f()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(200 * time.Millisecond)
	}
}
