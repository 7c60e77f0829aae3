#!/bin/bash
# Boot systemd as PID 1 of a throwaway container (new pid, mount, uts, ipc,
# net and cgroup namespaces; cgroup2-only view; overlay of the host's own root
# with a tmpfs upper layer, so nothing is written to the host). The
# container's network namespace plays "the host" of the tests.
#
# usage: ct-start.sh NAME        prints the host PID of the container's systemd
# stop with ct-stop.sh NAME. State lives in /tmp/vpnc-ct-NAME*.
set -euo pipefail
NAME=$1
ST=/tmp/vpnc-ct-$NAME
mkdir -p "$ST"
mount -t tmpfs -o mode=755 tmpfs "$ST"
mkdir -p "$ST/upper" "$ST/work" "$ST/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$ST/upper,workdir=$ST/work" "$ST/root"
R=$ST/root
# Boot a minimal target instead of the host's default (which would start the
# host's own services).
printf '[Unit]\nDescription=vpn-confinement test target\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n' > "$R/etc/systemd/system/vpnc-ct.target"
ln -sf /etc/systemd/system/vpnc-ct.target "$R/etc/systemd/system/default.target"
for u in systemd-udevd.service systemd-udev-trigger.service systemd-timesyncd.service console-getty.service \
	getty@tty1.service systemd-networkd.service systemd-resolved.service cron.service; do
	ln -sf /dev/null "$R/etc/systemd/system/$u"
done
echo "vpnc-$NAME" > "$R/etc/hostname"
CGROOT=/sys/fs/cgroup
[ -d /sys/fs/cgroup/unified ] && CGROOT=/sys/fs/cgroup/unified
CG=$CGROOT/vpnc-ct-$NAME
mkdir -p "$CG"
cat > "$ST.init" <<EOS
set -e
mount --make-rprivate /
mount --bind $R $R
mount -t proc proc $R/proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs $R/sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 $R/sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid tmpfs $R/dev
for n in null zero full random urandom tty; do touch $R/dev/\$n; mount --bind /dev/\$n $R/dev/\$n; done
mkdir -p $R/dev/net $R/dev/pts $R/dev/shm
touch $R/dev/net/tun; mount --bind /dev/net/tun $R/dev/net/tun
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $R/dev/pts; ln -s pts/ptmx $R/dev/ptmx
touch $R/dev/console $ST.console; mount --bind $ST.console $R/dev/console
ln -sf /dev/null $R/dev/kmsg
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs $R/run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/tmp
cd $R; mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot
exec /usr/bin/env -i container=vpnc-ct TERM=dumb /lib/systemd/systemd --show-status=no
EOS
( echo $BASHPID > "$CG/cgroup.procs"
  exec unshare --fork --pid --mount --uts --ipc --net --cgroup /bin/bash "$ST.init" ) > "$ST.log" 2>&1 &
UPID=$!
SPID=
for _ in $(seq 200); do SPID=$(pgrep -P $UPID -x systemd || true); [ -n "$SPID" ] && break; sleep 0.05; done
[ -n "$SPID" ] || { cat "$ST.log" >&2; exit 1; }
echo "$UPID $SPID $CG" > "$ST.pids"
for _ in $(seq 400); do
	s=$(nsenter -t "$SPID" -a systemctl is-system-running 2>/dev/null || true)
	case $s in running|degraded) break;; esac
	sleep 0.05
done
echo "$SPID"
