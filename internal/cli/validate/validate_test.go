package validate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/config"
	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
)

func unitPath(c *gentest.Case) []string {
	if c.UnitDir != "" {
		return []string{c.UnitDir}
	}
	return []string{}
}

// expectedDiags reads a case's DIAGNOSTICS (the generator's golden output).
func expectedDiags(t *testing.T, c *gentest.Case) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, "expected", "DIAGNOSTICS"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// expectedValid says which namespaces the golden tree compiled: a plan
// exists exactly for valid files.
func expectedValid(t *testing.T, c *gentest.Case, ns string) bool {
	_, err := os.Stat(filepath.Join(c.Dir, "expected", "vpn-confinement", ns+".json"))
	return err == nil
}

func lines(r *Report, c *gentest.Case) []string {
	var out []string
	for _, f := range r.Files {
		for _, d := range append(append(config.Diags{}, f.Errors...), f.Warnings...) {
			out = append(out, c.Normalize(d.String()))
		}
	}
	for _, s := range r.Strays {
		out = append(out, c.Normalize(s.String()))
	}
	for _, o := range r.Orphans {
		out = append(out, c.Normalize(o.String()))
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// TestGeneratorCases: validating a case's directory gives the generator's
// verdicts and exactly its diagnostic lines.
func TestGeneratorCases(t *testing.T) {
	for _, name := range gentest.Cases(t) {
		t.Run(name, func(t *testing.T) {
			c := gentest.Prepare(t, name)
			rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: unitPath(c), StateDir: c.StateDir})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(sorted(expectedDiags(t, c)), lines(rep, c)); d != "" {
				t.Errorf("diagnostics differ from the generator's (-want +got):\n%s", d)
			}
			for _, f := range rep.Files {
				if want := expectedValid(t, c, f.Namespace); f.Valid != want {
					t.Errorf("%s: valid=%v, generator says %v", f.File, f.Valid, want)
				}
				if f.Valid != (len(f.Errors) == 0) {
					t.Errorf("%s: valid=%v with %d errors", f.File, f.Valid, len(f.Errors))
				}
			}
			// The default target (no arguments) is the config dir.
			rep2, err := Run(Options{ConfigDir: c.ConfigDir, UnitPath: unitPath(c), StateDir: c.StateDir})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(lines(rep, c), lines(rep2, c)); d != "" {
				t.Errorf("no-argument run differs (-dir +default):\n%s", d)
			}
		})
	}
}

// TestSingleFiles: a single file is compiled with its siblings (so the
// cross-file conflicts of 14-conflicts still show) but only its own
// results are reported; together the files give the directory's lines.
func TestSingleFiles(t *testing.T) {
	for _, name := range gentest.Cases(t) {
		t.Run(name, func(t *testing.T) {
			c := gentest.Prepare(t, name)
			entries, _ := os.ReadDir(c.ConfigDir)
			var all []string
			for _, e := range entries {
				if _, ok := config.NameFromPath(e.Name()); !ok || e.IsDir() {
					continue
				}
				p := filepath.Join(c.ConfigDir, e.Name())
				rep, err := Run(Options{Targets: []string{p}, UnitPath: unitPath(c), StateDir: c.StateDir})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Files) != 1 || rep.Files[0].File != p {
					t.Fatalf("validate %s reported %d files", p, len(rep.Files))
				}
				if want := expectedValid(t, c, rep.Files[0].Namespace); rep.Files[0].Valid != want {
					t.Errorf("%s: valid=%v, generator says %v", e.Name(), rep.Files[0].Valid, want)
				}
				all = append(all, lines(rep, c)...)
			}
			// Strays and orphans belong to the directory, not to a file.
			var want []string
			for _, l := range expectedDiags(t, c) {
				if !strings.Contains(l, ": not read: ") && !strings.HasPrefix(l, "warning: namespace ") {
					want = append(want, l)
				}
			}
			if d := cmp.Diff(sorted(want), sorted(all)); d != "" {
				t.Errorf("per-file diagnostics differ from the generator's (-want +got):\n%s", d)
			}
		})
	}
}

