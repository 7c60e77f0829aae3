// Command vpn-confinement-tripwire maintains the host-side tripwire, a
// table in the host network namespace that drops and counts every packet
// of a socket that belongs to a confined unit's cgroup:
//
//	vpn-confinement-tripwire [flags] add NAME      ExecStartPre=+ of a confined unit: register its own cgroup
//	vpn-confinement-tripwire [flags] remove NAME   ExecStopPost=+: unregister it, prune cgroups that are gone
//	vpn-confinement-tripwire [flags] ensure        create the table if it is missing
//	vpn-confinement-tripwire [flags] status        JSON: support, drop counters per namespace, cgroups
//
// The hooks run in the unit's cgroup, which is what they register, and
// maybe inside the confinement namespace, so the host network namespace is
// always opened by path (-host-netns) and cgroup directories are reached
// through PID 1's mount namespace (-proc). On a host without support add and ensure
// warn, write the reason to -marker and exit 0. All logic lives in
// internal/tripwire.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"

	"github.com/vpn-confinement/vpn-confinement/internal/journal"
	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/skel"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
)

var (
	hostNetns = flag.String("host-netns", "/proc/1/ns/net", "the host network namespace (PID 1's, never the caller's own)")
	lockPath  = flag.String("lock", "", "lock file serialising changes to the table (default: "+tripwire.LockPath+" in PID 1's view)")
	marker    = flag.String("marker", "", "file that records why the host cannot have the tripwire (default: "+tripwire.MarkerPath+" in PID 1's view)")
	proc      = flag.String("proc", "/proc/1", "the process whose mount namespace holds the cgroup2 mount and this tool's runtime dir (PID 1's: the host's view)")
)

// hostView is path as the host sees it: the hooks run with the unit's
// mounts, where this tool's runtime dir is a read-only tmpfs.
func hostView(flagValue, path string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(*proc, "root", path)
}

// hook opens the host namespace; it stays open until the process exits.
func hook(log *journal.Logger) (*tripwire.Hook, error) {
	ns, err := netns.Open(*hostNetns)
	if err != nil {
		return nil, err
	}
	return &tripwire.Hook{
		Host:   &tripwire.Host{NS: ns, Lock: hostView(*lockPath, tripwire.LockPath), Proc: *proc},
		Marker: hostView(*marker, tripwire.MarkerPath),
		Log:    log,
	}, nil
}

func withHook(f func(k *tripwire.Hook, args []string) error) func(context.Context, []string, *journal.Logger) error {
	return func(_ context.Context, args []string, log *journal.Logger) error {
		k, err := hook(log)
		if err != nil {
			return err
		}
		return f(k, args)
	}
}

func main() {
	skel.MainCommands("vpn-confinement-tripwire", map[string]skel.Command{
		"add": {Args: []string{"NAME"}, Run: withHook(func(k *tripwire.Hook, a []string) error {
			return k.Add(a[0])
		})},
		"remove": {Args: []string{"NAME"}, Run: withHook(func(k *tripwire.Hook, a []string) error {
			return k.Remove(a[0])
		})},
		"ensure": {Run: withHook(func(k *tripwire.Hook, _ []string) error {
			return k.Ensure()
		})},
		"status": {Run: withHook(func(k *tripwire.Hook, _ []string) error {
			st, err := k.Status()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		})},
	})
}
