#!/bin/bash
# The README's first command on a fresh machine, as a test: `make demo` in a
# throwaway copy of a minimal Debian 12 root that has none of the project's
# dependencies, only what a fresh machine of this project's kind has anyway
# (Debian's minimal base, make, git, and Go in /usr/local/go).
#
#  * The base root is debootstrapped once and cached next to the VM image
#    ($VPNC_VM_CACHE, default /var/cache/vpn-confinement-test), keyed by its
#    package list and sources; it is never written to afterwards.
#  * Each run gets an overlay of it with a tmpfs upper layer, in private
#    mount, PID and cgroup namespaces, and pivot_root()s into it: the host's
#    file system is not visible inside, and when the run ends the kernel
#    removes every mount and kills every process it left.
#  * The network namespace is the host's, because apt-get inside must reach
#    the Debian mirror. Nothing in the run changes it: `make demo` itself
#    runs in test/sandbox.sh (a new network namespace) and boots its
#    container in yet another. This script records the host's links,
#    addresses, routes, rules, named netns and nftables ruleset before and
#    after, and fails if they differ.
#  * Go and the Go module cache come from the host, read-only, with
#    GOPROXY=off: the build needs no network and cannot change the cache.
#
# Inside (test/fresh-inside.sh): as an unprivileged user, `make build` must
# stop and name exactly what is missing; as root, `make demo` must install it
# (packaging/deps.sh), build, and pass every check of the demo; afterwards
# deps.sh must find everything present without touching apt or dpkg; then
# `deps.sh test` (the install step of the README's second command) must
# install the test tier's packages, daemons included, without starting any,
# and leave no policy-rc.d behind.
#
# usage: test/fresh.sh     (root; tests the repository's committed HEAD)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

if [ "${1:-}" = --inner ]; then inner=1; else inner=0; fi
[ "$(id -u)" = 0 ] || { echo "fresh.sh: needs root" >&2; exit 1; }
CACHE=${VPNC_VM_CACHE:-/var/cache/vpn-confinement-test}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
INCLUDE=make,git
SOURCES="Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$INCLUDE" "$SOURCES" base-v1 | sha256sum | cut -c1-12)
BASE=$CACHE/fresh-$KEY
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# ---------------------------------------------------------------------------
# Inside the private namespaces (PID 1 of the new PID namespace).
if [ $inner = 1 ]; then
	WORK=$2 GOROOT_HOST=$3 MODCACHE=$4
	mount -t tmpfs -o mode=755 tmpfs "$WORK"
	mkdir "$WORK/upper" "$WORK/work" "$WORK/root"
	mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/work" "$WORK/root"
	R=$WORK/root
	# What the machine itself provides: name resolution, Go.
	cat /etc/resolv.conf > "$R/etc/resolv.conf"
	cat /etc/hosts > "$R/etc/hosts"
	mkdir -p "$R/usr/local/go" "$R/root/go/pkg/mod"
	mount --bind "$GOROOT_HOST" "$R/usr/local/go"
	mount -o remount,bind,ro "$R/usr/local/go"
	mount --bind "$MODCACHE" "$R/root/go/pkg/mod"
	mount -o remount,bind,ro "$R/root/go/pkg/mod"
	# The kernel's file systems, as on a machine (cgroup2 rooted at this
	# run's own cgroup, through the cgroup namespace).
	mount -t proc proc "$R/proc"
	mount -t sysfs sysfs "$R/sys"
	mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
	mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
	for n in null zero full random urandom tty; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
	mkdir -p "$R/dev/net" "$R/dev/pts" "$R/dev/shm"
	touch "$R/dev/net/tun"; mount --bind /dev/net/tun "$R/dev/net/tun"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"; ln -s pts/ptmx "$R/dev/ptmx"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
	ln -s /proc/self/fd "$R/dev/fd"
	for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$R/dev/${i#*:}"; done
	mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
	# A checkout of the committed HEAD.
	git init -q "$R/root/vpn-confinement"
	git -C "$R/root/vpn-confinement" -c safe.directory="$REPO" fetch -q "$REPO" HEAD
	git -C "$R/root/vpn-confinement" checkout -q -b fresh FETCH_HEAD
	cp "$HERE/fresh-inside.sh" "$R/root/fresh-inside.sh"
	cd "$R"
	mkdir .oldroot
	pivot_root . .oldroot
	umount -l /.oldroot
	rmdir /.oldroot
	cd /
	exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root TERM=dumb LANG=C.UTF-8 GOPROXY=off /bin/bash /root/fresh-inside.sh
fi

# ---------------------------------------------------------------------------
# On the host.
export PATH=$PATH:/usr/local/go/bin
T0=$(now)
mkdir -p "$CACHE"
exec 9>"$CACHE/.fresh.lock"
flock 9 # one run at a time; the base is rebuilt only under this lock

if [ ! -f "$BASE/.complete" ]; then
	t=$(now)
	echo "fresh: debootstrap --variant=minbase --include=$INCLUDE $SUITE (cached afterwards in $BASE)"
	rm -rf "$CACHE"/fresh-*/
	debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$BASE" "$MIRROR" >"$CACHE/fresh-debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/fresh-debootstrap.log"; exit 1; }
	rm -f "$BASE/etc/apt/sources.list"
	printf '%s\n' "$SOURCES" > "$BASE/etc/apt/sources.list.d/debian.sources"
	# A machine as installed: no package lists yet, no downloaded archives.
	find "$BASE/var/lib/apt/lists" "$BASE/var/cache/apt" -type f -delete
	rm -f "$BASE/etc/resolv.conf" "$BASE/etc/hostname"
	touch "$BASE/.complete"
	echo "fresh: base root built in $(since "$t")"
fi

# The base must not have what the demo needs, or the check proves nothing.
# (make is there because it runs the command; util-linux is in every Debian.)
have=$({ chroot "$BASE" dpkg-query -W -f='${db:Status-Status} ${Package}\n' $("$REPO/packaging/deps.sh" --list demo) 2>/dev/null || true; } |
	awk '$1 == "installed" {print $2}' | tr '\n' ' ')
extra=$(for p in $have; do case $p in make|util-linux) ;; *) echo "$p" ;; esac; done)
if [ -n "$extra" ]; then echo "fresh: the base root already has $extra: not a clean root" >&2; exit 1; fi
echo "fresh: base root $BASE: of the demo's packages it has only: $have"
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] ||
	echo "fresh: note: the working tree has uncommitted changes; this tests the committed HEAD $(git -C "$REPO" rev-parse --short HEAD)"

