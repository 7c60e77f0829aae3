#!/bin/bash
# The one list of what building, the demo and the tests need, and the one
# place that installs it. The Makefile calls it before `build`, `demo`,
# `bench` and `test`; .ci/run calls it for `test`.
#
# usage: packaging/deps.sh [--check] PURPOSE...     PURPOSE: build demo bench test
#        packaging/deps.sh --list PURPOSE...        print the Debian packages, one a line
#
# For each PURPOSE it checks the Debian packages (dpkg-query; on a system
# without dpkg, the commands they provide) and the Go toolchain (the `go`
# line of go.mod). Missing packages are installed when it runs as root with
# apt-get (unless --check), non-interactively, without recommends, with
# apt-get update only when the package lists lack them, and with a
# policy-rc.d that forbids starting any daemon (nginx, transmission,
# deluged... are installed, never started on this machine). Otherwise it
# names exactly what is missing and exits 1. When everything is present it
# prints nothing and takes a few milliseconds.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

# Debian package → a command it provides (checked where dpkg is absent).
declare -A CMD=(
	[make]=make [go-md2man]=go-md2man
	[systemd]=systemctl [dbus]=dbus-daemon [nftables]=nft [wireguard-go]=wireguard-go
	[wireguard-tools]=wg [iproute2]=ip [tcpdump]=tcpdump [util-linux]=nsenter
	[procps]=pgrep [iputils-ping]=ping [iperf3]=iperf3 [git]=git
	[debootstrap]=debootstrap [qemu-system-x86]=qemu-system-x86_64 [e2fsprogs]=debugfs
	[lintian]=lintian [dpkg-dev]=dpkg-architecture
	[qbittorrent-nox]=qbittorrent-nox [transmission-daemon]=transmission-daemon
	[deluged]=deluged [deluge-web]=deluge-web [deluge-console]=deluge-console
	[nginx]=nginx [lighttpd]=lighttpd [aria2]=aria2c [natpmpc]=natpmpc [miniupnpd-nftables]=miniupnpd [curl]=curl
	[python3]=python3
	[prometheus-node-exporter]=prometheus-node-exporter
)

# What each purpose needs (each includes the one before it).
packages() {
	case $1 in
	build) echo make go-md2man ;;
	demo) # the systemd container of `make demo` and its test VPN world
		echo "$(packages build)" systemd dbus nftables wireguard-go wireguard-tools iproute2 \
			tcpdump util-linux procps iputils-ping ;;
	bench) echo "$(packages demo)" iperf3 ;;
	test) # + the VM tier, the .deb test, the clean-root check, real daemons
		echo "$(packages bench)" git debootstrap qemu-system-x86 e2fsprogs lintian dpkg-dev \
			qbittorrent-nox transmission-daemon deluged deluge-web deluge-console \
			nginx lighttpd aria2 natpmpc miniupnpd-nftables curl python3 prometheus-node-exporter ;;
	*) echo "deps.sh: unknown purpose '$1' (build, demo, bench, test)" >&2; return 2 ;;
	esac
}

CHECK=0 LIST=0 PURPOSES=()
for a in "$@"; do
	case $a in
	--check) CHECK=1 ;;
	--list) LIST=1 ;;
	-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) PURPOSES+=("$a") ;;
	esac
done
[ ${#PURPOSES[@]} -gt 0 ] || { echo "usage: $0 [--check|--list] PURPOSE... (build demo bench test)" >&2; exit 2; }
WANT=()
for p in "${PURPOSES[@]}"; do
	l=$(packages "$p") || exit 2
	for pkg in $l; do [[ " ${WANT[*]} " == *" $pkg "* ]] || WANT+=("$pkg"); done
done
if [ $LIST = 1 ]; then printf '%s\n' "${WANT[@]}"; exit 0; fi

# --- Go: the version go.mod asks for -------------------------------------
# A fresh machine of this project's kind has Go in /usr/local/go/bin without
# it being in PATH; the Makefile adds it, and so does this script.
[ -x /usr/local/go/bin/go ] && case :$PATH: in *:/usr/local/go/bin:*) ;; *) PATH=$PATH:/usr/local/go/bin ;; esac
goversion() { (cd / && GOTOOLCHAIN=local "$1" version 2>/dev/null) | awk '{print $3}' | sed 's/^go//'; }
check_go() {
	local need found bin v
	need=$(awk '$1 == "go" {print $2; exit}' "$REPO/go.mod")
	bin=$(command -v "${GO:-go}" || true)
	if [ -n "$bin" ]; then
		v=$(goversion "$bin")
		if [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$need" "$v" | sort -V | head -1)" = "$need" ]; then return 0; fi
		found="${GO:-go} is $bin, version ${v:-unknown}: too old"
	else
		found="no '${GO:-go}' in PATH or /usr/local/go/bin"
	fi
	{
		echo "deps.sh: Go >= $need is needed (the 'go' line of go.mod); $found."
		if [ "$bin" != /usr/local/go/bin/go ] && [ -x /usr/local/go/bin/go ]; then
			v=$(goversion /usr/local/go/bin/go)
			echo "  /usr/local/go/bin/go is go$v: run make GO=/usr/local/go/bin/go, or put /usr/local/go/bin first in PATH."
		fi
		echo "  Debian 12's golang-go (apt) is Go 1.19: too old, and no Debian 12 package has Go >= $need."
		echo "  Install an official release into /usr/local/go (https://go.dev/doc/install):"
		echo "    rm -rf /usr/local/go && tar -C /usr/local -xzf go$need.N.linux-$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/').tar.gz"
		echo "  make then finds /usr/local/go/bin/go by itself (or: make GO=/path/to/go)."
	} >&2
	return 1
}

