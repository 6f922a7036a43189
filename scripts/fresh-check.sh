#!/usr/bin/env bash
# make fresh-check: proves that the README's two commands install what they
# need, on a Debian 12 (bookworm) root as fresh as debootstrap makes it.
#
# usage: scripts/fresh-check.sh [--quick] [--keep]
#   --quick  build init and image, lint, unit and host tests only (no QEMU);
#            the default runs .ci/run (make test: every test) as CI does
#   --keep   leave the root in build/fresh/root for a look afterwards
#            (it is always replaced by the next run)
#
# What it does, in order:
#  1. a minbase bookworm root from Debian's archive (debootstrap), cached as
#     build/fresh/bookworm-minbase.tar.zst: only the first run bootstraps;
#     every run unpacks a new root from the tarball;
#  2. in a private mount and PID namespace: /proc, /sys, /dev, a tmpfs /run,
#     the repository bind-mounted read-only on /repo, the host's Rust
#     toolchain read-only ($RUSTUP_HOME on /opt/rustup, $CARGO_HOME/bin on
#     /opt/cargo/bin; rustup cannot be fetched from here), and a cargo
#     registry cache kept in build/fresh/cargo-registry between runs;
#  3. chrooted, as a newcomer: copies the repository's files (tracked and
#     untracked-but-not-ignored, as in the working tree) to /root/keel,
#     runs `bash scripts/deps.sh`, then `bash .ci/run` (or the --quick steps);
#  4. prints what deps.sh installed and the result; exits non-zero on failure.
# Everything it started dies with the PID namespace; its mounts with the
# mount namespace. The log is build/fresh/fresh-check.log.
set -euo pipefail

die() {
    echo "fresh-check: $*" >&2
    exit 1
}

quick=0 keep=0
for a in "$@"; do
    case $a in
        --quick) quick=1 ;;
        --keep) keep=1 ;;
        *) die "unknown argument '$a' (expected --quick or --keep)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mounts, chroot); run it as root"
