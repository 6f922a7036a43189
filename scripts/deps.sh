#!/usr/bin/env bash
# Installs everything building, running and testing Keel needs on a fresh
# Debian machine. Idempotent and quiet when all is there already; the README's
# `make run` and `make test` call it, so nothing is installed by hand.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages:
#  qemu-system-x86  the VMs of `make run` and the end-to-end tests
#  ipxe-qemu        NIC option ROMs for PXE boot under QEMU
#  protobuf-compiler  etcd-client's build script runs protoc
#  cpio             listing initramfs contents in tests
#  zstd             inspecting compressed initramfs images
#  etcd-server      the etcd binary for host integration tests (the image
#                   takes its own copy from the .deb)
#  dosfstools mtools genisoimage  config disks (vfat, iso9660) for tests
#  iproute2 dnsmasq-base tcpdump  network-namespace tests and packet captures
#  binutils         readelf, for humans checking the static init
#  e2fsprogs        mkfs.ext4 for the label-probing tests
#  fdisk            sfdisk: GPT disks with a partition named KEEL-VAR for tests
#  ca-certificates  apt-get download of the kernel and etcd .debs
#  musl-tools       musl-gcc: C parts of crates (ring, for TLS) in the static init
PKGS=(qemu-system-x86 ipxe-qemu protobuf-compiler cpio zstd etcd-server
      dosfstools mtools genisoimage iproute2 dnsmasq-base tcpdump binutils e2fsprogs
      fdisk ca-certificates musl-tools)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  # etcd-server's and dnsmasq's maintainer scripts would start services;
  # policy-rc.d exit 101 tells invoke-rc.d not to (Debian policy 9.3.3).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  echo "deps: adding the x86_64-unknown-linux-musl target (the init is static)"
  rustup target add x86_64-unknown-linux-musl
fi
