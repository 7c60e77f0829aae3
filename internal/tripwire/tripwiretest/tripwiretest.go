//go:build linux

// Package tripwiretest holds the root-test fixtures of the tripwire:
// throwaway cgroup2 directories, throwaway pinned network namespaces, and
// child processes started directly inside a cgroup (clone3
// CLONE_INTO_CGROUP, so no packet is ever sent from the wrong cgroup) that
// send or receive UDP in a given namespace. The children are the test
// binary itself: call MaybeChild first thing in TestMain.
package tripwiretest

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/netns"
	"github.com/vpn-confinement/vpn-confinement/internal/plan"
	"github.com/vpn-confinement/vpn-confinement/internal/testnet"
	"github.com/vpn-confinement/vpn-confinement/internal/testutil"
	"github.com/vpn-confinement/vpn-confinement/internal/tripwire"
)

const childEnv = "VPNC_TRIPWIRE_CHILD"

// Mount is the cgroup2 mount of this machine; the test is skipped when
// there is none.
func Mount(t testing.TB) tripwire.Mount {
	t.Helper()
	testutil.RequireSandbox(t)
	m, err := tripwire.FindMount("/proc/self")
	if errors.Is(err, tripwire.ErrNoCgroup2) {
		t.Skip("skipping: no cgroup2 hierarchy")
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// NewCgroup creates a throwaway cgroup named prefix-<random> below parent
// ("/" for the root of m) and removes it at the end of the test (after the
// children started in it have been killed: cleanups run in reverse).
func NewCgroup(t testing.TB, m tripwire.Mount, parent, prefix string) tripwire.Cgroup {
	t.Helper()
	p := filepath.Join(parent, prefix+"-"+testnet.Suffix())
	dir, err := m.DirOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A child just reaped may take a moment to leave the cgroup.
		for i := 0; ; i++ {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if i == 100 {
				t.Errorf("remove cgroup %s: %v", dir, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	cg, err := m.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	return cg
}

// NS is a throwaway network namespace pinned at Path (so that nft and ip
// can be run in it by path or name), with lo up.
type NS struct {
	*netns.NetNS
	Name, Path string
}

// NewNS creates the namespace; it is removed at the end of the test.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	testutil.RequireSandbox(t)
	name := prefix + "-" + testnet.Suffix()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	path := plan.NetnsPath(name)
	if err := ns.Pin(path); err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Unpin(path)
		ns.Close()
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v\n%s", name, err, out)
	}
	return &NS{NetNS: ns, Name: name, Path: path}
}

// Nft runs nft in the namespace. Through nsenter, not `ip netns exec`:
// that one mounts a fresh /sys, which hides a hybrid host's
// /sys/fs/cgroup/unified, where nft resolves cgroupsv2 paths.
func (n *NS) Nft(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + n.Path, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), n.Name, err, out)
	}
	return string(out)
}

