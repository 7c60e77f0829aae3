//go:build linux

// Package portfwd is vpn-pf@NAME.service: it runs inside the confinement
// namespace, leases a forwarded port from the provider (subpackages
// natpmp, pia; lease keeps it), opens exactly that port inbound on the
// tunnel interface (the forwarded_ports set of the namespace's table,
// replaced in one transaction), writes it where confined services read
// it, hands it to the torrent clients (internal/apps), and closes it again
// on loss, when the tunnel goes away, and when it stops. A failure here
// only ever means "no forwarded port": nothing else is opened.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/vishvananda/netlink"

	"github.com/vpn-confinement/vpn-confinement/internal/apps"
	"github.com/vpn-confinement/vpn-confinement/internal/apps/deluge"
	"github.com/vpn-confinement/vpn-confinement/internal/apps/qbittorrent"
	"github.com/vpn-confinement/vpn-confinement/internal/apps/transmission"
	"github.com/vpn-confinement/vpn-confinement/internal/credentials"
	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/lease"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/natpmp"
	"github.com/vpn-confinement/vpn-confinement/internal/portfwd/pia"
	"github.com/vpn-confinement/vpn-confinement/internal/units"
)

// PortFile and EnvFile are where confined services read the port.
func PortFile(name string) string { return filepath.Join(plan.RuntimePath(name), "forwarded-port") }

// EnvFile is PortFile as an EnvironmentFile= (VPN_FORWARDED_PORT=N).
func EnvFile(name string) string { return filepath.Join(plan.RuntimePath(name), "forwarded-port.env") }

// StatePath is the lease helper's state for vpn-confinement status.
func StatePath(name string) string { return filepath.Join(plan.PrivatePath(name), "portfwd.json") }

// Options are the injectable parts.
type Options struct {
	// Provider overrides the plan's protocol (tests).
	Provider lease.Provider
	// HTTP is the client the app adapters use (nil: a default one).
	HTTP *http.Client
	// Restart restarts the hook unit (nil: systemd over D-Bus).
	Restart func(ctx context.Context, unit string) error
	// Notify sends sd_notify messages (nil: daemon.SdNotify).
	Notify func(string)
	// TunnelPoll is how often the tunnel link is checked (default 1 s).
	TunnelPoll time.Duration
}

// runner holds one lease helper's state.
type runner struct {
	n       *plan.Namespace
	log     *journal.Logger
	o       Options
	apps    []*apps.Syncer
	mu      sync.Mutex
	port    uint16
	since   time.Time
	changes int
	loop    *lease.Loop
	// endWhy is why the current lease is being ended from outside the
	// lease loop (the tunnel went away), for the loss message.
	endWhy string
}

