package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vpn-confinement/vpn-confinement/internal/cli/paths"
	"github.com/vpn-confinement/vpn-confinement/internal/gentest"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
)

type result struct {
	code           int
	stdout, stderr string
}

func testEnv(t *testing.T) *Env {
	dir := t.TempDir()
	p := paths.Default()
	p.ConfigDir = filepath.Join(dir, "conf")
	p.GeneratorDir = filepath.Join(dir, "gen")
	p.StateDir = filepath.Join(dir, "state")
	p.UnitPath = []string{}
	return &Env{Stdin: strings.NewReader(""), Paths: p, StdinIsTerminal: func() bool { return false }}
}

func run(t *testing.T, e *Env, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e.Stdout, e.Stderr = &out, &errb
	code := Main(e, args)
	return result{code, out.String(), errb.String()}
}

func TestHelp(t *testing.T) {
	e := testEnv(t)
	r := run(t, e, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Commands:\n  validate") || !strings.Contains(r.stdout, "import-wg-quick  turn a provider's") {
		t.Errorf("--help: %+v", r)
	}
	if r := run(t, e); r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("no args: %+v", r)
	}
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			r := run(t, e, args...)
			if r.code != 0 || r.stdout != c.help || !strings.HasPrefix(r.stdout, "Usage: vpn-confinement "+c.name) {
				t.Errorf("%v: code %d\n%s%s", args, r.code, r.stdout, r.stderr)
			}
		}
	}
	if r := run(t, e, "statsu"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "statsu"`) {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "stat"); !strings.Contains(r.stderr, "did you mean status?") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "validate", "--nope"); r.code != 2 || !strings.Contains(r.stderr, "flag provided but not defined: -nope\nRun 'vpn-confinement validate --help'") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "--version"); r.code != 0 || r.stdout != "vpn-confinement dev\n" {
		t.Errorf("%+v", r)
	}
}

// TestOptionsDocumented: every option of every command appears in its help
// text and in vpn-confinement(8), and the man page documents every command.
func TestOptionsDocumented(t *testing.T) {
	man, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "man", "vpn-confinement.8.md"))
	if err != nil {
		t.Fatal(err)
	}
	e := testEnv(t)
	for _, c := range commands() {
		run(t, e, c.name, "--help")
		fs := flagSets[c.name]
		if fs == nil {
			t.Fatalf("%s: no flag set recorded", c.name)
		}
		if !strings.Contains(string(man), "## "+c.name) {
			t.Errorf("man page has no section for %s", c.name)
		}
		fs.VisitAll(func(f *flag.Flag) {
			opt := "--" + f.Name
			if len(f.Name) == 1 {
				opt = "-" + f.Name
			}
			if !strings.Contains(c.help, opt) {
				t.Errorf("%s: option %s missing from the help text", c.name, opt)
			}
			if !strings.Contains(string(man), "**"+opt+"**") {
				t.Errorf("%s: option %s missing from man/vpn-confinement.8.md", c.name, opt)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		commandAfter int
		pos, cmd     []string
		json         bool
	}{
		{[]string{"a.yaml", "--json", "b.yaml"}, 0, []string{"a.yaml", "b.yaml"}, nil, true},
		{[]string{"--json", "--", "--weird.yaml"}, 0, []string{"--weird.yaml"}, nil, true},
		{[]string{"media", "--json", "--", "id", "-u"}, 1, []string{"media"}, []string{"id", "-u"}, true},
		{[]string{"media", "id", "--json"}, 1, []string{"media"}, []string{"id", "--json"}, false},
		{[]string{"--json", "media", "sh", "-c", "x -- y"}, 1, []string{"media"}, []string{"sh", "-c", "x -- y"}, true},
	} {
		fs := newFlags("t")
		j := fs.Bool("json", false, "")
		pos, cmd, err := parseArgs(fs, tc.args, tc.commandAfter)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.pos, pos); d != "" {
			t.Errorf("%v pos: %s", tc.args, d)
		}
		if d := cmp.Diff(tc.cmd, cmd); d != "" {
			t.Errorf("%v cmd: %s", tc.args, d)
		}
		if *j != tc.json {
			t.Errorf("%v: json=%v", tc.args, *j)
		}
	}
	fs := newFlags("t")
	if _, _, err := parseArgs(fs, []string{"-x"}, 0); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v", err)
	}
}

func caseEnv(t *testing.T, name string) (*Env, *gentest.Case) {
	c := gentest.Prepare(t, name)
	e := testEnv(t)
	e.Paths.ConfigDir, e.Paths.StateDir = c.ConfigDir, c.StateDir
	if c.UnitDir != "" {
		e.Paths.UnitPath = []string{c.UnitDir}
	}
	return e, c
}

func TestValidateExitCodes(t *testing.T) {
	e, c := caseEnv(t, "11-invalid")
	r := run(t, e, "validate")
	if r.code != 1 || !strings.Contains(c.Normalize(r.stdout), "/etc/vpn-confinement.d/broken.yaml:3:3: dns.mode: highAssurance requires") {
		t.Errorf("%+v", r)
	}
	r = run(t, e, "validate", filepath.Join(c.ConfigDir, "good.yaml"), "--json")
	var doc struct{ Files []struct{ Valid bool } }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &doc) != nil || len(doc.Files) != 1 || !doc.Files[0].Valid {
		t.Errorf("%+v", r)
	}
	e, _ = caseEnv(t, "03-allowlist")
	if r := run(t, e, "validate"); r.code != 0 {
		t.Errorf("warnings alone: %+v", r)
	}
	if r := run(t, e, "validate", "--strict", "-q"); r.code != 1 || strings.Contains(r.stdout, "valid:") {
		t.Errorf("--strict -q: %+v", r)
	}
	if r := run(t, e, "validate", "/nonexistent/x.yaml"); r.code != 2 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("%+v", r)
	}
}

func TestImportExitCodes(t *testing.T) {
	e := testEnv(t)
	src := filepath.Join(testutil.RepoRoot(), "internal", "wgquick", "testdata")
	r := run(t, e, "import-wg-quick", "--service", "qbittorrent.service", filepath.Join(src, "proton.conf"), "--name", "media")
	if r.code != 0 || !strings.Contains(r.stdout, "wrote "+filepath.Join(e.Paths.ConfigDir, "media.yaml")) || !strings.Contains(r.stdout, "validation: valid") {
		t.Errorf("%+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "2VrZ3uf6Dmw9EFlyKRUYFKAsW0QfqizSVF5ivcPNe1k=") {
		t.Error("the private key was printed")
	}
	if r := run(t, e, "validate"); r.code != 0 {
		t.Errorf("the imported file must validate: %+v", r)
	}
	if r := run(t, e, "import-wg-quick", filepath.Join(src, "proton.conf"), "--name", "media"); r.code != 2 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "import-wg-quick", filepath.Join(src, "broken.conf")); r.code != 1 || !strings.Contains(r.stderr, "broken.conf:4: PrivateKey is not a valid WireGuard key") || strings.Contains(r.stderr, "nmi13x2kBlgb0ZrglCSHudi3iovfNq") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "import-wg-quick"); r.code != 2 {
		t.Errorf("%+v", r)
	}
}

func TestRun(t *testing.T) {
	e := testEnv(t)
	planDir := e.Paths.PlanDir()
	os.MkdirAll(planDir, 0o755)
	b, _ := os.ReadFile(testutil.Testdata("generator", "01-minimal", "expected", "vpn-confinement", "vpnapps.json"))
	os.WriteFile(filepath.Join(planDir, "vpnapps.json"), b, 0o644)
	r := run(t, e, "run", "--dry-run", "vpnapps", "--", "id", "-u")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "systemd-run --wait") || !strings.HasSuffix(r.stdout, " -- id -u\n") || !strings.Contains(r.stdout, "--pipe -p DynamicUser=yes") {
		t.Errorf("%+v", r)
	}
	var got []string
	e.Exec = func(bin string, argv, env []string) error { got = argv; return nil }
	e.StdinIsTerminal = func() bool { return true }
	r = run(t, e, "run", "vpnapps", "--root", "id", "-u")
	if r.code != 0 || len(got) == 0 || got[len(got)-2] != "id" || !strings.Contains(strings.Join(got, " "), "--pty") || strings.Contains(strings.Join(got, " "), "DynamicUser") {
		t.Errorf("%+v %v", r, got)
	}
	if r := run(t, e, "run", "vpnapps"); r.code != 2 || !strings.Contains(r.stderr, "no COMMAND") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "run", "nope", "--", "id"); r.code != 2 || !strings.Contains(r.stderr, `namespace "nope" has no compiled plan`) {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "run", "--pty", "--pipe", "vpnapps", "id"); r.code != 2 {
		t.Errorf("%+v", r)
	}
}

func TestStatusAndVerifyWithoutPlans(t *testing.T) {
	e := testEnv(t)
	if r := run(t, e, "status"); r.code != 0 || !strings.Contains(r.stdout, "no compiled namespaces") {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "status", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"namespaces": []`) {
		t.Errorf("%+v", r)
	}
	if r := run(t, e, "status", "media"); r.code != 2 || !strings.Contains(r.stderr, "unknown namespace") {
		t.Errorf("%+v", r)
	}
	r := run(t, e, "verify", "qbittorrent")
	if os.Geteuid() != 0 {
		if r.code != 2 || !strings.Contains(r.stderr, "needs root") {
			t.Errorf("%+v", r)
		}
		return
	}
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  plan  qbittorrent.service is not listed by any compiled namespace plan") {
		t.Errorf("%+v", r)
	}
}

func TestDoctorJSON(t *testing.T) {
	e := testEnv(t)
	r := run(t, e, "doctor", "--no-probe", "--json")
	var doc struct {
		OK     bool
		Checks []struct{ Name, Result, Detail string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Checks) < 10 {
		t.Fatalf("%v %+v", err, r)
	}
	if (r.code == 0) != doc.OK {
		t.Errorf("exit %d with ok=%v", r.code, doc.OK)
	}
}
