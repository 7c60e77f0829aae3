package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// UnitControl is the part of the service manager the supervisor uses for
// onTunnelLoss stop and freeze. The D-Bus implementation talks to PID 1
// over its private socket (root only); tests use a fake.
type UnitControl interface {
	// States returns the ActiveState of each unit ("active", "inactive", ...).
	States(ctx context.Context, units []string) (map[string]string, error)
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Freeze(ctx context.Context, unit string) error
	Thaw(ctx context.Context, unit string) error
}

// dbusUnits is UnitControl over systemd's private D-Bus socket. The
// connection is made on first use and again after a failure (PID 1
// re-executes on upgrades, dropping it).
type dbusUnits struct {
	mu sync.Mutex
	c  *sddbus.Conn
}

// NewDBusUnits returns the D-Bus UnitControl.
func NewDBusUnits() UnitControl { return &dbusUnits{} }

func (d *dbusUnits) conn(ctx context.Context) (*sddbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.c != nil && d.c.Connected() {
		return d.c, nil
	}
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	d.c = c
	return c, nil
}

func (d *dbusUnits) States(ctx context.Context, units []string) (map[string]string, error) {
	c, err := d.conn(ctx)
	if err != nil {
		return nil, err
	}
	st, err := c.ListUnitsByNamesContext(ctx, units)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, u := range st {
		out[u.Name] = u.ActiveState
	}
	return out, nil
}

// Start and Stop enqueue a job and return: a torrent client may take
// minutes to stop (qBittorrent's unit allows 30), and the supervisor must
// keep watching the tunnel meanwhile.
func (d *dbusUnits) Start(ctx context.Context, unit string) error {
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	_, err = c.StartUnitContext(ctx, unit, "replace", nil)
	return err
}

func (d *dbusUnits) Stop(ctx context.Context, unit string) error {
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	_, err = c.StopUnitContext(ctx, unit, "replace", nil)
	return err
}

func (d *dbusUnits) Freeze(ctx context.Context, unit string) error {
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	return c.FreezeUnit(ctx, unit)
}

func (d *dbusUnits) Thaw(ctx context.Context, unit string) error {
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	return c.ThawUnit(ctx, unit)
}

// Record is what the supervisor keeps across its own restarts: the
// confined units it stopped or froze while the tunnel was down, to start
// or thaw again when it is back (units an admin stopped are never in it).
// It lives in the namespace's private runtime dir, which confined
// services cannot see.
type Record struct {
	Stopped []string `json:"stopped,omitempty"`
	Frozen  []string `json:"frozen,omitempty"`
}

// RecordPath is where the supervisor of namespace name keeps its Record.
func RecordPath(name string) string { return filepath.Join(plan.PrivatePath(name), "units.json") }

// LoadRecord reads a Record; a missing one is empty.
func LoadRecord(path string) (Record, error) {
	var r Record
	_, err := loadJSON(path, &r)
	return r, err
}

// loadJSON decodes the JSON file at path into v; a missing file is not an
// error (found false, v untouched).
func loadJSON(path string, v any) (found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// Save writes the Record atomically.
func (r Record) Save(path string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'), 0o600)
}

// HoldUnits applies onTunnelLoss (stop or freeze) to the active confined
// units of n that are not held yet, recording them in rec. It reports
// whether rec changed.
func HoldUnits(ctx context.Context, n *plan.Namespace, uc UnitControl, rec *Record, log *journal.Logger) bool {
	var names []string
	for _, u := range n.Services {
		names = append(names, u.Name)
	}
	if len(names) == 0 || n.LossMode() == plan.OnTunnelLossBlock {
		return false
	}
	st, err := uc.States(ctx, names)
	if err != nil {
		log.Warnf("onTunnelLoss %s: cannot read the confined units' states: %v (they stay blocked)", n.OnTunnelLoss, err)
		return false
	}
	changed := false
	for _, u := range names {
		if st[u] != "active" && st[u] != "reloading" || slices.Contains(rec.Stopped, u) || slices.Contains(rec.Frozen, u) {
			continue
		}
		switch n.LossMode() {
		case plan.OnTunnelLossStop:
			err = uc.Stop(ctx, u)
			if err == nil {
				rec.Stopped = append(rec.Stopped, u)
			}
		case plan.OnTunnelLossFreeze:
			err = uc.Freeze(ctx, u)
			if err == nil {
				rec.Frozen = append(rec.Frozen, u)
			}
		}
		if err != nil {
			log.Warnf("onTunnelLoss %s: %s: %v (it stays blocked)", n.OnTunnelLoss, u, err)
			continue
		}
		changed = true
		log.Warnf("onTunnelLoss %s: %s %s until the tunnel is back", n.OnTunnelLoss, map[string]string{plan.OnTunnelLossStop: "stopped", plan.OnTunnelLossFreeze: "froze"}[n.OnTunnelLoss], u)
	}
	return changed
}

// ReleaseUnits starts the units HoldUnits stopped and thaws those it
// froze. A unit whose start or thaw failed (e.g. a job conflict while
// systemd is still restarting the tunnel unit) stays in rec and is tried
// again at the next check: dropping it would leave it stopped for good.
func ReleaseUnits(ctx context.Context, uc UnitControl, rec *Record, log *journal.Logger) {
	var stopped, frozen []string
	for _, u := range rec.Stopped {
		if err := uc.Start(ctx, u); err != nil {
			log.Warnf("tunnel back: start %s: %v (retrying)", u, err)
			stopped = append(stopped, u)
			continue
		}
		log.Infof("tunnel back: started %s again", u)
	}
	for _, u := range rec.Frozen {
		if err := uc.Thaw(ctx, u); err != nil {
			log.Warnf("tunnel back: thaw %s: %v (retrying)", u, err)
			frozen = append(frozen, u)
			continue
		}
		log.Infof("tunnel back: thawed %s", u)
	}
	rec.Stopped, rec.Frozen = stopped, frozen
}

// writeAtomic writes path through a temporary file in its directory and a
// rename: readers (status, node_exporter) never see half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
