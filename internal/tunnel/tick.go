//go:build linux

package tunnel

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// tick runs the watchdog once: read the counters, act on stalls and dead
// endpoints, probe while down, hold or release the confined units, report.
func (s *Supervisor) tick(ctx context.Context, dev *wireguard.Device) {
	now := time.Now()
	stats, err := dev.PeerStats()
	if err != nil {
		s.log.Debugf("read peer counters: %v", err)
		return
	}
	peers := s.n.WireGuard.Peers
	var descs, acted []string
	stalled := false
	s.state.Peers = s.state.Peers[:0]
	s.state.RxBytes, s.state.TxBytes = 0, 0
	for i := range peers {
		idx, ap := dev.ActiveEndpoint(i)
		unresolved := peers[i].Endpoint != nil && !ap.IsValid()
		if unresolved {
			if left, err := dev.ResolvePending(ctx); left == 0 {
				s.log.Infof("peer %d: endpoint resolved", i)
				stats[i] = wireguard.PeerStats{} // the peer was re-created
				s.wd.Reset(i, now, 0, 0)
				idx, ap = dev.ActiveEndpoint(i)
				unresolved = false
			} else {
				s.log.Debugf("peer %d: %v", i, err)
			}
		}
		obs := Observation{Unresolved: unresolved, NoRoute: !unresolved && s.routes.missing(ap)}
		action := s.wd.Check(i, stats[i], obs, now)
		if action != Nothing {
			// What the peer was before it is moved: the state this tick
			// reports (the next ones say connecting, until a handshake).
			acted = append(acted, s.wd.Describe(i, stats[i], now))
			stalled = stalled || s.wd.Health(i) == Stalled
		}
		switch action {
		case Failover:
			next := s.wd.Next(i, idx)
			h := s.wd.Health(i)
			nap, err := dev.SwitchEndpoint(ctx, i, next)
			if err != nil {
				s.log.Warnf("peer %d: %s; failing over to endpoint %d: %v", i, h, next+1, err)
			} else {
				s.log.Warnf("peer %d: %s at %s; failed over to endpoint %d of %d, %s", i, h, ap, next+1, len(wireguard.Candidates(peers[i])), nap)
				idx, ap = next, nap
				s.recovering[i] = fmt.Sprintf("failing over to endpoint %d of %d (%s)", next+1, len(wireguard.Candidates(peers[i])), nap)
				s.state.Failovers++
				delete(s.probing, i)             // the re-created peer has its configured keepalive
				stats[i] = wireguard.PeerStats{} // and counters from zero
			}
			s.wd.Reset(i, now, stats[i].TxBytes, stats[i].RxBytes)
		case Reapply:
			h := s.wd.Health(i)
			nap, err := dev.SwitchEndpoint(ctx, i, idx)
			if err != nil {
				s.log.Warnf("peer %d: %s; re-resolving its endpoint failed: %v", i, h, err)
			} else {
				s.log.Warnf("peer %d: %s at %s; re-resolved and re-applied the endpoint (%s)", i, h, ap, nap)
				ap = nap
				s.recovering[i] = fmt.Sprintf("re-applied endpoint %s", nap)
				s.state.Failovers++
				delete(s.probing, i)
				stats[i] = wireguard.PeerStats{}
			}
			s.wd.Reset(i, now, stats[i].TxBytes, stats[i].RxBytes)
		}
		if s.wd.Health(i).Usable() {
			delete(s.recovering, i)
		}
		s.probe(dev, i, !s.wd.Health(i).Usable())
		s.state.Peers = append(s.state.Peers, PeerState{Endpoint: addrText(ap), EndpointIndex: idx, Endpoints: len(wireguard.Candidates(peers[i])),
			Health: s.wd.Health(i).String(), LastHandshake: stats[i].LastHandshake, RxBytes: stats[i].RxBytes, TxBytes: stats[i].TxBytes})
		s.state.RxBytes += stats[i].RxBytes
		s.state.TxBytes += stats[i].TxBytes
		d := s.wd.Describe(i, stats[i], now)
		if r := s.recovering[i]; r != "" {
			d = r + ": " + d
		}
		descs = append(descs, d)
	}
	h := s.wd.Worst()
	reason := strings.Join(descs, "; ")
	if len(acted) > 0 {
		state := StateBlocked
		if stalled {
			state = StateStalled
		}
		s.setState(state, strings.Join(acted, "; ")+"; "+reason, journal.Warning)
		s.hold(ctx)
		return
	}
	switch {
	case h.Usable():
		s.o.Backoff.Reset()
		s.release(ctx)
		if h == Up {
			s.setState(StateUp, reason, journal.Info)
		} else {
			s.setState(StateUp, reason+" (idle)", journal.Info)
		}
	case h == Connecting:
		s.setState(StateConnecting, reason, journal.Info)
		if len(s.recovering) > 0 {
			s.hold(ctx) // still down: a failover or re-apply awaits its handshake
		}
	case h == Stalled:
		s.setState(StateStalled, reason, journal.Warning)
		s.hold(ctx)
	default:
		s.setState(StateBlocked, reason, journal.Warning)
		s.hold(ctx)
	}
}

func addrText(ap interface{ IsValid() bool }) string {
	if !ap.IsValid() {
		return ""
	}
	return fmt.Sprint(ap)
}

// probe sets a short keepalive on peer i while it is not usable (on) and
// gives back the configured one when it is again: WireGuard only tries to
// handshake while it has something to send.
func (s *Supervisor) probe(dev *wireguard.Device, i int, on bool) {
	configured := time.Duration(s.n.WireGuard.Peers[i].PersistentKeepalive) * time.Second
	if configured > 0 && configured <= s.o.ProbeKeepalive {
		return // it already keeps trying
	}
	if on == s.probing[i] {
		return
	}
	want := configured
	if on {
		want = s.o.ProbeKeepalive
	}
	if err := dev.SetKeepalive(i, want); err != nil {
		s.log.Debugf("peer %d: set keepalive %s: %v", i, want, err)
		return
	}
	s.probing[i] = on
}

// hold applies onTunnelLoss to the confined units while the tunnel is
// down: stop (recorded, to start them again) or freeze. block: nothing.
func (s *Supervisor) hold(ctx context.Context) {
	if s.n.LossMode() == plan.OnTunnelLossBlock {
		return
	}
	held := HoldUnits(ctx, s.n, s.o.Units, &s.rec, s.log)
	if held {
		if err := s.rec.Save(s.o.RecordPath); err != nil {
			s.log.Warnf("save %s: %v", s.o.RecordPath, err)
		}
	}
}

// release undoes hold once the tunnel is usable again.
func (s *Supervisor) release(ctx context.Context) {
	if len(s.rec.Stopped)+len(s.rec.Frozen) == 0 {
		return
	}
	ReleaseUnits(ctx, s.o.Units, &s.rec, s.log)
	if err := s.rec.Save(s.o.RecordPath); err != nil {
		s.log.Warnf("save %s: %v", s.o.RecordPath, err)
	}
}

func (s *Supervisor) unitInfo() []UnitInfo {
	var names []string
	for _, u := range s.n.Services {
		names = append(names, u.Name)
	}
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := s.o.Units.States(ctx, names)
	if err != nil {
		return s.state.Units
	}
	held := map[string]string{}
	for _, u := range s.rec.Stopped {
		held[u] = "stopped"
	}
	for _, u := range s.rec.Frozen {
		held[u] = "frozen"
	}
	var out []UnitInfo
	for _, n := range names {
		out = append(out, UnitInfo{Unit: n, Active: st[n], Held: held[n]})
	}
	return out
}
