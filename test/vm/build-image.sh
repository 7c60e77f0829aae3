#!/bin/bash
# Build (or reuse) the Debian 12 guest root for the kernel-WireGuard VM test:
# debootstrap + Debian's kernel with a small initrd. Cached in $CACHE (keyed
# by this script's hash) because it is the slow part (~1 min); everything the
# test installs later goes on top of a copy.
# usage: build-image.sh CACHE   → prints the cached rootfs dir
set -euo pipefail
CACHE=$1
KEY=$(sha256sum "$0" | cut -c1-12)
ROOT=$CACHE/rootfs-$KEY
if [ -f "$ROOT/.complete" ]; then echo "$ROOT"; exit 0; fi
rm -rf "$CACHE"/rootfs-*
mkdir -p "$CACHE"
debootstrap --variant=minbase \
	--include=systemd,systemd-sysv,dbus,udev,kmod,iproute2,nftables,wireguard-tools,iputils-ping,procps,tcpdump,e2fsprogs \
	bookworm "$ROOT" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1
mkdir -p "$ROOT/etc/initramfs-tools/conf.d" "$ROOT/usr/share/initramfs-tools/modules.d"
echo MODULES=list > "$ROOT/etc/initramfs-tools/conf.d/vpnc.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' > "$ROOT/usr/share/initramfs-tools/modules.d/vpnc.conf"
mount --bind /proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
chroot "$ROOT" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-image-amd64 initramfs-tools' >"$CACHE/kernel.log" 2>&1
umount "$ROOT/proc"
trap - EXIT
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$ROOT/etc/fstab"
ln -sf /dev/null "$ROOT/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/getty@tty1.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/systemd-timesyncd.service"
echo vpnc-vm > "$ROOT/etc/hostname"
touch "$ROOT/.complete"
echo "$ROOT"
