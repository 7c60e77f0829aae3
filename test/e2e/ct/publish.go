package ct

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// The LAN of the publish tests: a network namespace "lan" plays another
// machine, connected to the host (the container's namespace) by a veth.
const (
	LANNetns  = "lan"
	LANHostIf = "lan0"
	LANHost   = "10.250.1.1" // the host's address on the LAN
	LANPeer   = "10.250.1.2" // the other machine
)

// SetupLAN creates the LAN namespace and its veth to the host.
func (c *Container) SetupLAN() error {
	script := fmt.Sprintf(`set -e
ip netns add %[1]s
ip link add %[2]s type veth peer name lan netns %[1]s
ip addr add %[3]s/24 dev %[2]s; ip link set %[2]s up
ip -n %[1]s addr add %[4]s/24 dev lan; ip -n %[1]s link set lan up; ip -n %[1]s link set lo up
`, LANNetns, LANHostIf, LANHost, LANPeer)
	if r := c.Sh(script); r.Code != 0 {
		return fmt.Errorf("set up the LAN: %s", r)
	}
	return nil
}

// HostCurl fetches url from the host's namespace.
func (c *Container) HostCurl(url string, args ...string) Result {
	return c.Run(append([]string{"curl", "-sS", "-m", "5", "--noproxy", "*"}, append(args, url)...)...)
}

// CurlFromLAN fetches url from the other machine on the LAN.
func (c *Container) CurlFromLAN(url string, args ...string) Result {
	return c.Run(append([]string{"ip", "netns", "exec", LANNetns, "curl", "-sS", "-m", "5", "--noproxy", "*"}, append(args, url)...)...)
}

// ProxyNginxDir holds the host-side reverse proxy's config, PID file,
// logs and temp dirs.
const ProxyNginxDir = "/run/vpnc-test/proxy-nginx"

// StartProxyNginx starts a second, unconfined nginx in the host's
// namespace (its own config and PID file; the packaged nginx.service is
// left alone) that listens on listen and proxies everything to upstream.
func (c *Container) StartProxyNginx(listen, upstream string) error {
	d := ProxyNginxDir
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s;
		location / { proxy_pass %[3]s; }
	}
}
`, d, listen, upstream)
	if err := c.WriteFile(d+"/nginx.conf", []byte(conf), 0o644); err != nil {
		return err
	}
	if r := c.Run("systemd-run", "--quiet", "--unit=vpnc-proxy-nginx", "/usr/sbin/nginx", "-c", d+"/nginx.conf"); r.Code != 0 {
		return fmt.Errorf("start the proxy nginx: %s", r)
	}
	host, port, _ := strings.Cut(listen, ":")
	if !c.WaitListen(host, port, 10*time.Second) {
		log, _ := c.ReadFile(d + "/error.log")
		return fmt.Errorf("the proxy nginx does not listen on %s: %s", listen, log)
	}
	return nil
}

// WaitListen waits until something listens on host:port in the host's
// namespace (a TCP connect succeeds).
func (c *Container) WaitListen(host, port string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if c.Run("/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)).Code == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartConfined starts argv in a transient unit named unit, confined like
// opts.Unit, without waiting for it (for long-lived clients and servers).
func (c *Container) StartConfined(opts ProbeOpts, unit string, argv ...string) Result {
	props, err := c.DropInProperties(opts.Unit)
	if err != nil {
		return Result{Code: -1, Stderr: err.Error()}
	}
	args := []string{"systemd-run", "--quiet", "--collect", "--unit=" + unit}
	if !opts.Root {
		args = append(args, "-p", "DynamicUser=yes")
	}
	args = append(args, props...)
	args = append(args, opts.ExtraProps...)
	args = append(args, "--")
	return c.Run(append(args, argv...)...)
}

// HoldTCP keeps a TCP connection to host:port open for a minute from a
// transient unit in the host's namespace (a live connection to count).
func (c *Container) HoldTCP(unit, host, port string) Result {
	return c.Run("systemd-run", "--quiet", "--collect", "--unit="+unit, "/bin/bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%s; sleep 60", host, port))
}

// Established counts the established TCP connections in the host's
// namespace whose local end is addr:port (ss filter syntax).
func (c *Container) Established(filter string) int {
	r := c.Run("ss", "-Htn", "state", "established", filter)
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

// HostListeners returns ss's listening TCP sockets of the host's namespace
// with their processes.
func (c *Container) HostListeners() string {
	return c.Run("ss", "-Hltnp").Stdout
}

// RunLikeUnit runs argv in a transient unit with the [Unit] and
// [Service] settings of a generated unit file (a published port's proxy:
// its namespace, dynamic user, capabilities, IP filter), without the
// settings named in omit, and waits.
func (c *Container) RunLikeUnit(unit string, omit []string, argv ...string) Result {
	b, err := c.ReadFile("/run/systemd/generator/" + unit)
	if err != nil {
		return Result{Code: -1, Stderr: err.Error()}
	}
	args := []string{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec"}
	props := units.TransientProperties(b)
	for i := 0; i+1 < len(props); i += 2 {
		k, _, _ := strings.Cut(props[i+1], "=")
		switch k {
		case "ExecStart", "Description", "SourcePath":
			continue // systemd-run's own command; not transient-unit settings
		}
		if slices.Contains(omit, k) {
			continue
		}
		args = append(args, props[i], props[i+1])
	}
	return c.RunTimeout(20*time.Second, append(append(args, "--"), argv...)...)
}