netstate() {
	ip -br link; ip -br addr; ip route show table all; ip -6 route show table all
	ip rule; ip -6 rule; ls -A /run/netns 2>/dev/null || true; nft list ruleset 2>/dev/null || true
}
CGROOT=/sys/fs/cgroup
[ -d /sys/fs/cgroup/unified ] && CGROOT=/sys/fs/cgroup/unified
CG=$CGROOT/vpnc-fresh-$$
WORK=$(mktemp -d /tmp/vpnc-fresh.XXXXXX)
NET0=$(netstate)
cleanup() {
	# The PID namespace is gone when unshare returns; its last processes may
	# still be exiting for a moment.
	for _ in $(seq 100); do
		find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[ -d "$CG" ] || break
		sleep 0.1
	done
	rmdir "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
mkdir "$CG"
GOROOT_HOST=$(go env GOROOT)
MODCACHE=$(go env GOMODCACHE)
rc=0
(
	echo $BASHPID > "$CG/cgroup.procs"
	exec unshare --mount --pid --fork --cgroup --mount-proc --propagation private "$0" --inner "$WORK" "$GOROOT_HOST" "$MODCACHE"
) || rc=$?
cleanup
trap - EXIT

# Nothing left on the host, nothing changed in its network.
left=0
if [ -d "$CG" ]; then echo "fresh: FAIL: cgroup $CG still exists: $(cat "$CG"/cgroup.procs 2>/dev/null | tr '\n' ' ')"; left=1; fi
if [ -e "$WORK" ]; then echo "fresh: FAIL: $WORK left behind"; left=1; fi
if findmnt -rn -o TARGET | grep -qF "$WORK"; then echo "fresh: FAIL: mounts left under $WORK"; left=1; fi
if [ "$(netstate)" != "$NET0" ]; then
	echo "fresh: FAIL: the host's network changed:"; diff <(echo "$NET0") <(netstate) || true; left=1
fi
[ $left = 0 ] && echo "fresh: host unchanged: network (links, addresses, routes, rules, netns, nftables), no mount, cgroup or file left"
if [ $rc = 0 ] && [ $left = 0 ]; then
	echo "fresh: PASS in $(since "$T0")"
	exit 0
fi
echo "fresh: FAIL (inside: exit $rc)"
exit 1
