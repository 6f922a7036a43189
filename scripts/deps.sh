#!/usr/bin/env bash
# Installs everything building, running and testing Keel needs on a fresh
# Debian 12 (bookworm) machine that has only Rust (rustup). Idempotent and
# quiet when all is there already; the README's `make run` and `make test`
# call it, so nothing is installed by hand. `make fresh-check` proves the
# list on a debootstrapped bookworm root (scripts/fresh-check.sh).
#
# Packages are installed with --no-install-recommends, so every package a
# build script or test needs is listed by itself, even where another one
# only recommends it (protobuf-compiler → libprotobuf-dev was missed once).
set -euo pipefail

die() {
    echo "deps: $*" >&2
    exit 1
}

# Debian packages, by who needs them.
PKGS=(
    # The build. make runs the Makefile (minbase Debian has no make); gcc
    # and libc6-dev are rustc's linker for host binaries and the C compiler
    # the cc crate drives (zstd-sys, liblzma-sys in keel-image; ring);
    # musl-tools (musl-gcc) builds ring's C for the static musl init.
    make gcc libc6-dev musl-tools
    # etcd-client's build script runs protoc on etcd's .proto files, which
    # import google/protobuf/{descriptor,struct}.proto from libprotobuf-dev.
    protobuf-compiler libprotobuf-dev
    # The image (image/fetch-debs.sh): apt-get download over https.
    ca-certificates
    # make run and the QEMU tests: qemu-system-x86_64 (with SeaBIOS and the
    # PVH boot of vmlinux), iPXE option ROMs for PXE boot.
    qemu-system-x86 ipxe-qemu
    # Tests: cpio lists initramfs contents; zstd compresses configs and
    # checks the PXE archive (etcd and etcdctl are not host packages: the
    # tests run the image's etcd 3.5, which image/fetch-debs.sh extracts
    # from Debian trixie into build/cache, with its etcdctl);
    # dosfstools + mtools build KEEL-CONFIG vfat disks (also make run),
    # genisoimage iso9660 ones, e2fsprogs ext4 ones (mkfs.ext4); fdisk's
    # sfdisk writes GPT disks with a KEEL-VAR partition; mount's losetup
    # attaches disk images; iproute2 (ip netns, veth, bridges) and
    # dnsmasq-base (a real DHCP server) for the namespace tests; curl is
    # the real client of the node API's security tests.
    cpio zstd curl dosfstools mtools genisoimage e2fsprogs fdisk mount
    iproute2 dnsmasq-base
    # For humans: readelf to check the static init, tcpdump for captures.
    binutils tcpdump
    # make fresh-check: a fresh bookworm root to prove this list.
    debootstrap
)

MUSL=x86_64-unknown-linux-musl

command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: this script installs Debian packages; use Debian 12 (bookworm) or install the packages listed in scripts/deps.sh yourself"
command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script needs a Debian system (dpkg and apt)"

# Rust first: without it nothing else is worth installing.
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    die "Rust (cargo, rustc) not found on PATH: install it with rustup: curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y, then open a new shell (or source ~/.cargo/env) and run this again"
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "not root and sudo not found: run this as root, or install sudo, to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    echo "deps: installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed (see above)"
    # Maintainer scripts (dnsmasq-base's, tcpdump's) must not start services;
    # policy-rc.d exit 101 tells invoke-rc.d not to (Debian policy 9.3.3).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
        trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        die "apt-get install failed (see above)"
    echo "deps: installed ${#missing[@]} packages: ${missing[*]}"
fi

# The init is a static musl binary: it needs that target's standard library.
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$MUSL/lib" ]; then
    command -v rustup >/dev/null 2>&1 ||
        die "the Rust target $MUSL is missing and rustup is not on PATH: install Rust with rustup (https://rustup.rs), then run this again"
    echo "deps: adding the $MUSL target (the init is static)"
    rustup target add "$MUSL" || die "rustup target add $MUSL failed (see above)"
fi
# make lint runs these; a minimal rustup profile leaves them out.
for pair in fmt:rustfmt clippy:clippy; do
    sub=${pair%%:*} component=${pair#*:}
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            die "cargo $sub not found and rustup is not on PATH: install Rust's $component component"
        echo "deps: adding the $component component (make lint)"
        rustup component add "$component" || die "rustup component add $component failed (see above)"
    fi
done
