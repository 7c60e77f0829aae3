package e2e

import (
	"testing"
	"time"
)

func TestExploreCLI2(t *testing.T) {
	c, w := boot(t, "cli2x", "clix")
	p := w.Peers["clix"]
	unit(t, c, "app.service", sleeper)
	unit(t, c, "rootapp.service", "[Service]\nExecStart=/bin/sleep infinity\n")
	if err := w.InstallNamespace(p, w.NamespaceYAML(p, "wgcli", "services:\n  - unit: app.service\n  - unit: rootapp.service\n    allowRoot: true\n")); err != nil {
		t.Fatal(err)
	}
	reload(t, c)
	mustRun(t, c, "systemctl", "start", "app.service", "rootapp.service")
	if !c.WaitActive("app.service", "active", 15*time.Second) {
		t.Fatal("app.service not active")
	}
	for _, cmd := range []string{
		"systemctl show -p CapabilityBoundingSet,AmbientCapabilities,InaccessiblePaths,TemporaryFileSystem,BindReadOnlyPaths,BindPaths,NetworkNamespacePath,PrivateNetwork,ProtectSystem,NoNewPrivileges,DropInPaths,ExecStartPre,ExecStartPreEx,ExecStopPost,RestrictAddressFamilies,ReadOnlyPaths,ReadWritePaths,User,DynamicUser,ControlGroup,FragmentPath app.service rootapp.service",
		"cat /proc/net/unix",
		"pid=$(systemctl show -P MainPID rootapp.service); ls -la /proc/$pid/root/run/ /proc/$pid/root/run/systemd/ /proc/$pid/root/run/dbus; cat /proc/$pid/status | grep -i cap; cat /proc/$pid/net/unix",
		"systemd-run --wait --pipe --quiet --collect -p 'ExecStartPre=+/bin/sh -c \"echo pre $(id -u) > /run/pre.out\"' -p 'ExecStopPost=+/bin/sh -c \"echo post >> /run/pre.out\"' -p DynamicUser=yes /bin/id; cat /run/pre.out",
		"systemd-run --wait --pipe --quiet --collect -p 'ExecStartPre=+/usr/local/libexec/vpn-confinement/vpn-confinement-tripwire add clix' -p DynamicUser=yes /bin/id; echo rc=$?",
		"ls /usr/local/libexec/vpn-confinement/ /usr/local/lib/vpn-confinement 2>&1; nft list ruleset | head -50; ls -la /run/vpn-confinement/_private/",
		"ls -la /proc/1/fd | grep socket | head; ss -xlp 2>/dev/null | head -40",
		"cat /sys/fs/cgroup/cgroup.controllers; ls /sys/fs/cgroup/system.slice/app.service/ | head -40",
	} {
		r := c.Sh(cmd)
		t.Logf("$ %s\n%s\n%s (exit %d)", cmd, r.Stdout, r.Stderr, r.Code)
	}
}
