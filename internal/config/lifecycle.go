package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// Watchdog defaults. WireGuard rekeys every 120 s while it sends and
// gives a session up after 180 s (REJECT_AFTER_TIME); with keepalives a
// healthy tunnel handshakes at least every 120 s + a keepalive interval.
// A first handshake is retried every 5 s (REKEY_TIMEOUT), so three tries
// decide that an endpoint does not answer.
const (
	rejectAfterSeconds    = 180
	firstHandshakeSeconds = 15
)

// compileLifecycle handles onTunnelLoss and the watchdog.
func (c *compiler) compileLifecycle(n *plan.Namespace) {
	s := &c.d.schema
	n.OnTunnelLoss = c.enum("onTunnelLoss", s.OnTunnelLoss, plan.OnTunnelLossBlock,
		plan.OnTunnelLossBlock, plan.OnTunnelLossStop, plan.OnTunnelLossFreeze)
	keepalive := 0
	for _, p := range n.WireGuard.Peers {
		keepalive = max(keepalive, p.PersistentKeepalive)
	}
	n.Watchdog = plan.Watchdog{StallAfterSeconds: rejectAfterSeconds + keepalive, FirstHandshakeSeconds: firstHandshakeSeconds}
}

// compileFailover reads peers[].endpoints: the first is the peer's
// endpoint, the others are tried in order when it stalls.
func (c *compiler) compileFailover(key string, ps *peerSchema, p *plan.Peer) {
	if len(ps.Endpoints) == 0 {
		return
	}
	if ps.Endpoint != nil {
		c.errorf(key+".endpoints", "cannot be combined with endpoint: list every endpoint under endpoints (the first is used first)")
		return
	}
	seen := map[string]bool{}
	for j, raw := range ps.Endpoints {
		k := fmt.Sprintf("%s.endpoints[%d]", key, j)
		host, port, _, err := ParseEndpoint(raw)
		if err != nil {
			c.errorf(k, "must be IPv4:port, [IPv6]:port or hostname:port: %v", err)
			continue
		}
		if seen[raw] {
			c.errorf(k, "%s is listed twice", raw)
			continue
		}
		seen[raw] = true
		ep := plan.Endpoint{Host: host, Port: port}
		if p.Endpoint == nil {
			p.Endpoint = &ep
		} else {
			p.Failover = append(p.Failover, ep)
		}
	}
}

// App types the port-forwarding adapters know.
var appTypes = []string{"qbittorrent", "transmission", "deluge"}