# --- Debian packages ------------------------------------------------------
MISSING=()
if command -v dpkg-query >/dev/null; then
	have=$(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${WANT[@]}" 2>/dev/null | awk '$1 == "installed" {print $2}' || true)
	for pkg in "${WANT[@]}"; do grep -qx "$pkg" <<<"$have" || MISSING+=("$pkg"); done
else
	for pkg in "${WANT[@]}"; do command -v "${CMD[$pkg]:-$pkg}" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "${CMD[$pkg]:-$pkg}" >/dev/null || MISSING+=("$pkg"); done
fi

install_missing() {
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends install)
	# No daemon may start during the install: invoke-rc.d and
	# deb-systemd-invoke ask /usr/sbin/policy-rc.d, and 101 means "no".
	local prc=/usr/sbin/policy-rc.d saved=/usr/sbin/policy-rc.d.vpnc-saved
	local marker='# vpn-confinement deps.sh: no daemon starts while packages are installed'
	# A killed run's leftovers: put things back as they were first.
	if [ -e "$saved" ]; then mv -f "$saved" "$prc"
	elif grep -qxF "$marker" "$prc" 2>/dev/null; then rm -f "$prc"
	fi
	local mine=0 r=0
	[ -e "$prc" ] && { "$prc" deps.sh start >/dev/null 2>&1 || r=$?; }
	if [ ! -e "$prc" ]; then mine=1
	elif [ $r != 101 ]; then mine=2; mv "$prc" "$saved" # one that allows starts: set aside
	fi
	if [ $mine != 0 ]; then
		printf '#!/bin/sh\n%s\nexit 101\n' "$marker" > "$prc"
		chmod 0755 "$prc"
	fi
	# shellcheck disable=SC2064
	trap "case $mine in 1) rm -f $prc;; 2) mv -f $saved $prc;; esac" EXIT
	# apt-get update only when the lists do not know a package we need.
	local unknown=0
	for pkg in "${MISSING[@]}"; do
		apt-cache show --no-all-versions "$pkg" >/dev/null 2>&1 || { unknown=1; break; }
	done
	if [ $unknown = 1 ]; then
		echo "deps.sh: apt-get update" >&2
		apt-get update -q >&2
	fi
	echo "deps.sh: installing ${MISSING[*]}" >&2
	if ! "${apt[@]}" "${MISSING[@]}" >&2; then
		# stale lists (a 404 for an old version): refresh once and retry
		echo "deps.sh: install failed; apt-get update and retry" >&2
		apt-get update -q >&2
		"${apt[@]}" "${MISSING[@]}" >&2
	fi
}

rc=0
if [ ${#MISSING[@]} -gt 0 ]; then
	if [ $CHECK = 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		install_missing
	else
		{
			echo "deps.sh: missing for '${PURPOSES[*]}': Debian packages: ${MISSING[*]}"
			if ! command -v dpkg-query >/dev/null; then
				printf '  (no dpkg here: not found in PATH:'; for pkg in "${MISSING[@]}"; do printf ' %s' "${CMD[$pkg]:-$pkg}"; done; echo ')'
				echo "  install your distribution's packages that provide these commands."
			elif [ $CHECK = 1 ]; then :
			elif [ "$(id -u)" != 0 ]; then
				echo "  as root this script installs them: sudo $0 ${PURPOSES[*]}"
				echo "  or: sudo apt-get install --no-install-recommends ${MISSING[*]}"
			else
				echo "  no apt-get to install them with."
			fi
		} >&2
		rc=1
	fi
fi
check_go || rc=1
exit $rc
