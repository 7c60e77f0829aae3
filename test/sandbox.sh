#!/bin/bash
# Run a command as root inside a throwaway sandbox: new network, mount and PID
# namespaces, with a private tmpfs on /run (so /run/netns pins, /run/wireguard
# UAPI sockets and /run/vpn-confinement files never reach the host).
# The sandbox's own network namespace plays "the host"; nothing here can add an
# address, route or rule to the machine's real network. When the command exits,
# the kernel kills every process left in the PID namespace, so a failed test
# cannot leak a wireguard-go or DNS responder process.
#
# usage: test/sandbox.sh CMD [ARGS...]
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "sandbox.sh: needs root" >&2; exit 1; fi
if [ "${VPNC_SANDBOX:-}" != 1 ]; then
	exec unshare --net --mount --pid --fork --mount-proc env VPNC_SANDBOX=1 "$0" "$@"
fi
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/netns /run/wireguard /run/vpn-confinement /run/lock
ip link set lo up
"$@"