// Command returns a command that runs in cgroup cg (nil: the test's own
// cgroup) from its first instruction.
func Command(t testing.TB, cg *tripwire.Cgroup, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	if cg != nil {
		f, err := os.Open(cg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	}
	return cmd
}

func childCommand(t testing.TB, cg *tripwire.Cgroup, args ...string) *exec.Cmd {
	cmd := Command(t, cg, os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// Result counts what a sending child saw.
type Result struct{ OK, EPERM, Other int }

// Send runs a child in cg that sends n UDP datagrams to addr from a socket
// opened in the namespace at nsPath, and reports how many sends succeeded
// and how many the kernel refused with EPERM (a netfilter drop on output).
func Send(t testing.TB, cg *tripwire.Cgroup, nsPath, addr string, n int) Result {
	t.Helper()
	cmd := childCommand(t, cg, "send", nsPath, addr, strconv.Itoa(n))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("send child: %v\n%s", err, out)
	}
	var r Result
	if _, err := fmt.Sscanf(string(out), "ok=%d eperm=%d other=%d", &r.OK, &r.EPERM, &r.Other); err != nil {
		t.Fatalf("send child output %q: %v", out, err)
	}
	return r
}

// Listener is a child receiving UDP in a cgroup.
type Listener struct {
	Addr  string // host:port it listens on
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// Listen starts a child in cg that receives UDP on addr (port 0: any) in
// the namespace at nsPath. Count stops it and returns what it received.
func Listen(t testing.TB, cg *tripwire.Cgroup, nsPath, addr string) *Listener {
	t.Helper()
	cmd := childCommand(t, cg, "listen", nsPath, addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill only this child, by its PID, should the test end early.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	l := &Listener{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := l.out.ReadString('\n')
	if err != nil {
		t.Fatalf("listen child: %v", err)
	}
	l.Addr = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	return l
}

// Count stops the listener and returns the number of datagrams received.
func (l *Listener) Count(t testing.TB) int {
	t.Helper()
	time.Sleep(50 * time.Millisecond) // loopback delivery is immediate; margin for the scheduler
	l.stdin.Close()
	line, err := l.out.ReadString('\n')
	if err != nil {
		t.Fatalf("listen child: %v", err)
	}
	l.cmd.Wait()
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "got=")))
	if err != nil {
		t.Fatalf("listen child output %q", line)
	}
	return n
}

// MaybeChild runs the child mode of the test binary when it was started as
// one, and exits.
func MaybeChild() {
	if os.Getenv(childEnv) == "" || len(os.Args) < 2 {
		return
	}
	err := child(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func child(mode string, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("child %s: want NSPATH ADDR", mode)
	}
	ns, err := netns.Open(args[0])
	if err != nil {
		return err
	}
	defer ns.Close()
	switch mode {
	case "send":
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		var conn net.Conn
		// The socket belongs to the namespace it is created in.
		if err := ns.Do(func() (err error) { conn, err = net.Dial("udp", args[1]); return }); err != nil {
			return err
		}
		var r Result
		for range n {
			_, err := conn.Write([]byte("tripwire test"))
			switch {
			case err == nil:
				r.OK++
			case errors.Is(err, syscall.EPERM):
				r.EPERM++
			default:
				r.Other++
			}
		}
		fmt.Printf("ok=%d eperm=%d other=%d\n", r.OK, r.EPERM, r.Other)
		return nil
	case "listen":
		var pc net.PacketConn
		if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", args[1]); return }); err != nil {
			return err
		}
		fmt.Printf("ready %s\n", pc.LocalAddr())
		got := make(chan int)
		go func() {
			n := 0
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					got <- n
					return
				}
				n++
			}
		}()
		io.Copy(io.Discard, os.Stdin) // until the test closes stdin
		pc.Close()
		fmt.Printf("got=%d\n", <-got)
		return nil
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// Set attributes newer than golang.org/x/sys/unix knows (linux/netfilter/nf_tables.h).
const (
	nftaSetHandle      = 16
	nftaSetExpr        = 17
	nftaSetExpressions = 18
)

// setAttrNames names the NFTA_SET_* attributes SetAttrs reports.
var setAttrNames = map[uint16]string{
	unix.NFTA_SET_TABLE: "table", unix.NFTA_SET_NAME: "name", unix.NFTA_SET_FLAGS: "flags",
	unix.NFTA_SET_KEY_TYPE: "key_type", unix.NFTA_SET_KEY_LEN: "key_len", unix.NFTA_SET_DATA_TYPE: "data_type",
	unix.NFTA_SET_DATA_LEN: "data_len", unix.NFTA_SET_POLICY: "policy", unix.NFTA_SET_DESC: "desc",
	unix.NFTA_SET_USERDATA: "userdata", unix.NFTA_SET_OBJ_TYPE: "obj_type", nftaSetExpr: "expr",
	nftaSetExpressions: "expressions", unix.NFTA_SET_TIMEOUT: "timeout", unix.NFTA_SET_GC_INTERVAL: "gc_interval",
}

// SetAttrs dumps the sets of the tripwire table in n as raw netlink
// attributes (hex), per set: everything the kernel stores about a set
// except its handle. nft --debug=netlink prints none of it, and
// google/nftables does not decode userdata, so this is the way to compare
// a map loaded by Go with one loaded by nft -f.
func SetAttrs(t testing.TB, n *NS) map[string]map[string]string {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: n.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_TABLE, Data: []byte(tripwire.Table + "\x00")}})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSET),
			Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		t.Fatalf("dump sets: %v", err)
	}
	out := map[string]map[string]string{}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]string{}
		for ad.Next() {
			name, ok := setAttrNames[ad.Type()&^unix.NLA_F_NESTED]
			if !ok {
				if ad.Type() == nftaSetHandle {
					continue
				}
				name = fmt.Sprintf("attr%d", ad.Type())
			}
			set[name] = hex.EncodeToString(ad.Bytes())
		}
		out[set["name"]] = set
	}
	return out
}
