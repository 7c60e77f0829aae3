package systemd

import (
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseShow(t *testing.T) {
	out := "Id=vpn-ns@media.service\nActiveState=active\nSubState=exited\nMainPID=0\n\n" +
		"Id=qbittorrent.service\nActiveState=active\nSubState=running\nMainPID=4242\nDropInPaths=/run/systemd/generator/qbittorrent.service.d/50-vpn-confinement.conf /etc/systemd/system/qbittorrent.service.d/60-local.conf\n"
	got := ParseShow([]byte(out))
	want := []Props{
		{"Id": "vpn-ns@media.service", "ActiveState": "active", "SubState": "exited", "MainPID": "0"},
		{"Id": "qbittorrent.service", "ActiveState": "active", "SubState": "running", "MainPID": "4242",
			"DropInPaths": "/run/systemd/generator/qbittorrent.service.d/50-vpn-confinement.conf /etc/systemd/system/qbittorrent.service.d/60-local.conf"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	if got[1].Int("MainPID") != 4242 || got[0].Int("Nope") != 0 {
		t.Error("Int")
	}
	// One line per command (systemd 252).
	two := ParseShow([]byte("ExecStartPreEx={ path=/a ; argv[]=/a ; flags=privileged }\nExecStartPreEx={ path=/b ; argv[]=/b ; flags= }\n"))
	if len(two) != 1 || two[0]["ExecStartPreEx"] != "{ path=/a ; argv[]=/a ; flags=privileged }\n{ path=/b ; argv[]=/b ; flags= }" {
		t.Errorf("repeated key: %q", two)
	}
}

func TestParseVersion(t *testing.T) {
	// The systemd of Debian 12 (this project's test machine).
	out := `systemd 252 (252.38-1~deb12u1)
+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified
`
	v, err := ParseVersion(out)
	if err != nil {
		t.Fatal(err)
	}
	if v.Number != 252 || v.Full != "252 (252.38-1~deb12u1)" {
		t.Errorf("got %+v", v)
	}
	if bpf, known := v.Features["BPF_FRAMEWORK"]; !known || bpf {
		t.Errorf("BPF_FRAMEWORK = %v, known %v", bpf, known)
	}
	if !v.Features["SECCOMP"] {
		t.Error("SECCOMP")
	}
	if _, err := ParseVersion("hello"); err == nil {
		t.Error("garbage accepted")
	}
}

// TestInstalledVersion runs the real systemctl when there is one.
func TestInstalledVersion(t *testing.T) {
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Skip("no systemctl")
	}
	v, err := InstalledVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Number < 200 {
		t.Errorf("implausible version %+v", v)
	}
}

func TestNotBooted(t *testing.T) {
	s := Systemctl{BootedPath: t.TempDir() + "/none"}
	if _, err := s.Show([]string{"x.service"}, "Id"); err != ErrNotBooted {
		t.Errorf("err = %v", err)
	}
}