func TestCrossFileRuleWithSingleFile(t *testing.T) {
	c := gentest.Prepare(t, "14-conflicts")
	rep, err := Run(Options{Targets: []string{filepath.Join(c.ConfigDir, "one.yaml")}, UnitPath: unitPath(c)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files[0].Valid || !strings.Contains(rep.Files[0].Errors[0].Message, "is also listed by") {
		t.Fatalf("one.yaml alone must still see the conflict with two.yaml: %+v", rep.Files[0])
	}
}

func TestTextAndJSON(t *testing.T) {
	c := gentest.Prepare(t, "11-invalid")
	rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: unitPath(c), StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b, false)
	text := c.Normalize(b.String())
	// Errors come before warnings, each in the generator's format.
	iErr := strings.Index(text, "broken.yaml:3:3: dns.mode: highAssurance")
	iWarn := strings.Index(text, "broken.yaml:27:5: warning: sockets[0].unit")
	if iErr < 0 || iWarn < 0 || iErr > iWarn {
		t.Errorf("want errors then warnings in generator format:\n%s", text)
	}
	for _, want := range []string{
		"INVALID: /etc/vpn-confinement.d/broken.yaml (18 errors, 1 warning): namespace broken is not built; blocked until fixed: ",
		"valid:   /etc/vpn-confinement.d/good.yaml: namespace good, 1 service, 0 sockets (0 errors, 0 warnings)",
		"2 files: 1 valid, 1 invalid",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files []struct {
			File      string
			Namespace string
			Valid     *bool
			Errors    []map[string]any
			Warnings  []map[string]any
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Files) != 2 || doc.Files[0].Namespace != "broken" || *doc.Files[0].Valid || !*doc.Files[1].Valid {
		t.Fatalf("unexpected JSON: %s", b.String())
	}
	e := doc.Files[0].Errors[0]
	for _, k := range []string{"file", "line", "column", "key", "message"} {
		if _, ok := e[k]; !ok {
			t.Errorf("diagnostic JSON lacks %q: %v", k, e)
		}
	}
	if doc.Files[1].Errors == nil || doc.Files[1].Warnings == nil {
		t.Errorf("empty lists must be [] not null: %s", b.String())
	}
}

func TestTargetErrors(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"notes.txt", ".hidden.yaml"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	for _, tc := range []struct{ arg, want string }{
		{"notes.txt", "is not a namespace file"},
		{".hidden.yaml", "hidden file"},
		{"missing.yaml", "no such file"},
	} {
		_, err := Run(Options{Targets: []string{filepath.Join(dir, tc.arg)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.arg, err, tc.want)
		}
	}
	// A missing default config dir means nothing is confined: not an error.
	rep, err := Run(Options{ConfigDir: filepath.Join(dir, "none")})
	if err != nil || len(rep.Files) != 0 {
		t.Fatalf("missing config dir: %v %+v", err, rep)
	}
	var b bytes.Buffer
	rep.WriteText(&b, false)
	if !strings.Contains(b.String(), "nothing is confined") {
		t.Errorf("got %q", b.String())
	}
}

// A missing key file is an error naming the path (it used to pass and
// fail at run time with "Protocol error").
func TestMissingKeyFile(t *testing.T) {
	c := gentest.Prepare(t, "01-minimal")
	key := filepath.Join(c.ConfigDir, "keys", "vpnapps.key")
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: unitPath(c), StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors() != 1 || !strings.Contains(rep.Files[0].Errors[0].String(), "wireguard.privateKeyFile: "+key+" does not exist") {
		t.Fatalf("want one error naming %s, got %+v", key, rep.Files)
	}
}

// TestServiceProfiles: validate says per service what its profile removes
// and keeps, and what its preset asks of the admin (issue 10, item 1).
func TestServiceProfiles(t *testing.T) {
	c := gentest.Prepare(t, "16-apps")
	rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: unitPath(c), StateDir: c.StateDir, PasswdFile: c.PasswdFile})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b, false)
	text := c.Normalize(b.String())
	verdict := strings.Index(text, "valid:   /etc/vpn-confinement.d/media.yaml")
	for _, want := range []string{
		"  qbittorrent-nox@qbt.service: baseline; runs as qbt; capabilities: none; families: AF_UNIX AF_INET AF_INET6 AF_NETLINK; writable: /home/qbt (its home)\n" +
			"    removes: the host's network (it runs in /run/netns/media); the host's control planes (systemd, the D-Bus system bus, udev, user managers, container engines); this tool's keys and state; every capability; other address families; writes outside its writable paths (ProtectSystem=full, ProtectHome=read-only); privilege gain (NoNewPrivileges, RestrictSUIDSGID); the shared /tmp\n" +
			"    preset qbittorrent: qBittorrent keeps everything in its user's home",
		"preset qbittorrent: its WebUI (port 8080) checks that the Host: header's port is its own: publish it on the same host port (listen: 127.0.0.1:8080)",
		"  transmission-daemon.service: baseline; runs as debian-transmission; capabilities: none; families: AF_UNIX AF_INET AF_INET6 AF_NETLINK; writable: /etc/transmission-daemon (preset transmission), /var/lib/transmission-daemon (its home)\n",
		"preset transmission: through publish its RPC (port 9091) sees clients as 127.0.0.1, which the default rpc-whitelist admits; over the host link add the host-link address to rpc-whitelist",
		"  deluged.service: strict; runs as debian-deluged; capabilities: none; families: AF_UNIX AF_INET AF_INET6 AF_NETLINK; writable: /var/lib/deluged (preset deluge, its home), /var/log/deluged (preset deluge)\n",
		"writes outside its writable paths (ProtectSystem=strict with /run, ProtectHome=yes); privilege gain (NoNewPrivileges, RestrictSUIDSGID); the shared /tmp; devices, kernel modules, tunables and logs,",
		"  nginx.service: baseline; runs as root; capabilities: CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_KILL CAP_NET_BIND_SERVICE CAP_SETGID CAP_SETUID CAP_SYS_CHROOT; families: AF_UNIX AF_INET AF_INET6 AF_NETLINK; writable: /var/lib/nginx (preset nginx), /var/log/nginx (preset nginx), /run/nginx.pid (its PIDFile=, bound from /run/vpn-confinement/_private/media/run/nginx.service/nginx.pid)\n",
		"every other capability (among them CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_SYS_MODULE); other address families; writes outside its writable paths (ProtectSystem=strict with /run, ProtectHome=read-only)",
		"  lighttpd.service: strict; runs as root; capabilities: CAP_SETGID CAP_SETUID;",
	} {
		if i := strings.Index(text, want); i < 0 || i < verdict {
			t.Errorf("missing after the verdict line: %q\nin:\n%s", want, text)
		}
	}
	// Quiet output has no profile lines.
	b.Reset()
	rep.WriteText(&b, true)
	if strings.Contains(b.String(), "removes:") {
		t.Errorf("quiet output lists profiles:\n%s", b.String())
	}

	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files []struct {
			Services []Service
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]Service{}
	for _, s := range doc.Files[0].Services {
		got[s.Unit] = s
	}
	q := got["qbittorrent-nox@qbt.service"]
	want := Service{Unit: "qbittorrent-nox@qbt.service", Profile: "baseline", RunsAs: "qbt", Capabilities: []string{},
		Families: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, ProtectSystem: "full", ProtectHome: "read-only",
		Writable: []Writable{{Path: "/home/qbt", Why: "its home"}}, Preset: "qbittorrent"}
	q.Removes, q.PresetNotes = nil, nil
	if d := cmp.Diff(want, q); d != "" {
		t.Errorf("qbittorrent in JSON (-want +got):\n%s", d)
	}
	if n := got["nginx.service"]; n.RunsAs != "root" || len(n.Capabilities) != 9 || n.ProtectSystem != "strict" || len(n.Removes) == 0 {
		t.Errorf("nginx in JSON: %+v", n)
	}
	if len(got) != 6 {
		t.Errorf("%d services in JSON, want 6", len(got))
	}
}

