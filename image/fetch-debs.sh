#!/usr/bin/env bash
# Download and extract the Debian packages the Keel image is built from.
#
# usage: image/fetch-debs.sh <cache-dir>
#
# Everything the image carries comes from .debs extracted here (never from
# the host's /), so an image depends only on package versions:
#   - the kernel that linux-image-amd64 currently depends on,
#   - etcd-server (the etcd binary) from Debian trixie: etcd 3.5 (bookworm
#     ships 3.4.23; learner promotion and the lease fixes the VIP relies on
#     are 3.5's), fetched with a private apt state (below) so the host's
#     own sources stay as they are,
#   - libc6 from trixie too: the libc etcd's ELF NEEDED entries ask for
#     (mke2fs, built for bookworm's, runs on the newer one),
#   - e2fsprogs (mke2fs, to format an empty KEEL-VAR partition at boot) and
#     the packages of the libraries mke2fs needs besides libc: libext2fs2
#     (libext2fs, libe2p), libcom-err2, libblkid1, libuuid1.
# and, not in the Keel image: busybox-static, for the busybox + etcd floor
# image that `make bench-run` compares Keel against (keel-image --floor).
# Each package is extracted into <cache-dir>/<pkg>/; a package already
# extracted is skipped. The kernel package name is written to
# <cache-dir>/kernel-package for keel-image to read.
set -euo pipefail

die() {
    echo "fetch-debs: error: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 <cache-dir>"
for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "'$tool' not found (this script needs a Debian host)"
done

cache=$1
mkdir -p "$cache" || die "cannot create cache dir '$cache'"
cache=$(cd "$cache" && pwd)

updated=0
# apt-get update is slow and needs root, so run it only when a lookup fails
# (typically because /var/lib/apt/lists is empty in a fresh container).
apt_update_once() {
    if [[ $updated -eq 1 ]]; then
        return 1
    fi
    updated=1
    echo "fetch-debs: package lists look missing or stale; running apt-get update" >&2
    apt-get update >&2 || die "apt-get update failed"
}

resolve_kernel() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}

kernel_pkg=$(resolve_kernel)
if [[ -z $kernel_pkg ]]; then
    apt_update_once
    kernel_pkg=$(resolve_kernel)
fi
[[ -n $kernel_pkg ]] || die "cannot resolve the kernel package: 'apt-cache depends linux-image-amd64' names no linux-image-<release> dependency"

# A private apt state for Debian trixie: its package lists and archives
# live under the cache, the host's /etc/apt and /var/lib/apt are only read
# (for the archive keyring).
TRIXIE=$cache/apt-trixie
trixie_apt() {
    apt-get -q \
        -o Dir::State::Lists="$TRIXIE/lists" \
        -o Dir::State::status="$TRIXIE/status" \
        -o Dir::Etc::SourceList="$TRIXIE/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent \
        -o Dir::Cache::Archives="$TRIXIE/archives" \
        -o APT::Architecture=amd64 \
        "$@"
}
trixie_ready=0
trixie_setup() {
    [[ $trixie_ready -eq 1 ]] && return
    mkdir -p "$TRIXIE/lists/partial" "$TRIXIE/archives/partial"
    touch "$TRIXIE/status"
    local mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$TRIXIE/sources.list"
    echo "fetch-debs: apt-get update for trixie (private state in $TRIXIE)" >&2
    trixie_apt update >&2 || die "apt-get update for trixie failed"
    trixie_ready=1
}

# fetch <package> [trixie]: downloads and extracts one package, from the
# host's suites or from trixie; the marker records which, so switching
# suites re-extracts.
fetch() {
    local pkg=$1 suite=${2:-host}
    local dest=$cache/$pkg
    if [[ -f $dest/.extracted && $(cat "$dest/.extracted") == "$suite" ]]; then
        echo "fetch-debs: $pkg: cached in $dest ($suite)"
        return
    fi
    # Download into a private dir so a stale .deb of another version lying
    # around the cache can never be picked up by the glob below.
    local dl=$cache/.download-$pkg
    rm -rf "$dl"
    mkdir -p "$dl"
    echo "fetch-debs: $pkg: downloading ($suite)"
    if [[ $suite == trixie ]]; then
        trixie_setup
        (cd "$dl" && trixie_apt download "$pkg") || die "apt-get download $pkg from trixie failed"
    elif ! (cd "$dl" && apt-get download "$pkg"); then
        apt_update_once || die "apt-get download $pkg failed (after apt-get update)"
        (cd "$dl" && apt-get download "$pkg") || die "apt-get download $pkg failed after apt-get update"
    fi
    local debs=("$dl"/*.deb)
    [[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || die "expected exactly one .deb for $pkg in $dl, found: ${debs[*]}"
    echo "fetch-debs: $pkg: extracting $(basename "${debs[0]}")"
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg-deb -x "${debs[0]}" "$dest" || die "dpkg-deb -x ${debs[0]} failed"
    # Keep the .deb next to the tree: it records the exact version used.
    mv "${debs[0]}" "$cache/"
    rmdir "$dl"
    # The marker is written last so an interrupted extraction is redone.
    echo "$suite" >"$dest/.extracted"
}

fetch "$kernel_pkg"
fetch etcd-server trixie
fetch libc6 trixie
# Not in the image: etcdctl of the same version, the real client of the
# host tests (tests/src/vipnet.rs).
fetch etcd-client trixie
# keel-image resolves mke2fs's DT_NEEDED libraries in these trees (and
# libc6); a library missing from the list fails the image build by name.
for pkg in e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1; do
    fetch "$pkg"
done
fetch busybox-static

printf '%s\n' "$kernel_pkg" >"$cache/kernel-package"
echo "fetch-debs: kernel package: $kernel_pkg"
echo "fetch-debs: done: $cache"