// compilePortForwarding handles portForwarding.
func (c *compiler) compilePortForwarding(n *plan.Namespace) {
	s := c.d.schema.PortForwarding
	if s == nil {
		return
	}
	pf := &plan.PortForwarding{}
	pf.Protocol = c.enum("portForwarding.protocol", s.Protocol, "", plan.PortForwardNATPMP, plan.PortForwardPIA, plan.PortForwardStatic)
	if s.Protocol == nil {
		c.errorf("portForwarding.protocol", "is required: natpmp (ProtonVPN), pia, or static (a port your provider assigned)")
		return
	}
	switch pf.Protocol {
	case plan.PortForwardNATPMP:
		pf.Gateway = c.gateway(n, s, true)
	case plan.PortForwardPIA:
		pf.Gateway = c.gateway(n, s, false)
		pia := &plan.PIA{Hostname: str(s.PIA.Hostname, ""), TokenURL: str(s.PIA.TokenURL, "")}
		if !ValidHostname(pia.Hostname) {
			c.errorf("portForwarding.pia.hostname", "is required: the server's host name its TLS certificate is issued to (e.g. nl-amsterdam.privacy.network)")
		}
		if s.PIA.CAFile == nil {
			c.errorf("portForwarding.pia.caFile", "is required: PIA's CA certificate (ca.rsa.4096.crt) to verify the gateway's TLS")
		} else if c.absPath("portForwarding.pia.caFile", *s.PIA.CAFile) {
			pia.CAFile = *s.PIA.CAFile
		}
		switch {
		case s.PIA.CredentialsFile != nil && s.PIA.Credential != nil:
			c.errorf("portForwarding.pia.credential", "cannot be combined with credentialsFile")
		case s.PIA.CredentialsFile != nil:
			if c.absPath("portForwarding.pia.credentialsFile", *s.PIA.CredentialsFile) {
				pia.Credentials = plan.KeySource{File: *s.PIA.CredentialsFile, Credential: CredPIA}
			}
		case s.PIA.Credential != nil:
			if !validCredName(*s.PIA.Credential) {
				c.errorf("portForwarding.pia.credential", "must be a systemd credential name ([A-Za-z0-9_.-]) (got %q)", *s.PIA.Credential)
			}
			pia.Credentials = plan.KeySource{Credential: *s.PIA.Credential}
		default:
			c.errorf("portForwarding.pia", "needs credentialsFile (a file with your PIA user name and password) or credential (a systemd credential of vpn-pf@%s.service)", n.Name)
		}
		if pia.TokenURL != "" {
			if u, err := url.Parse(pia.TokenURL); err != nil || u.Scheme != "https" || u.Host == "" {
				c.errorf("portForwarding.pia.tokenURL", "must be an https:// URL (got %q)", pia.TokenURL)
			}
		}
		pf.PIA = pia
	case plan.PortForwardStatic:
		if s.Port == nil || *s.Port < 1 || *s.Port > 65535 {
			c.errorf("portForwarding.port", "static forwarding needs the port your provider assigned (1-65535)")
		} else {
			pf.StaticPort = uint16(*s.Port)
		}
	}
	if s.Port != nil && pf.Protocol != plan.PortForwardStatic {
		c.errorf("portForwarding.port", "is only for protocol static: %s leases a port from the provider", pf.Protocol)
	}
	if pf.Protocol != plan.PortForwardPIA && (s.PIA != piaSchema{}) {
		c.errorf("portForwarding.pia", "is only for protocol pia")
	}
	for i, a := range s.Apps {
		key := fmt.Sprintf("portForwarding.apps[%d]", i)
		app := plan.App{Type: c.enum(key+".type", a.Type, "", appTypes...)}
		if a.Type == nil {
			c.errorf(key+".type", "is required: one of %s", strings.Join(appTypes, ", "))
		}
		app.URL = str(a.URL, "")
		if u, err := url.Parse(app.URL); app.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.errorf(key+".url", "must be the app's web UI/RPC address inside the namespace, e.g. http://127.0.0.1:8080 (got %q)", app.URL)
		}
		if a.CredentialsFile != nil && c.absPath(key+".credentialsFile", *a.CredentialsFile) {
			app.CredentialsFile = *a.CredentialsFile
		}
		pf.Apps = append(pf.Apps, app)
	}
	if u := str(s.Hook.Unit, ""); u != "" {
		if !ValidUnitName(u) || !strings.HasSuffix(u, ".service") {
			c.errorf("portForwarding.hook.unit", "must be a service unit name (got %q)", u)
		}
		pf.HookUnit = u
	}
	if c.ha && pf.PIA != nil && pf.PIA.Credentials.File != "" && pf.PIA.Credentials.Credential == "" {
		c.errorf("portForwarding.pia", "highAssurance needs the credentials as a file or systemd credential")
	}
	n.PortForwarding = pf
}

// CredPIA is the credential name of PIA's credentials file.
const CredPIA = "pia-credentials"

func validCredName(s string) bool {
	return s != "" && len(s) <= 255 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == ""
}

// gateway is portForwarding.gateway, or for NAT-PMP the tunnel address
// with its last byte set to 1 (ProtonVPN: 10.2.0.2 → 10.2.0.1).
func (c *compiler) gateway(n *plan.Namespace, s *portFwdSchema, derive bool) netip.Addr {
	if s.Gateway != nil {
		a, ok := ParseIPLiteral(*s.Gateway)
		if !ok || !a.Is4() {
			c.errorf("portForwarding.gateway", "must be an IPv4 address inside the tunnel (got %q)", *s.Gateway)
			return netip.Addr{}
		}
		return a
	}
	if derive {
		for _, p := range n.WireGuard.Addresses {
			if a := p.Addr(); a.Is4() {
				b := a.As4()
				b[3] = 1
				return netip.AddrFrom4(b)
			}
		}
	}
	c.errorf("portForwarding.gateway", "is required: the provider's port-forwarding gateway inside the tunnel")
	return netip.Addr{}
}
