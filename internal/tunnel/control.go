//go:build linux

package tunnel

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/wireguard"
)

// The control socket lets `systemctl reload` reach the running supervisor
// and wait for the result, so a reload that cannot be applied fails the
// reload job with the reason (systemctl prints it) instead of vanishing in
// a signal. It lives in the namespace's private runtime dir (root only,
// hidden from confined services).

// ControlPath is the control socket of namespace name's supervisor.
func ControlPath(name string) string { return filepath.Join(plan.PrivatePath(name), "control.sock") }

// controlPathFor is ControlPath; tests point it elsewhere.
var controlPathFor = ControlPath

type reloadReq struct {
	check bool // only check whether the plan applies live
	reply chan error
}

// hashFile is the SHA-256 of a file ("" when unreadable): the identity of
// the plan a supervisor runs, compared by status with the generator's.
func hashFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// HashFile is hashFile for status.
func HashFile(path string) string { return hashFile(path) }

func (s *Supervisor) listenControl() (func(), error) {
	path := s.o.ControlPath
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	os.Remove(path) // a stale socket of an earlier run
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.handleControl(c)
		}
	}()
	return func() { l.Close(); os.Remove(path) }, nil
}

func (s *Supervisor) handleControl(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	req := reloadReq{reply: make(chan error, 1)}
	switch strings.TrimSpace(line) {
	case "reload":
	case "check":
		req.check = true
	default:
		fmt.Fprintf(c, "error: unknown request %q\n", strings.TrimSpace(line))
		return
	}
	select {
	case s.reloads <- req:
		err = <-req.reply
	case <-time.After(30 * time.Second):
		err = errors.New("the tunnel helper is busy (bringing the tunnel back); try again")
	}
	if err != nil {
		fmt.Fprintf(c, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	fmt.Fprintln(c, "ok")
}

// reload applies the generator's current plan to the running tunnel.
func (s *Supervisor) reload(ctx context.Context, dev *wireguard.Device, req reloadReq) error {
	next, err := plan.LoadTrusted(s.o.PlanPath)
	if err != nil {
		return err
	}
	if next.Name != s.n.Name {
		return fmt.Errorf("plan %s is for namespace %q", s.o.PlanPath, next.Name)
	}
	if diffs := plan.LiveDiff(s.n, next); len(diffs) > 0 {
		return errors.New(plan.DescribeDiffs(diffs))
	}
	if req.check {
		return nil
	}
	at := time.Now()
	if dev != nil {
		if err := dev.Reconfigure(ctx, next); err != nil {
			return err
		}
	}
	if dev != nil {
		s.wd = s.wd.Follow(s.n, next, at)
		// Reconfigure gave every peer its configured keepalive (and
		// re-created the moved ones): the next check probes anew.
		s.probing = map[int]bool{}
		for i := range s.recovering {
			if i >= len(next.WireGuard.Peers) {
				delete(s.recovering, i)
			}
		}
	}
	s.n = next
	s.planHash = hashFile(s.o.PlanPath)
	s.state.OnTunnelLoss = next.OnTunnelLoss
	s.writeState()
	return nil
}

// Reload asks the supervisor of namespace name to apply the current plan
// (check: only say whether it would apply) and waits for the answer.
func Reload(name string, check bool) error {
	c, err := net.DialTimeout("unix", controlPathFor(name), 5*time.Second)
	if err != nil {
		return fmt.Errorf("reach the tunnel helper of %s: %w (is vpn-wg@%s running?)", name, err, name)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	req := "reload\n"
	if check {
		req = "check\n"
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer from the tunnel helper of %s: %w", name, err)
	}
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	return errors.New(strings.TrimPrefix(line, "error: "))
}

// refresh schedules the re-resolution of hostname endpoints per peer.
type refresh struct {
	every []time.Duration
	next  []time.Time
}

func newRefresh(peers []plan.Peer, now time.Time) *refresh {
	r := &refresh{every: make([]time.Duration, len(peers)), next: make([]time.Time, len(peers))}
	for i := range peers {
		r.every[i] = wireguard.RefreshInterval(peers, i)
		r.next[i] = now.Add(r.every[i])
	}
	return r
}

func (r *refresh) due(now time.Time) []int {
	var out []int
	for i, e := range r.every {
		if e > 0 && !now.Before(r.next[i]) {
			out = append(out, i)
			r.next[i] = now.Add(e)
		}
	}
	return out
}

// Down is `vpn-confinement-wireguard down NAME` (ExecStopPost=): remove
// what the tunnel left, and, when the tunnel helper died or was stopped
// while the namespace stays up, apply onTunnelLoss to the confined units
// the dead helper can no longer hold: freeze them, or stop them (only
// after a crash: an explicit stop or restart of vpn-wg@ already stops or
// restarts them through Requires=). They are recorded, so the next helper
// thaws or starts them once its tunnel works.
func Down(ctx context.Context, n *plan.Namespace, log *journal.Logger, uc UnitControl) error {
	err := wireguard.Down(n, log)
	if n.LossMode() == plan.OnTunnelLossBlock {
		return err
	}
	if uc == nil {
		uc = NewDBusUnits()
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ns := "vpn-ns@" + n.Name + ".service"
	if st, serr := uc.States(ctx, []string{ns}); serr != nil || st[ns] != "active" {
		return err // the namespace is going: BindsTo= stops everything
	}
	crashed := os.Getenv("SERVICE_RESULT") != "" && os.Getenv("SERVICE_RESULT") != "success"
	if n.LossMode() == plan.OnTunnelLossStop && !crashed {
		return err
	}
	rec, rerr := LoadRecord(RecordPath(n.Name))
	if rerr != nil {
		log.Warnf("read %s: %v", RecordPath(n.Name), rerr)
	}
	if HoldUnits(ctx, n, uc, &rec, log) {
		if serr := rec.Save(RecordPath(n.Name)); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return err
}