// Run is `vpn-confinement-portfwd run NAME`.
func Run(ctx context.Context, n *plan.Namespace, log *journal.Logger, o Options) error {
	if n.PortForwarding == nil {
		return errors.New("the plan has no portForwarding")
	}
	if o.Notify == nil {
		o.Notify = func(s string) { daemon.SdNotify(false, s) }
	}
	if o.TunnelPoll == 0 {
		o.TunnelPoll = time.Second
	}
	if o.Restart == nil {
		o.Restart = restartUnit
	}
	r := &runner{n: n, log: log, o: o}
	syncers, err := r.adapters()
	if err != nil {
		return err
	}
	r.apps = syncers
	appCtx, stopApps := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range r.apps {
		wg.Add(1)
		go func(s *apps.Syncer) { defer wg.Done(); s.Run(appCtx) }(s)
	}
	// The syncers stop before closeApps talks to the apps: an adapter is
	// not safe for concurrent use.
	syncersDone := false
	stopSyncers := func() {
		if !syncersDone {
			syncersDone = true
			stopApps()
			wg.Wait()
		}
	}
	defer stopSyncers()
	// Never gates anything: ready at once.
	o.Notify(daemon.SdNotifyReady)
	r.apply(ctx, 0, "no lease yet")
	for ctx.Err() == nil {
		link, ok := r.waitTunnel(ctx)
		if !ok {
			break
		}
		provider, err := r.provider()
		if err != nil {
			r.log.Errorf("port forwarding: %v", err)
			o.Notify("STATUS=no forwarded port: " + err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
			continue
		}
		// The lease lives as long as the tunnel: when its link goes, the
		// port is closed at once and a fresh lease is made afterwards.
		lctx, cancel := context.WithCancel(ctx)
		go r.watchTunnel(lctx, cancel, link)
		r.loop = lease.New(lease.Config{
			Provider: provider,
			OnChange: func(old, port uint16) {
				if old != 0 {
					r.log.Warnf("port forwarding: the provider changed the port from %d to %d", old, port)
				}
				r.apply(ctx, port, "")
			},
			OnLoss: func(reason error) {
				why := reason.Error()
				r.mu.Lock()
				if errors.Is(reason, lease.ErrStopped) && r.endWhy != "" {
					why = r.endWhy
				}
				r.mu.Unlock()
				r.apply(ctx, 0, why)
			},
			Logf: func(f string, a ...any) { r.log.Infof("port forwarding: "+f, a...) },
		})
		statusDone := make(chan struct{})
		go r.statusLoop(lctx, statusDone)
		if err := r.loop.Run(lctx); err != nil {
			r.log.Warnf("port forwarding: release: %v", err)
		}
		cancel()
		<-statusDone
		r.mu.Lock()
		r.endWhy = ""
		r.mu.Unlock()
	}
	r.apply(ctx, 0, "stopped")
	stopSyncers()
	r.closeApps()
	return nil
}

// apply makes port (0: none) the forwarded port everywhere, firewall
// first (closing an old port before anything else is told of a new one),
// then the files, the apps, and the hook unit.
func (r *runner) apply(ctx context.Context, port uint16, why string) {
	r.mu.Lock()
	old := r.port
	if port != old || r.since.IsZero() {
		r.port, r.since = port, time.Now()
		if port != old {
			r.changes++
		}
	}
	r.mu.Unlock()
	var ports []uint16
	if port != 0 {
		ports = []uint16{port}
	}
	if r.n.PortForwarding.Protocol == plan.PortForwardStatic {
		ports = []uint16{r.n.PortForwarding.StaticPort} // always open: static
	}
	if err := setFirewall(r.n.Name, ports); err != nil {
		r.log.Errorf("port forwarding: firewall: %v", err)
	}
	if err := writeFiles(r.n.Name, port); err != nil {
		r.log.Errorf("port forwarding: %v", err)
	}
	for _, s := range r.apps {
		s.Set(port)
	}
	switch {
	case port != 0 && port != old:
		r.log.Infof("port forwarding: port %d forwarded and open on %s", port, r.n.WireGuard.Interface)
		r.o.Notify("STATUS=forwarded port " + strconv.Itoa(int(port)))
	case port == 0 && old != 0:
		r.log.Warnf("port forwarding: port %d closed: %s", old, why)
		r.o.Notify("STATUS=no forwarded port: " + why)
	}
	// Not while stopping (ctx done): starting units is wrong then, e.g.
	// during shutdown; ExecStopPost has emptied the env file anyway.
	if hook := r.n.PortForwarding.HookUnit; hook != "" && port != old && ctx.Err() == nil {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.o.Restart(hctx, hook); err != nil {
			r.log.Warnf("port forwarding: restart %s: %v", hook, err)
		}
		cancel()
	}
	r.writeState()
}

func setFirewall(name string, ports []uint16) error {
	unlock, err := firewall.Lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	return firewall.UpdatePorts(nil, firewall.TableName, firewall.SetForwarded, ports)
}

// writeFiles writes (or, for 0, removes) the port and env files, each
// replaced atomically; the directory is bound read-only into confined
// services, so they see the new file at once.
func writeFiles(name string, port uint16) error {
	if port == 0 {
		os.Remove(PortFile(name))
		return writeAtomic(EnvFile(name), []byte("VPN_FORWARDED_PORT=\n"), 0o644)
	}
	p := strconv.Itoa(int(port))
	if err := writeAtomic(PortFile(name), []byte(p+"\n"), 0o644); err != nil {
		return err
	}
	return writeAtomic(EnvFile(name), []byte("VPN_FORWARDED_PORT="+p+"\n"), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// provider builds the plan's lease provider.
func (r *runner) provider() (lease.Provider, error) {
	if r.o.Provider != nil {
		return r.o.Provider, nil
	}
	pf := r.n.PortForwarding
	switch pf.Protocol {
	case plan.PortForwardNATPMP:
		c := &natpmp.Client{Gateway: pf.Gateway, Logf: func(f string, a ...any) { r.log.Debugf("nat-pmp: "+f, a...) }}
		return natpmp.Proton{Client: c}, nil
	case plan.PortForwardPIA:
		creds, err := credentials.Load(credentialFile(pf.PIA.Credentials))
		if err != nil {
			return nil, fmt.Errorf("PIA credentials: %w", err)
		}
		ca, err := pia.LoadCA(pf.PIA.CAFile)
		if err != nil {
			return nil, err
		}
		ts := &pia.TokenSource{Credentials: creds, URL: pf.PIA.TokenURL}
		return &pia.Forwarder{
			Gateway:       &pia.Gateway{Addr: pf.Gateway, Hostname: pf.PIA.Hostname, RootCAs: ca},
			Token:         ts.Token,
			SignatureFile: filepath.Join(plan.PrivatePath(r.n.Name), "pia-signature.json"),
			Logf:          func(f string, a ...any) { r.log.Infof(f, a...) },
		}, nil
	case plan.PortForwardStatic:
		return staticProvider(pf.StaticPort), nil
	}
	return nil, fmt.Errorf("unknown protocol %q", pf.Protocol)
}

// credentialFile is where a KeySource's file is readable by this unit:
// its systemd credential when systemd provided it (a private copy), else
// the file itself, as the tunnel helper does with its key. systemd can
// set $CREDENTIALS_DIRECTORY and still leave it empty (seen with 252 in a
// container: not even SetCredential= appears), and a missing credential
// must not make the helper fail when the file is there.
func credentialFile(k plan.KeySource) string {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && k.Credential != "" && !strings.ContainsRune(k.Credential, '/') {
		p := filepath.Join(dir, k.Credential)
		if _, err := os.Lstat(p); err == nil || k.File == "" {
			return p
		}
	}
	return k.File
}

// staticProvider is a port the provider assigned once: always held.
type staticProvider uint16

func (p staticProvider) Acquire(context.Context) (lease.Lease, error) {
	return lease.Lease{Port: uint16(p), Lifetime: 24 * time.Hour, RenewAfter: time.Hour}, nil
}
func (p staticProvider) Renew(ctx context.Context, _ lease.Lease) (lease.Lease, error) {
	return p.Acquire(ctx)
}
func (staticProvider) Release(context.Context, lease.Lease) error { return nil }

// adapters builds one Syncer per configured app.
func (r *runner) adapters() ([]*apps.Syncer, error) {
	hc := r.o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var out []*apps.Syncer
	for i, a := range r.n.PortForwarding.Apps {
		var creds *credentials.Credentials
		if a.CredentialsFile != "" {
			c, err := credentials.Load(credentialFile(plan.KeySource{File: a.CredentialsFile, Credential: units.AppCredential(i)}))
			if err != nil {
				return nil, fmt.Errorf("app %d (%s): credentials: %w", i, a.Type, err)
			}
			creds = &c
		}
		base := strings.TrimSuffix(a.URL, "/")
		var ad apps.Adapter
		var err error
		switch a.Type {
		case "qbittorrent":
			ad, err = qbittorrent.New(base, creds, hc)
		case "transmission":
			if u, perr := url.Parse(base); perr == nil && (u.Path == "" || u.Path == "/") {
				base += "/transmission/rpc"
			}
			ad, err = transmission.New(base, creds, hc)
		case "deluge":
			if u, perr := url.Parse(base); perr == nil && (u.Path == "" || u.Path == "/") {
				base += "/json"
			}
			var c credentials.Credentials
			if creds != nil {
				c = *creds
			}
			ad, err = deluge.New(base, c, "", hc)
		default:
			err = fmt.Errorf("unknown app type %q", a.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("app %d (%s): %w", i, a.Type, err)
		}
		name := a.Type
		out = append(out, &apps.Syncer{Adapter: ad, Name: name, Logf: func(f string, args ...any) { r.log.Infof(name+": "+f, args...) }})
	}
	return out, nil
}

// closeApps tells the apps the port is gone (best effort, at stop).
func (r *runner) closeApps() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range r.apps {
		if err := s.Adapter.Close(ctx); err != nil {
			r.log.Debugf("%s: close: %v", s.Name, err)
		}
	}
}

// waitTunnel waits until the tunnel's link exists in this (the
// confinement) namespace and returns its index; false when ctx ends.
func (r *runner) waitTunnel(ctx context.Context) (int, bool) {
	for {
		if l, err := netlink.LinkByName(r.n.WireGuard.Interface); err == nil {
			return l.Attrs().Index, true
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(r.o.TunnelPoll):
		}
	}
}

// watchTunnel cancels the lease when the tunnel's link goes away, or is
// replaced by a new one (another index: the tunnel helper recreated it
// between two polls, a new session the old lease may not survive).
func (r *runner) watchTunnel(ctx context.Context, cancel context.CancelFunc, index int) {
	t := time.NewTicker(r.o.TunnelPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l, err := netlink.LinkByName(r.n.WireGuard.Interface)
			var why string
			switch {
			case err != nil:
				why = "tunnel " + r.n.WireGuard.Interface + " is gone"
				r.log.Warnf("port forwarding: %s; closing the port until it is back", why)
			case l.Attrs().Index != index:
				why = "tunnel " + r.n.WireGuard.Interface + " was recreated"
				r.log.Warnf("port forwarding: %s; closing the port and leasing it again", why)
			default:
				continue
			}
			r.mu.Lock()
			r.endWhy = why
			r.mu.Unlock()
			cancel()
			return
		}
	}
}

func (r *runner) statusLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.writeState()
			if r.loop != nil {
				r.o.Notify("STATUS=" + r.loop.Status())
			}
		}
	}
}

// restartUnit restarts unit over systemd's private D-Bus socket.
func restartUnit(ctx context.Context, unit string) error {
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.RestartUnitContext(ctx, unit, "replace", nil)
	return err
}

// Down is `vpn-confinement-portfwd down NAME` (ExecStopPost=): the port is
// closed and its files are gone, whatever happened to the helper.
func Down(n *plan.Namespace, log *journal.Logger) error {
	var errs []error
	if n.PortForwarding != nil && n.PortForwarding.Protocol != plan.PortForwardStatic {
		if err := setFirewall(n.Name, nil); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	os.Remove(PortFile(n.Name))
	if err := writeAtomic(EnvFile(n.Name), []byte("VPN_FORWARDED_PORT=\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	// The report says so too, also after a crash of the helper.
	if n.PortForwarding != nil {
		now := time.Now()
		st := State{Protocol: n.PortForwarding.Protocol, Since: now, Lease: "stopped", Updated: now}
		if old, err := LoadState(n.Name); err == nil {
			st.Changes = old.Changes
			if old.Port == 0 {
				st.Since = old.Since
			}
		}
		if err := st.write(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