// A unit that is not installed yet has no known user; an invalid file
// lists no services.
func TestServiceProfilesUnknown(t *testing.T) {
	c := gentest.Prepare(t, "01-minimal")
	rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: []string{}, StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != 1 || len(rep.Files[0].Services) == 0 || rep.Files[0].Services[0].RunsAs != "" {
		t.Fatalf("want one service with an unknown user: %+v", rep.Files)
	}
	var b bytes.Buffer
	rep.WriteText(&b, false)
	if !strings.Contains(b.String(), "runs as: unknown until the unit is installed") {
		t.Errorf("got:\n%s", b.String())
	}
	c = gentest.Prepare(t, "11-invalid")
	rep, err = Run(Options{Targets: []string{c.ConfigDir}, UnitPath: unitPath(c), StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Files {
		if !f.Valid && len(f.Services) != 0 {
			t.Errorf("invalid %s lists services: %+v", f.File, f.Services)
		}
	}
}

// The exact messages of a missing key file and of a missing provider file
// (configFile), each at its key's line.
func TestMissingKeyMessages(t *testing.T) {
	c := gentest.Prepare(t, "01-minimal")
	key := filepath.Join(c.ConfigDir, "keys", "vpnapps.key")
	os.Remove(key)
	rep, err := Run(Options{Targets: []string{c.ConfigDir}, UnitPath: []string{}, StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range rep.Files[0].Errors {
		got = append(got, c.Normalize(d.String()))
	}
	want := []string{"/etc/vpn-confinement.d/vpnapps.yaml:4:3: wireguard.privateKeyFile: /etc/vpn-confinement.d/keys/vpnapps.key does not exist: the tunnel cannot start (create it: umask 077; wg genkey > /etc/vpn-confinement.d/keys/vpnapps.key, or set wireguard.generatePrivateKeyFile: true)"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("missing key (-want +got):\n%s", d)
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "keys", "provider.conf")
	os.WriteFile(filepath.Join(dir, "media.yaml"), []byte("wireguard:\n  configFile: "+conf+"\nservices:\n  - unit: app.service\n"), 0o644)
	rep, err = Run(Options{Targets: []string{dir}, UnitPath: []string{}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// One error, at the key: not also "needs a private key", "must list
	// at least one peer" and the rest the file would have given.
	got = nil
	for _, d := range rep.Files[0].Errors {
		got = append(got, d.String())
	}
	want = []string{filepath.Join(dir, "media.yaml") + ":2:3: wireguard.configFile: cannot read " + conf + ": open " + conf + ": no such file or directory"}
	if d := cmp.Diff(want, got); d != "" || rep.Files[0].Valid {
		t.Errorf("missing configFile (-want +got):\n%s", d)
	}
}
