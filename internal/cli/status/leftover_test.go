//go:build linux

package status

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/systemd"
)

func TestAssessLeftover(t *testing.T) {
	yes, no := true, false
	l := Leftover{Name: "media", Config: "/etc/vpn-confinement.d/media.yaml", Record: "/var/lib/vpn-confinement/media.units",
		Netns: Netns{Path: "/run/netns/media", Present: true, ID: "net:[4026532]"},
		Unit:  Unit{Name: "vpn-ns@media.service", ActiveState: "active", SubState: "exited"},
		Confined: []Unit{
			{Name: "qbittorrent-nox@qbt.service", ActiveState: "active", SubState: "running", MainPID: 10, InNamespace: &yes},
			{Name: "web.service", ActiveState: "active", SubState: "running", MainPID: 11, InNamespace: &no, ProcessNetns: "net:[1]"},
			{Name: "idle.service", ActiveState: "inactive", SubState: "dead"},
		}}
	AssessLeftover(&l)
	want := []string{
		"/etc/vpn-confinement.d/media.yaml was removed, but namespace media still runs (vpn-ns@media.service is active, /run/netns/media exists): nothing confines its units any more",
		"qbittorrent-nox@qbt.service still runs inside the namespace, but without its drop-in: after its next restart it runs on the host's network",
		"web.service runs OUTSIDE the namespace: on the host's network",
	}
	if d := cmp.Diff(want, l.Problems); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	wantNotes := []string{
		"to keep them confined: restore /etc/vpn-confinement.d/media.yaml, run vpn-confinement validate, then systemctl daemon-reload",
		"to end the confinement on purpose: systemctl stop qbittorrent-nox@qbt.service web.service, then systemctl stop vpn-ns@media.service; started again, they run on the host's network",
	}
	if d := cmp.Diff(wantNotes, l.Notes); d != "" {
		t.Errorf("notes (-want +got):\n%s", d)
	}
	var b bytes.Buffer
	rep := &Report{Systemd: "running", Leftovers: []Leftover{l}}
	rep.WriteText(&b, time.Now())
	for _, s := range []string{
		"! media: LEFTOVER (no namespace file, no plan)\n",
		"    config     /etc/vpn-confinement.d/media.yaml (removed)\n",
		"    namespace  /run/netns/media present net:[4026532]\n",
		"    confined   qbittorrent-nox@qbt.service active (running, PID 10), in the namespace (no longer confined)\n",
		"    PROBLEM: web.service runs OUTSIDE the namespace: on the host's network\n",
		"    note: to keep them confined: restore",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, b.String())
		}
	}
	if rep.Problems() != 3 {
		t.Errorf("Problems() = %d, want 3", rep.Problems())
	}

	// The namespace is gone: what runs, runs on the host; the record is
	// worth a note only.
	gone := Leftover{Name: "media", Config: "/etc/vpn-confinement.d/media.yaml", Record: "/var/lib/vpn-confinement/media.units",
		Netns: Netns{Path: "/run/netns/media"}, Unit: Unit{Name: "vpn-ns@media.service", ActiveState: "inactive"},
		Confined: []Unit{{Name: "web.service", ActiveState: "active", MainPID: 11, InNamespace: &no}}}
	AssessLeftover(&gone)
	if len(gone.Problems) != 0 || len(gone.Notes) != 2 || !strings.Contains(gone.Notes[0], "web.service runs on the host's network: /etc/vpn-confinement.d/media.yaml, which confined it, was removed") ||
		!strings.Contains(gone.Notes[1], "delete it if the removal was intended") {
		t.Errorf("gone: problems %q notes %q", gone.Problems, gone.Notes)
	}
}

// TestCollectLeftover: a namespace whose file and plan are gone while its
// vpn-ns@ unit still runs shows in status (all and by name); a pin that is
// not ours does not.
func TestCollectLeftover(t *testing.T) {
	dir := t.TempDir()
	p := paths.Paths{ConfigDir: filepath.Join(dir, "conf"), GeneratorDir: filepath.Join(dir, "gen"), NetnsDir: filepath.Join(dir, "netns"),
		RuntimeDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state"), Proc: "/proc", Sys: "/sys", Root: "/", UnitPath: []string{}}
	for _, d := range []string{p.ConfigDir, p.PlanDir(), p.NetnsDir, p.StateDir} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(p.StateDir, "media.units"), []byte("app.service\n"), 0o644)
	os.WriteFile(filepath.Join(p.NetnsDir, "other"), nil, 0o644) // someone else's namespace
	pid := sleeper(t, "")
	m := fakeManager{
		"vpn-ns@media.service": {"Id": "vpn-ns@media.service", "LoadState": "loaded", "ActiveState": "active", "SubState": "exited", "MainPID": "0"},
		"app.service":          {"Id": "app.service", "LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": strconv.Itoa(pid)},
	}
	c := Collector{Paths: p, Systemd: m, Now: time.Now()}
	for _, only := range []string{"", "media"} {
		rep, err := c.Collect(only)
		if err != nil {
			t.Fatalf("Collect(%q): %v", only, err)
		}
		if len(rep.Leftovers) != 1 || rep.Leftovers[0].Name != "media" {
			t.Fatalf("Collect(%q): leftovers %+v", only, rep.Leftovers)
		}
		l := rep.Leftovers[0]
		if len(l.Confined) != 1 || l.Confined[0].InNamespace == nil || *l.Confined[0].InNamespace || rep.Problems() != 2 {
			t.Errorf("Collect(%q): %+v", only, l)
		}
	}
	if _, err := c.Collect("other"); err == nil {
		t.Error("status of a namespace that is not ours: want an error")
	}
	var _ systemd.Manager = m
}
