// Package systemd asks the service manager about units, through
// systemctl(1) rather than D-Bus: systemctl reaches PID 1 over its private
// socket even where no system bus runs (minimal containers, early boot),
// and its "show" output is a stable, documented key=value format.
package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// ErrNotBooted means systemd is not the init system here, so there are no
// unit states to read.
var ErrNotBooted = errors.New("systemd is not running as the init system (no /run/systemd/system)")

// Props are the properties of one unit, as systemctl show prints them.
type Props map[string]string

// Int returns a numeric property (0 when absent or not a number).
func (p Props) Int(k string) int {
	n, _ := strconv.Atoi(p[k])
	return n
}

// Manager reads unit properties.
type Manager interface {
	// Show returns the properties of each unit, in the order given.
	Show(units []string, props ...string) ([]Props, error)
}

// Systemctl is the Manager of the running system.
type Systemctl struct {
	// Binary defaults to "systemctl" found in PATH.
	Binary string
	// BootedPath is checked like sd_booted(3); default /run/systemd/system.
	BootedPath string
}

// Booted reports whether systemd runs as init (sd_booted semantics).
func (s Systemctl) Booted() bool {
	p := s.BootedPath
	if p == "" {
		p = "/run/systemd/system"
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// Show runs `systemctl show -p ... UNIT...`.
func (s Systemctl) Show(units []string, props ...string) ([]Props, error) {
	if len(units) == 0 {
		return nil, nil
	}
	if !s.Booted() {
		return nil, ErrNotBooted
	}
	bin := s.Binary
	if bin == "" {
		bin = "systemctl"
	}
	args := []string{"show", "--no-pager"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	args = append(args, "--")
	args = append(args, units...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("systemctl show: %s", msg)
	}
	res := ParseShow(out)
	if len(res) != len(units) {
		return nil, fmt.Errorf("systemctl show: got %d property blocks for %d units", len(res), len(units))
	}
	return res, nil
}

// ParseShow parses systemctl show output: KEY=VALUE lines, one block per
// unit, blocks separated by an empty line. A key printed several times
// (one line per command of ExecStartPre=) gets its values joined by "\n".
func ParseShow(out []byte) []Props {
	var res []Props
	cur := Props{}
	flush := func() {
		if len(cur) > 0 {
			res = append(res, cur)
			cur = Props{}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if prev, dup := cur[k]; dup {
			// A list property printed once per entry (ExecStartPre=,
			// ExecStartPreEx=): keep every entry, one per line.
			cur[k] = prev + "\n" + v
		} else {
			cur[k] = v
		}
	}
	flush()
	return res
}

// Version is what `systemctl --version` says about the installed systemd.
type Version struct {
	Number   int    // 252
	Full     string // "252 (252.38-1~deb12u1)"
	Features map[string]bool
}

var versionRe = regexp.MustCompile(`^systemd (\d+)(.*)$`)

// ParseVersion parses `systemctl --version`: "systemd 252 (252.38-1~deb12u1)"
// then the compile-time features as +NAME/-NAME words.
func ParseVersion(out string) (Version, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	m := versionRe.FindStringSubmatch(strings.TrimSpace(lines[0]))
	if m == nil {
		return Version{}, fmt.Errorf("unexpected systemctl --version output %q", lines[0])
	}
	v := Version{Features: map[string]bool{}}
	v.Number, _ = strconv.Atoi(m[1])
	v.Full = strings.TrimSpace(m[1] + m[2])
	for _, l := range lines[1:] {
		for _, w := range strings.Fields(l) {
			switch {
			case strings.HasPrefix(w, "+"):
				v.Features[w[1:]] = true
			case strings.HasPrefix(w, "-"):
				v.Features[w[1:]] = false
			}
		}
	}
	return v, nil
}

// InstalledVersion runs `systemctl --version` (works without systemd
// running: it only reports how the binary was built).
func InstalledVersion() (Version, error) {
	out, err := exec.Command("systemctl", "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("systemctl --version: %w", err)
	}
	return ParseVersion(string(out))
}
