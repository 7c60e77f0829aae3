#!/bin/bash
# The part of test/fresh.sh that runs inside the throwaway fresh Debian 12
# root, as PID 1 of its PID namespace, in a checkout at /root/vpn-confinement.
set -uo pipefail
cd /root/vpn-confinement
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }
fail() { echo "fresh: FAIL: $*"; exit 1; }
echo "fresh: inside a copy of the base root: $(. /etc/os-release; echo "$PRETTY_NAME"), $(dpkg-query -W -f='.\n' | wc -l) packages, Go at /usr/local/go (not in PATH), no apt lists"

# A package's postinst starts its daemon through invoke-rc.d, which starts
# nothing where there is no /sbin/init or it cannot tell the runlevel (a
# bare root like this one). Play a booted machine at runlevel 2, so that
# here, as on a real host, only deps.sh's policy-rc.d keeps nginx, dbus,
# transmission... from starting (without it, dbus-daemon does start here:
# checked).
printf '#!/bin/sh\n# test/fresh.sh: a booted machine at runlevel 2\necho N 2\n' > /usr/sbin/runlevel
printf '#!/bin/sh\n# test/fresh.sh: there is an init system (for invoke-rc.d)\nexit 1\n' > /usr/sbin/init
chmod 0755 /usr/sbin/runlevel /usr/sbin/init

# 1. Not root, nothing installed: `make` stops and names what is missing.
# (the user's own checkout: a copy owned by uid 65534)
cp -a /root/vpn-confinement /tmp/user-checkout && chown -R 65534:65534 /tmp/user-checkout
user() { setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/tmp/user-checkout "$@"; }
out=$(cd /tmp/user-checkout && user make build 2>&1) &&
	fail "make as an unprivileged user passed, but go-md2man is not installed"
want="deps.sh: missing for 'build': Debian packages: go-md2man"
grep -qxF "$want" <<<"$out" || { echo "$out"; fail "make as a user did not say: $want"; }
echo "fresh: make (not root) stops with:"
grep -A2 -F 'deps.sh:' <<<"$out" | sed 's/^/        /'

# 2. The README's first command, as root. Each output line gets the seconds
# since the start, for the timings below.
t0=$EPOCHREALTIME
echo "fresh: make demo"
make demo 2>&1 | while IFS= read -r l; do printf '%6.1f %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$l"; done > /root/make-demo.log
rc=${PIPESTATUS[0]}
L=/root/make-demo.log
grep -E '^ *[0-9.]+ deps\.sh:' "$L" | sed 's/^/        /'
sed -n '/^ *[0-9.]* ==> /,$p' "$L" | cut -c8- | sed 's/^/        /'
if [ "$rc" != 0 ] || ! grep -q '^ *[0-9.]* All checks passed' "$L"; then
	tail -60 "$L"; fail "make demo exited $rc"
fi
at() { grep -m1 -E "$1" "$L" | awk '{print $1}'; }
i=$(at 'CGO_ENABLED=0 .* build ') d=$(at '==> Booting') e=$(at 'All checks passed')
echo "fresh: make demo passed in $(since "$t0"): packages ${i:-?} s, build $(awk -v a="$i" -v b="$d" 'BEGIN{print b-a}') s, demo $(awk -v a="$d" -v b="$e" 'BEGIN{print b-a}') s"

# 3. Afterwards: everything present, found without apt; nothing started.
touch /root/.mark
t=$EPOCHREALTIME
packaging/deps.sh demo || fail "deps.sh demo after make demo: something still missing"
echo "fresh: deps.sh demo again: nothing to do, $(since "$t")"
[ -z "$(find /var/lib/apt/lists /var/lib/dpkg/status -newer /root/.mark)" ] ||
	fail "deps.sh touched apt or dpkg although everything was installed"
(cd /tmp/user-checkout && user packaging/deps.sh build) ||
	fail "deps.sh build as a user after the install"
[ ! -e /usr/sbin/policy-rc.d ] || fail "deps.sh left /usr/sbin/policy-rc.d behind"
procs=$(ps -e -o pid=,comm= | awk '$2 != "bash" && $2 != "ps" && $2 != "awk"')
[ -z "$procs" ] || fail "processes left running after the installs and the demo (a daemon started?): $procs"
echo "fresh: no policy-rc.d left, no daemon running; installed: $(dpkg-query -W -f='${db:Status-Status} ${Package}\n' $(packaging/deps.sh --list demo) | awk '$1 == "installed" {print $2}' | tr '\n' ' ')"

# 4. The test tier's packages: real daemons (nginx, lighttpd, transmission,
# deluged, qbittorrent...) are installed but none of them starts (deps.sh's
# policy-rc.d). Without it, invoke-rc.d in this root would start them.
t=$EPOCHREALTIME
packaging/deps.sh test > /root/deps-test.log 2>&1 || { tail -30 /root/deps-test.log; fail "deps.sh test"; }
grep '^deps.sh:' /root/deps-test.log | sed 's/^/        /'
echo "fresh: deps.sh test installed the test tier's packages in $(since "$t")"
[ ! -e /usr/sbin/policy-rc.d ] || fail "deps.sh test left /usr/sbin/policy-rc.d behind"
procs=$(ps -e -o pid=,comm= | awk '$2 != "bash" && $2 != "ps" && $2 != "awk"')
[ -z "$procs" ] || fail "processes running after installing the test tier (a daemon started): $procs"
echo "fresh: no daemon running after installing $(ls /etc/init.d | tr '\n' ' ')"