for t in debootstrap unshare chroot zstd git; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found; run scripts/deps.sh first"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
fresh=${FRESH_DIR:-$repo/build/fresh}
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
security=${FRESH_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
[ -x "$cargo_home/bin/cargo" ] || die "no cargo in $cargo_home/bin (set CARGO_HOME)"
[ -d "$rustup_home/toolchains" ] || die "no rustup toolchains in $rustup_home (set RUSTUP_HOME)"

tarball=$fresh/bookworm-minbase.tar.zst
root=$fresh/root
log=$fresh/fresh-check.log
mkdir -p "$fresh" "$fresh/cargo-registry"
: >"$log"
say() { echo "fresh-check: $*" | tee -a "$log"; }
start=$(date +%s)

# 1. The cached minbase root.
if [ ! -f "$tarball" ]; then
    say "bootstrapping Debian bookworm (minbase) from $mirror; cached afterwards in $tarball"
    boot=$fresh/bootstrap
    rm -rf "$boot"
    debootstrap --variant=minbase bookworm "$boot" "$mirror" >>"$log" 2>&1 ||
        die "debootstrap failed; see $log"
    tar -C "$boot" --numeric-owner -cf - . | zstd -q -T0 -o "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$boot"
fi
# Never delete through a mount (a root left mounted by a killed run).
unmounted() {
    ! grep -q " $root/" /proc/self/mountinfo ||
        die "something is still mounted under $root (see /proc/self/mountinfo); unmount it first"
}
say "unpacking a new root from $tarball"
unmounted
rm -rf "$root"
mkdir -p "$root"
zstd -dc "$tarball" | tar -C "$root" --numeric-owner -xf -

# The archive as apt-get reaches it here: the release, its updates and
# security suites (the kernel .deb image/fetch-debs.sh takes comes from
# whichever is newest, as on the host).
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The machine's own trust anchors (a site or proxy CA in
# /usr/local/share/ca-certificates) belong to its network, not to a package:
# a newcomer's machine has them too. ca-certificates, once deps.sh installs
# it, adds them to the bundle cargo and apt-get download use.
mkdir -p "$root/usr/local/share/ca-certificates"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
mkdir -p "$root/repo" "$root/opt/rustup" "$root/opt/cargo/bin" "$root/root/.cargo/registry"

# The files a clean clone plus this working tree's changes would hold.
git -C "$repo" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
        [ -e "$repo/$f" ] || [ -L "$repo/$f" ] && printf '%s\0' "$f"
    done >"$root/repo-files"

if [ "$quick" -eq 1 ]; then
    steps='make init image lint
cargo test --workspace --exclude keel-tests --exclude keel-cluster
cargo test -p keel-tests --test static_elf --test vip_host -- --test-threads=1'
else
    steps='bash .ci/run'
fi

# What runs inside the chroot, as a newcomer would on a fresh machine.
cat >"$root/fresh-run.sh" <<EOF
set -euo pipefail
export HOME=/root LANG=C.UTF-8 RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo
export PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /root/keel
tar -C /repo --null -T /repo-files -cf - | tar -C /root/keel -xf -
cd /root/keel
dpkg-query -W -f '\${Package}\n' | sort >/before-packages
echo "fresh-check: \$(wc -l </before-packages) packages in the fresh root"
rc=0
(
    set -x
    bash scripts/deps.sh
$steps
) || rc=\$?
dpkg-query -W -f '\${Package}\n' | sort >/after-packages
exit \$rc
EOF

# 2 + 3. Namespaces, mounts, chroot. --propagation private keeps every
# mount below from reaching the host; --pid --fork makes the chroot's
# processes (etcd, dnsmasq, QEMU) die with it.
say "running in $root: scripts/deps.sh, then $(echo "$steps" | paste -sd ';' | sed 's/;/; /g')"
set +e
unshare --mount --pid --fork --propagation private -- bash -euo pipefail -c '
root=$1 repo=$2 rustup_home=$3 cargo_home=$4 registry=$5
# The root must be a mount point: `ip netns exec` and `ip -n` run
# `mount --make-rslave /`, which fails on a plain directory (EINVAL).
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount --bind "$repo" "$root/repo"
mount -o remount,bind,ro "$root/repo"
mount --bind "$rustup_home" "$root/opt/rustup"
mount -o remount,bind,ro "$root/opt/rustup"
mount --bind "$cargo_home/bin" "$root/opt/cargo/bin"
mount -o remount,bind,ro "$root/opt/cargo/bin"
mount --bind "$registry" "$root/root/.cargo/registry"
exec chroot "$root" /usr/bin/env -i TERM="${TERM:-dumb}" /bin/bash /fresh-run.sh
' fresh-check "$root" "$repo" "$rustup_home" "$cargo_home" "$fresh/cargo-registry" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e

# 4. The report.
secs=$(($(date +%s) - start))
installed=$(comm -13 "$root/before-packages" "$root/after-packages" 2>/dev/null || true)
n=$(printf '%s' "$installed" | grep -c . || true)
say "deps.sh installed $n packages into the fresh root:"
printf '%s\n' "$installed" | paste -sd ' ' | fold -s -w 100 | sed 's/^/fresh-check:   /' | tee -a "$log"
totals=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n1 || true)
[ -n "$totals" ] && say ".ci/run: $totals"
if [ "$rc" -eq 0 ]; then
    say "PASS in $((secs / 60)) min $((secs % 60)) s"
else
    say "FAIL (exit $rc) after $((secs / 60)) min $((secs % 60)) s; the first errors:"
    grep -m 8 -E '^error|error:|File not found|not found|No such file|FAILED|panicked' "$log" |
        grep -v '^fresh-check:' | cut -c1-400 | sed 's/^/fresh-check:   /' | tee -a "$log"
    say "whole log: $log"
fi
if [ "$keep" -eq 0 ]; then
    unmounted
    rm -rf "$root"
fi
exit "$rc"
