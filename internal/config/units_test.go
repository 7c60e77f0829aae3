package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpn-confinement/vpn-confinement/internal/unitfile"
)

// TestUnitFileRefusals: what a listed unit's own files may not do, each
// an error naming file:line (the file's units are then blocked), and the
// harmless neighbours of each that must stay valid.
func TestUnitFileRefusals(t *testing.T) {
	const frag = "[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n"
	for _, tc := range []struct {
		name  string
		files map[string]string // path below the unit path's dirs (etc/, run/, ctl/) → content
		want  string            // "" = valid
	}{
		{"plain", nil, ""},
		{"+ in the fragment", map[string]string{"etc/app.service": frag + "ExecStartPre=+/bin/true\n"}, "system/app.service:4: ExecStartPre=+/bin/true runs with full privileges (every capability, hidden paths visible) inside the namespace, from where it could leave it; drop the + prefix"},
		{"+ after - and @", map[string]string{"etc/app.service": frag + "ExecStart=-@+/bin/true x\n"}, "app.service:4: ExecStart=-@+/bin/true x runs with full privileges"},
		{"! keeps the sandbox", map[string]string{"etc/app.service": frag + "ExecStartPre=!/bin/true\n"}, ""},
		{"PermissionsStartOnly", map[string]string{"etc/app.service": frag + "PermissionsStartOnly=yes\n"}, "app.service:4: PermissionsStartOnly=yes runs the unit's other commands with full privileges"},
		{"+ in a late drop-in", map[string]string{"etc/app.service.d/99-x.conf": "[Service]\nExecStartPost=+/bin/true\n"}, "99-x.conf:2: ExecStartPost=+/bin/true"},
		{"late CapabilityBoundingSet", map[string]string{"etc/app.service.d/60-x.conf": "[Service]\nCapabilityBoundingSet=CAP_NET_ADMIN\n"}, "60-x.conf:2: CapabilityBoundingSet=CAP_NET_ADMIN in a drop-in applied after 50-vpn-confinement.conf gives the service back CAP_NET_ADMIN"},
		{"early CapabilityBoundingSet is overridden by ours", map[string]string{"etc/app.service.d/10-x.conf": "[Service]\nCapabilityBoundingSet=CAP_NET_ADMIN\n"}, ""},
		{"late InaccessiblePaths reset", map[string]string{"etc/app.service.d/60-x.conf": "[Service]\nInaccessiblePaths=\n"}, "60-x.conf:2: InaccessiblePaths= in a drop-in applied after"},
		{"late NetworkNamespacePath reset", map[string]string{"etc/app.service.d/zz.conf": "[Service]\nNetworkNamespacePath=\n"}, "zz.conf:2: NetworkNamespacePath= in a drop-in applied after 50-vpn-confinement.conf resets the namespace"},
		{"early NetworkNamespacePath reset is overridden by ours", map[string]string{"etc/app.service.d/10-x.conf": "[Service]\nNetworkNamespacePath=\n"}, ""},
		{"set-property drop-in in /run/systemd/system.control", map[string]string{"ctl/app.service.d/60-x.conf": "[Service]\nCapabilityBoundingSet=CAP_SYS_ADMIN\n"}, "/run/systemd/system.control/app.service.d/60-x.conf:2: CapabilityBoundingSet=CAP_SYS_ADMIN"},
		{"type-wide drop-in", map[string]string{"etc/service.d/60-x.conf": "[Service]\nAmbientCapabilities=CAP_NET_ADMIN\n"}, "service.d/60-x.conf:2: AmbientCapabilities=CAP_NET_ADMIN"},
		{"BindPaths of the private socket", map[string]string{"etc/app.service.d/60-x.conf": "[Service]\nBindPaths=/run/systemd/private\n"}, "60-x.conf:2: BindPaths=/run/systemd/private re-exposes /run/systemd"},
		{"read-only bind of the private socket", map[string]string{"etc/app.service.d/60-x.conf": "[Service]\nBindReadOnlyPaths=/run/systemd/private\n"}, "60-x.conf:2: BindReadOnlyPaths=/run/systemd/private re-exposes /run/systemd"},
		{"read-only bind of the bus, in an early drop-in", map[string]string{"etc/app.service.d/10-x.conf": "[Service]\nBindReadOnlyPaths=-/run/dbus/system_bus_socket:/tmp/bus\n"}, "10-x.conf:2: BindReadOnlyPaths=-/run/dbus/system_bus_socket:/tmp/bus re-exposes /run/dbus"},
		{"bind of the whole /run, in the fragment", map[string]string{"etc/app.service": frag + "BindReadOnlyPaths=/run:/mnt/run\n"}, "app.service:4: BindReadOnlyPaths=/run:/mnt/run re-exposes /run/systemd"},
		{"bind of the docker socket", map[string]string{"etc/app.service": frag + "BindReadOnlyPaths=/run/docker.sock\n"}, "re-exposes /run/docker.sock"},
		{"bind of the journal socket (kept anyway)", map[string]string{"etc/app.service": frag + "BindReadOnlyPaths=/run/systemd/journal/socket\n"}, ""},
		{"bind of the key", map[string]string{"etc/app.service": frag + "BindReadOnlyPaths=/etc/keys/k:/tmp/k\n"}, "re-exposes /etc/keys/k"},
		{"bind of an own dir", map[string]string{"etc/app.service": frag + "BindPaths=/var/lib/app /srv/media:/media\n"}, ""},
		{"our name in /etc shadows ours", map[string]string{"etc/app.service.d/50-vpn-confinement.conf": "[Service]\n"}, "/etc/systemd/system/app.service.d/50-vpn-confinement.conf: a drop-in named 50-vpn-confinement.conf outranks the one vpn-confinement generates"},
		{"our name in /usr/lib is shadowed by ours", map[string]string{"lib/app.service.d/50-vpn-confinement.conf": "[Service]\n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dirs := map[string]string{"ctl": "run/systemd/system.control", "etc": "etc/systemd/system", "lib": "usr/lib/systemd/system"}
			files := map[string]string{"etc/app.service": frag}
			for k, v := range tc.files {
				files[k] = v
			}
			for k, v := range files {
				top, rest, _ := strings.Cut(k, "/")
				p := filepath.Join(root, dirs[top], rest)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The real search path, below root; the shadow check looks
			// at the real directory names, so they are mapped back.
			var path []string
			for _, d := range unitfile.SystemPath {
				path = append(path, filepath.Join(root, d))
			}
			u := rooted{unitfile.Search{Path: path}, root}
			r := CompileFile("/etc/vpn-confinement.d/ns.yaml", []byte(base), Env{Units: u})
			CompileAll([]*Result{r})
			got := dump(r.Diags.Errors())
			switch {
			case tc.want == "" && got != "":
				t.Errorf("want valid, got:\n%s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("want an error containing %q, got:\n%s", tc.want, got)
			case tc.want != "" && r.Plan != nil:
				t.Errorf("an error, but a plan was compiled")
			}
		})
	}
}

// rooted is a unit lookup below a test root that reports paths as the
// host would see them.
type rooted struct {
	s    unitfile.Search
	root string
}

func (r rooted) Lookup(name string) (*unitfile.Unit, bool) {
	u, ok := r.s.Lookup(name)
	if !ok {
		return u, ok
	}
	strip := func(p string) string {
		if p == "" {
			return p
		}
		return strings.TrimPrefix(p, r.root)
	}
	u.Fragment = strip(u.Fragment)
	for i := range u.DropIns {
		u.DropIns[i] = strip(u.DropIns[i])
	}
	for i := range u.Settings {
		u.Settings[i].File = strip(u.Settings[i].File)
	}
	return u, ok
}
