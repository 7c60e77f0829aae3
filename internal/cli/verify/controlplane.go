package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/vpn-confinement/vpn-confinement/internal/cli/check"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/procfs"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
)

// checkControlPlanes turns "the host's control planes are hidden as a
// class" into a measurement: every AF_UNIX path socket that listens
// anywhere on the host (every network namespace's /proc/net/unix), looked
// up through the unit's root. Reachable is: the unit sees that very socket
// file, and its credentials may connect to it (search on the directories,
// write on the socket; a service without CAP_DAC_OVERRIDE cannot pass a
// root-only directory). A root-owned one the unit can reach that is
// not in the allow list (the journal, sd_notify, userdb, the host
// resolver where the plan allows it, the system bus with allowSystemBus,
// the unit's own sockets) fails: it may be a way to start, change or
// reload units. Sockets of other users are listed (what they allow is the
// owner's policy).
func checkControlPlanes(l *check.List, p paths.Paths, f Facts, svc *plan.Unit, root string) {
	if f.SocketsErr != nil {
		l.Add("control-planes", check.Fail, "cannot list the host's AF_UNIX sockets: %v", f.SocketsErr)
		return
	}
	if rf, err := os.Open(root); err != nil {
		l.Add("control-planes", check.Fail, "cannot look into the service's root: %v", err)
		return
	} else {
		rf.Close()
	}
	cred, cerr := procfs.ReadCred(p.Proc, f.PIDs[0])
	if cerr != nil {
		l.Add("control-planes", check.Fail, "cannot read the credentials of PID %d: %v", f.PIDs[0], cerr)
		return
	}
	var seen []seenSocket
	var unknown, closed []string
	done := map[string]bool{}
	for _, s := range f.Sockets {
		if done[s.Path] || f.Own[s.Inode] {
			continue
		}
		reach, uid, err := reachable(p, root, s)
		if err == nil && reach {
			// Visible; the unit's credentials decide whether it may connect
			// (search on every directory, write on the socket).
			var ok bool
			if ok, err = procfs.MayConnect(root, s.Path, cred); err == nil && !ok {
				done[s.Path] = true
				closed = append(closed, s.Path)
				continue
			}
		}
		if err != nil {
			unknown = append(unknown, fmt.Sprintf("%s (%v)", s.Path, err))
			continue
		}
		if reach {
			done[s.Path] = true
			seen = append(seen, seenSocket{Path: s.Path, Holders: holderText(s), UID: uid})
		}
	}
	bad, others, allowed := judgeSockets(allowedSockets(f.Plan, svc), seen)
	switch {
	case len(bad) > 0:
		l.Add("control-planes", check.Fail, "root-owned sockets reachable from the service: %s; hide what it must not reach with InaccessiblePaths= in a drop-in after %s",
			strings.Join(bad, ", "), "50-vpn-confinement.conf")
	case len(unknown) > 0:
		l.Add("control-planes", check.Fail, "cannot check %s", strings.Join(unknown, ", "))
	default:
		s := fmt.Sprintf("%d listening AF_UNIX path sockets on the host; reachable: %s", len(f.Sockets), listOrNone(allowed))
		if len(others) > 0 {
			s += "; of other users: " + strings.Join(others, ", ")
		}
		if len(closed) > 0 {
			s += "; visible but not connectable with its credentials (file modes): " + listOrNone(closed)
		}
		l.Add("control-planes", check.Pass, "%s", s)
	}
}

// seenSocket is a socket the unit can reach.
type seenSocket struct {
	Path, Holders string
	UID           uint32
}

// judgeSockets sorts reachable sockets into the root-owned ones outside
// the allow list (bad), other users' (others) and allowed ones.
func judgeSockets(allow func(string) bool, seen []seenSocket) (bad, others, allowed []string) {
	for _, s := range seen {
		switch {
		case allow(s.Path):
			allowed = append(allowed, s.Path)
		case s.UID == 0:
			bad = append(bad, s.Path+s.Holders)
		default:
			others = append(others, fmt.Sprintf("%s%s, uid %d", s.Path, s.Holders, s.UID))
		}
	}
	return bad, others, allowed
}

// reachable reports whether socket s is the object the unit sees at its
// path, and its owner. Where a holder's view of the path is readable, the
// unit must see the same file; otherwise any socket at the path counts.
func reachable(p paths.Paths, root string, s procfs.UnixSocket) (bool, uint32, error) {
	id, mode, uid, err := statInRoot(root, s.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EACCES):
		return false, 0, nil
	case err != nil:
		return false, 0, err
	case mode&os.ModeSocket == 0:
		return false, 0, nil // an InaccessiblePaths= node or a tmpfs stand-in
	}
	for _, h := range s.Holders {
		hid, _, _, err := statInRoot(p.ProcRoot(h.PID, ""), s.Path)
		if err == nil {
			return hid == id, uid, nil
		}
	}
	return true, uid, nil
}

func statInRoot(root, path string) (procfs.ID, os.FileMode, uint32, error) {
	return procfs.OwnerInRoot(root, path)
}

// allowedSockets is the allow list of what a confined unit may reach.
func allowedSockets(n *plan.Namespace, svc *plan.Unit) func(string) bool {
	prefixes := []string{"/run/systemd/journal/", "/run/systemd/userdb/"}
	exact := map[string]bool{"/run/systemd/notify": true}
	if n.DNS.Mode == plan.DNSCompat {
		prefixes = append(prefixes, "/run/systemd/resolve/")
	}
	if n.DNS.Mode == plan.DNSCompat || n.DNS.AllowHostResolverIPC {
		exact["/run/nscd/socket"], exact["/run/avahi-daemon/socket"] = true, true
	}
	if svc != nil && svc.AllowSystemBus || n.DNS.Mode == plan.DNSStrict && n.DNS.AllowHostResolverIPC {
		exact["/run/dbus/system_bus_socket"] = true
	}
	return func(path string) bool {
		if exact[path] {
			return true
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(path, pre) {
				return true
			}
		}
		return false
	}
}

func holderText(s procfs.UnixSocket) string {
	var hs []string
	for _, h := range s.Holders {
		if len(hs) == 2 {
			hs = append(hs, "...")
			break
		}
		hs = append(hs, fmt.Sprintf("%s PID %d", h.Name, h.PID))
	}
	if len(hs) == 0 {
		return ""
	}
	return " (" + strings.Join(hs, ", ") + ")"
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}
