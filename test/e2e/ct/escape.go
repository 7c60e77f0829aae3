package ct

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Attacks run inside a real unit file (not a transient copy of its
// properties): a oneshot service whose ExecStart= is a shell script the
// test rewrites before each start. Its output goes to a file PID 1 opens
// (StandardOutput=append:, emptied by the test before each start: systemd
// opens it again for every command, the tripwire hooks' too), so the confined script needs no writable
// path of its own.

// AttackerUnit is the unit file of an attacker; dynamicUser picks
// DynamicUser=yes, otherwise it runs as root (and must be listed with
// allowRoot: true).
func AttackerUnit(name string, dynamicUser bool) string {
	user := ""
	if dynamicUser {
		user = "DynamicUser=yes\n"
	}
	return fmt.Sprintf(`[Unit]
Description=vpn-confinement escape test: attacks run from here
[Service]
Type=oneshot
%sExecStart=/bin/sh /etc/vpnc-esc/%s.sh
StandardOutput=append:/run/vpnc-test/%s.out
StandardError=inherit
TimeoutStartSec=300
`, user, name, name)
}

// Attack is one command's outcome inside the attacker.
type Attack struct {
	Cmd    string
	Output string // stdout and stderr, interleaved
	Code   int
}

func (a Attack) String() string { return fmt.Sprintf("$ %s → exit %d\n%s", a.Cmd, a.Code, a.Output) }

// Attack runs each shell command inside attacker unit (its .service
// name without the suffix) in one start of it, each bounded by a 20 s
// timeout, and returns their outcomes in order. The start itself must
// succeed (the script always exits 0): an error means the attacker could
// not run at all, which proves nothing.
func (c *Container) Attack(unit string, cmds ...string) ([]Attack, error) {
	var sb strings.Builder
	for i, cmd := range cmds {
		fmt.Fprintf(&sb, "echo '@@@begin %d'\ntimeout -k 1 20 /bin/sh -c '%s' </dev/null 2>&1\necho \"\n@@@end %d $?\"\n", i, strings.ReplaceAll(cmd, "'", `'\''`), i)
	}
	sb.WriteString("exit 0\n")
	if err := c.WriteFile("/etc/vpnc-esc/"+unit+".sh", []byte(sb.String()), 0o644); err != nil {
		return nil, err
	}
	if err := c.WriteFile("/run/vpnc-test/"+unit+".out", nil, 0o644); err != nil {
		return nil, err
	}
	if r := c.RunTimeout(300*time.Second, "systemctl", "start", unit+".service"); r.Code != 0 {
		return nil, fmt.Errorf("start %s: %s\n%s", unit, r, c.Run("systemctl", "status", "--no-pager", unit+".service").Stdout)
	}
	b, err := c.ReadFile("/run/vpnc-test/" + unit + ".out")
	if err != nil {
		return nil, err
	}
	out := make([]Attack, len(cmds))
	for i := range cmds {
		out[i] = Attack{Cmd: cmds[i], Code: -1}
	}
	cur := -1
	var buf strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "@@@begin":
			cur, _ = strconv.Atoi(f[1])
			buf.Reset()
		case len(f) == 3 && f[0] == "@@@end" && cur >= 0 && cur < len(out):
			out[cur].Output = strings.TrimSuffix(buf.String(), "\n") // the marker's own newline
			out[cur].Code, _ = strconv.Atoi(f[2])
			cur = -1
		default:
			buf.WriteString(line)
		}
	}
	for _, a := range out {
		if a.Code == -1 {
			return out, fmt.Errorf("%s: no result for %q (output:\n%s)", unit, a.Cmd, b)
		}
	}
	return out, nil
}

// Units lists every unit PID 1 knows (loaded or not) and every unit file
// on its search path: what an escape that made systemd start or load
// something new would change.
func (c *Container) Units() map[string]bool {
	out := map[string]bool{}
	for _, args := range [][]string{
		{"systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager"},
		{"systemctl", "list-unit-files", "--plain", "--no-legend", "--no-pager"},
	} {
		for _, line := range strings.Split(c.Run(args...).Stdout, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				out[f[0]] = true
			}
		}
	}
	return out
}

// NewUnits lists the names in after that are not in before, except
// those with an allowed prefix (the test's own transient helpers).
func NewUnits(before, after map[string]bool, allowed ...string) []string {
	var out []string
next:
	for u := range after {
		if before[u] {
			continue
		}
		for _, p := range allowed {
			if strings.HasPrefix(u, p) {
				continue next
			}
		}
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// ReloadStamp changes at every daemon-reload (systemd 252's time of the
// last unit load; the generators' timestamp is the boot's only).
func (c *Container) ReloadStamp() string {
	return strings.TrimSpace(c.Run("systemctl", "show", "-P", "UnitsLoadTimestampMonotonic").Stdout)
}
