package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/test/e2e/ct"
)

// readmeQuickStart returns the code blocks of README.md's quick start:
// the shell blocks in order and the namespace file.
func readmeQuickStart(t *testing.T) (sh []string, yaml string, top string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	blocks := func(s, lang string) []string {
		var out []string
		for {
			i := strings.Index(s, "```"+lang+"\n")
			if i < 0 {
				return out
			}
			s = s[i+len(lang)+4:]
			j := strings.Index(s, "```\n")
			if j < 0 {
				t.Fatalf("README.md: unterminated %s block", lang)
			}
			out = append(out, s[:j])
			s = s[j+4:]
		}
	}
	i := strings.Index(s, "## Quick start on a real host\n")
	if i < 0 {
		t.Fatal("README.md has no quick start section")
	}
	qs := s[i:]
	if j := strings.Index(qs[3:], "\n## "); j >= 0 {
		qs = qs[:j+3]
	}
	sh = blocks(qs, "sh")
	ys := blocks(qs, "yaml")
	if len(ys) != 1 || len(sh) != 3 {
		t.Fatalf("README.md's quick start: %d sh blocks, %d yaml blocks, want 3 and 1", len(sh), len(ys))
	}
	if tops := blocks(s[:i], "yaml"); len(tops) > 0 {
		top = tops[0]
	}
	return sh, ys[0], top
}

// commands splits a shell block into its command lines (no comments).
func commands(block string) []string {
	var out []string
	for _, l := range strings.Split(block, "\n") {
		if i := strings.Index(l, "  #"); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestREADMEQuickStart runs README.md's quick start verbatim with Debian's
// qbittorrent-nox: first the import-wg-quick commands, then the namespace
// file written by hand. After each, the web UI answers on the host's
// 127.0.0.1:8080, the provider's tracker sees the tunnel address, and
// nothing leaves outside the tunnel. (The first block, installing the
// package and the tool, is what the container already has.)
func TestREADMEQuickStart(t *testing.T) {
	sh, yaml, top := readmeQuickStart(t)
	if top != yaml {
		t.Errorf("the example at the top of README.md differs from the quick start's:\n%s\nvs\n%s", top, yaml)
	}
	a := bootApp(t, "app-readme", "media")
	c := a.c
	mustRun(t, c, "useradd", "-m", "-d", "/home/alice", "alice")
	if err := c.WriteFile("/root/Downloads/proton-NL-42.conf", []byte(a.w.WgQuick(a.p)), 0o600); err != nil {
		t.Fatal(err)
	}
	// As the reader runs them: in a shell, as root, ~ being root's home
	// (this container has no sudo: it stands for itself).
	run := func(t *testing.T, line string) ct.Result {
		t.Helper()
		return c.Run("env", "HOME=/root", "/bin/sh", "-c", `sudo() { "$@"; }; `+line)
	}
	const u = "qbittorrent-nox@alice.service"
	_, path := a.writeTorrent(t, "readme")
	announces := func() []ct.Hit {
		var out []ct.Hit
		for _, h := range a.w.TrackerHits() {
			if strings.Contains(h.UA, "qBittorrent/") && strings.HasPrefix(h.Path, "/announce") {
				out = append(out, h)
			}
		}
		return out
	}
	// works checks the web UI and a new announce (after the before-th).
	works := func(t *testing.T, before int) {
		t.Helper()
		a.inNamespace(t, u)
		a.listening(t, "tcp", 8080)
		jar := "/tmp/readme.jar"
		deadline := time.Now().Add(60 * time.Second)
		for {
			body, code, _ := c.Curl("-c", jar, "--data", "username=admin&password=adminadmin", "http://localhost:8080/api/v2/auth/login")
			if code == 200 && body == "Ok." {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the web UI on http://localhost:8080: %d %q\n%s", code, body, c.Journal(u, 30))
			}
			time.Sleep(500 * time.Millisecond)
		}
		if body, code, r := c.Curl("-b", jar, "-F", "torrents=@"+path, "http://localhost:8080/api/v2/torrents/add"); code != 200 {
			t.Fatalf("torrents/add: %d %q %s", code, body, r)
		}
		deadline = time.Now().Add(90 * time.Second)
		for len(announces()) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("no new announce reached the tracker: %+v", a.w.TrackerHits())
			}
			time.Sleep(250 * time.Millisecond)
		}
		for _, h := range announces()[before:] {
			if h.Client != a.p.Address {
				t.Errorf("the tracker saw qBittorrent from %s, want the tunnel address %s", h.Client, a.p.Address)
			}
		}
	}
	// status needs the first handshake; verify the process: both as a
	// reader would retry them.
	retry := func(t *testing.T, line string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r := run(t, line)
			if r.Code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", line, r)
			}
			time.Sleep(time.Second)
		}
	}

	cp, err := c.StartCapture("readme")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("import-wg-quick", func(t *testing.T) {
		before := len(announces())
		for _, line := range commands(sh[1]) {
			if strings.Contains(line, "vpn-confinement status") || strings.Contains(line, "vpn-confinement verify") {
				retry(t, line)
				continue
			}
			if r := run(t, line); r.Code != 0 {
				t.Fatalf("%s: %s", line, r)
			}
		}
		works(t, before)
	})

	t.Run("namespace-file-by-hand", func(t *testing.T) {
		// Undo the import (its file and key), as an admin would.
		mustRun(t, c, "systemctl", "stop", u, "vpn-ns@media.service")
		before := len(announces())
		mustRun(t, c, "rm", "/etc/vpn-confinement.d/media.yaml", "/etc/vpn-confinement.d/keys/media.key")
		for _, line := range commands(sh[2]) {
			if r := run(t, line); r.Code != 0 {
				t.Fatalf("%s: %s", line, r)
			}
		}
		if err := c.WriteFile("/etc/vpn-confinement.d/media.yaml", []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, line := range commands(sh[1])[1:] { // the same commands, without the import
			if strings.Contains(line, "vpn-confinement status") || strings.Contains(line, "vpn-confinement verify") {
				retry(t, line)
				continue
			}
			if r := run(t, line); r.Code != 0 {
				t.Fatalf("%s: %s", line, r)
			}
		}
		works(t, before)
	})
	noLeaks(t, cp)
}
