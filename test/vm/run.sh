#!/bin/bash
# Kernel WireGuard end-to-end test in a QEMU/TCG guest (this host has no
# WireGuard module and its KVM is unusable for a stock kernel). Installs the
# build the `make install` way into a copy of the cached guest root, boots it,
# lets vpnc-vm-test.service run guest-test.sh, and reads the results back
# from the disk image after power-off.
# usage: run.sh BUILD_DIR TOOLS_DIR       (needs root)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$1 TOOLS=$2
CACHE=${VPNC_VM_CACHE:-/var/cache/vpn-confinement-test}
WORK=$(mktemp -d /tmp/vpnc-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
BASE=$("$HERE/build-image.sh" "$CACHE")
R=$WORK/root
cp -a "$BASE" "$R"
make -s -C "$REPO" install-files B="$BUILD" DESTDIR="$R" PREFIX=/usr/local
install -m 0755 "$TOOLS/vpnc-probe" "$TOOLS/vpnc-testpeer" "$R/usr/local/bin/"
install -m 0755 "$HERE/guest-test.sh" "$R/usr/local/bin/vpnc-guest-test"
cat > "$R/etc/systemd/system/vpnc-vm-test.service" <<EOT
[Unit]
Description=vpn-confinement kernel WireGuard guest test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/usr/local/bin/vpnc-guest-test > /var/tmp/vpnc-results 2>&1; sync; systemctl poweroff --no-block'
StandardOutput=journal
[Install]
WantedBy=multi-user.target
EOT
ln -sf /etc/systemd/system/vpnc-vm-test.service "$R/etc/systemd/system/multi-user.target.wants/vpnc-vm-test.service"
cp "$R"/boot/vmlinuz-* "$WORK/vmlinuz"
cp "$R"/boot/initrd.img-* "$WORK/initrd.img"
mkfs.ext4 -q -F -L root -d "$R" "$WORK/root.img" 2G
rm -rf "$R"
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 -nographic -no-reboot \
	-kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=0" \
	-drive "file=$WORK/root.img,if=virtio,format=raw" -nic none > "$WORK/console.log" 2>&1 || true
if ! debugfs -R 'cat /var/tmp/vpnc-results' "$WORK/root.img" 2>/dev/null > "$WORK/results"; then :; fi
cat "$WORK/results"
if ! grep -q '^RESULT ' "$WORK/results"; then
	echo "no results from the guest; console tail:"; tail -40 "$WORK/console.log"; exit 1
fi
grep -q '^RESULT PASS' "$WORK/results"
