#!/bin/sh
# Build a Debian package of vpn-confinement from this checkout with the
# Makefile's own build and install, staged with PREFIX=/usr, then
# dpkg-deb. No debhelper needed (dpkg-deb is part of dpkg).
#
# usage: packaging/deb/build.sh [VERSION] [OUTDIR]
#   VERSION  package version (default: 0.0.0~git<date>.<commit>)
#   OUTDIR   where the .deb goes (default: build/)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
version=${1:-0.0.0~git$(date -u +%Y%m%d).$commit}
out=${2:-$repo/build}
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
# A build dir of its own: the binaries carry PREFIX=/usr paths (-X
# LibexecDir), and overwriting the checkout's build/ would hand them to a
# later `make install` or test tier built for another PREFIX.
bdir=$(mktemp -d)
trap 'rm -rf "$stage" "$bdir"' EXIT
chmod 0755 "$stage"

make -C "$repo" build PREFIX=/usr B="$bdir"
make -C "$repo" install-files PREFIX=/usr DESTDIR="$stage" B="$bdir"

# The operator CLI, its man page, completion and JSON schema, for as long
# as the Makefile does not install them itself (then these are no-ops).
if [ ! -e "$stage/usr/bin/vpn-confinement" ]; then
	CGO_ENABLED=0 go -C "$repo" build -trimpath \
		-ldflags "-s -w -X github.com/vpn-confinement/vpn-confinement/internal/cli.Version=$version" \
		-o "$stage/usr/bin/vpn-confinement" ./cli
fi
if [ ! -e "$stage/usr/share/man/man8/vpn-confinement.8" ]; then
	go-md2man -in "$repo/man/vpn-confinement.8.md" -out "$stage/usr/share/man/man8/vpn-confinement.8"
fi
install -D -m 0644 "$repo/contrib/bash-completion/vpn-confinement" "$stage/usr/share/bash-completion/completions/vpn-confinement"
install -D -m 0644 "$repo/schema/vpn-confinement.schema.json" "$stage/usr/share/vpn-confinement/vpn-confinement.schema.json"
gzip -9n "$stage"/usr/share/man/man*/*.[58]
install -D -m 0644 "$here/copyright" "$stage/usr/share/doc/vpn-confinement/copyright"
# A native package's changelog (Debian format), required by policy.
printf 'vpn-confinement (%s) unstable; urgency=medium\n\n  * Package built from commit %s.\n\n -- vpn-confinement maintainers <maintainers@users.noreply.github.com>  %s\n' \
	"$version" "$commit" "$(date -u -R)" | gzip -9n > "$stage/usr/share/doc/vpn-confinement/changelog.gz"
chmod 0644 "$stage/usr/share/doc/vpn-confinement/changelog.gz"
install -D -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/vpn-confinement"

# Keys live below the config dir: root only.
chmod 0755 "$stage/etc/vpn-confinement.d"
install -d -m 0700 "$stage/etc/vpn-confinement.d/keys"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control.in" > "$stage/DEBIAN/control"
install -m 0755 "$here/postinst" "$here/postrm" "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) > "$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/vpn-confinement_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb"
echo "$deb"
