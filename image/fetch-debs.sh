#!/usr/bin/env bash
# Download and extract the Debian packages the Keel image is built from.
#
# usage: image/fetch-debs.sh <cache-dir>
#
# Everything the image carries comes from .debs extracted here (never from
# the host's /), so an image depends only on package versions:
#   - the kernel that linux-image-amd64 currently depends on,
#   - etcd-server (the etcd binary),
#   - libc6 (the only shared libraries etcd needs),
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

fetch() {
    local pkg=$1
    local dest=$cache/$pkg
    if [[ -f $dest/.extracted ]]; then
        echo "fetch-debs: $pkg: cached in $dest"
        return
    fi
    # Download into a private dir so a stale .deb of another version lying
    # around the cache can never be picked up by the glob below.
    local dl=$cache/.download-$pkg
    rm -rf "$dl"
    mkdir -p "$dl"
    echo "fetch-debs: $pkg: downloading"
    if ! (cd "$dl" && apt-get download "$pkg"); then
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
    touch "$dest/.extracted"
}

fetch "$kernel_pkg"
fetch etcd-server
fetch libc6
# keel-image resolves mke2fs's DT_NEEDED libraries in these trees (and
# libc6); a library missing from the list fails the image build by name.
for pkg in e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1; do
    fetch "$pkg"
done
fetch busybox-static

printf '%s\n' "$kernel_pkg" >"$cache/kernel-package"
echo "fetch-debs: kernel package: $kernel_pkg"
echo "fetch-debs: done: $cache"
