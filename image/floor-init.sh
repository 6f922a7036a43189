#!/bin/busybox sh
# /init of the benchmark floor image (`make bench-run`): the least a node
# must do to hold a VIP backed by etcd, with nothing of Keel in it. The
# same kernel, the same etcd and the same QEMU nodes as `make run`, so
# Keel's time to the VIP answering can be set against this one.
#
# Kernel parameters (read from /proc/cmdline; dotted names are not passed
# to init as arguments or environment):
#   floor.name=node1                 etcd member name
#   floor.ip=10.5.0.11/24            address of eth0
#   floor.cluster=node1=https://…,…  etcd's --initial-cluster
#   floor.vip=10.5.0.100/24          only on the node that takes the VIP
#
# etcd's certificates are in /etc/etcd (ca.crt, server.crt/key,
# peer.crt/key: an archive the bench appends to this one), and etcd runs
# with TLS on its client and peer listeners, as Keel's does.
#
# No election, no config, no naming: the node given floor.vip adds it as
# soon as its own etcd member reports healthy (which needs a quorum).
# PID 1 must never exit (the kernel panics), so every path ends in the
# sleep loop at the bottom.

/bin/busybox mkdir -p /usr/sbin /proc /sys /dev /var/lib
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Seconds since boot in front, like the kernel's and Keel's console lines.
say() {
    read -r up _ </proc/uptime
    echo "[$up] floor: $*" >/dev/console
}

name= ip= cluster= vip=
for arg in $(cat /proc/cmdline); do
    case $arg in
    floor.name=*) name=${arg#floor.name=} ;;
    floor.ip=*) ip=${arg#floor.ip=} ;;
    floor.cluster=*) cluster=${arg#floor.cluster=} ;;
    floor.vip=*) vip=${arg#floor.vip=} ;;
    esac
done
say "init started (name=$name ip=$ip vip=${vip:-none})"

main() {
    [ -n "$name" ] && [ -n "$ip" ] && [ -n "$cluster" ] || {
        say "error: floor.name, floor.ip and floor.cluster are required"
        return
    }
    pki=/etc/etcd
    for f in ca.crt server.crt server.key peer.crt peer.key; do
        [ -s "$pki/$f" ] || {
            say "error: $pki/$f is missing (make bench-run appends the certificates to floor.cpio)"
            return
        }
    done
    # virtio_pci is a PCI driver, not a dependency of virtio_net: both by
    # name (the image's modules.dep brings virtio, virtio_ring, failover…).
    modprobe virtio_pci && modprobe virtio_net || {
        say "error: loading virtio_net failed"
        return
    }
    while [ ! -e /sys/class/net/eth0 ]; do usleep 10000; done
    ip link set lo up
    ip addr add "$ip" dev eth0
    ip link set eth0 up
    say "eth0 up with $ip"
    say "etcd: starting member $name"

    addr=${ip%/*}
    # etcd's output goes to a file: the serial console under TCG is slow.
    # /health on a plain metrics listener on loopback: busybox's wget has
    # no TLS client certificate.
    etcd --name="$name" --data-dir=/var/lib/etcd \
        --listen-peer-urls="https://$addr:2380" \
        --initial-advertise-peer-urls="https://$addr:2380" \
        --listen-client-urls="https://$addr:2379,https://127.0.0.1:2379" \
        --advertise-client-urls="https://$addr:2379" \
        --listen-metrics-urls="http://127.0.0.1:2381" \
        --initial-cluster="$cluster" --initial-cluster-state=new \
        --initial-cluster-token=floor --pre-vote=true \
        --client-cert-auth --trusted-ca-file="$pki/ca.crt" \
        --cert-file="$pki/server.crt" --key-file="$pki/server.key" \
        --peer-client-cert-auth --peer-trusted-ca-file="$pki/ca.crt" \
        --peer-cert-file="$pki/peer.crt" --peer-key-file="$pki/peer.key" \
        >/var/etcd.log 2>&1 &
    # Not wget's own -T: Debian's static busybox 1.35 wget segfaults with
    # it on a refused connection.
    until timeout 3 wget -q -O - http://127.0.0.1:2381/health 2>/dev/null | grep -q '"health":"true"'; do
        usleep 100000
    done
    say "etcd healthy"

    if [ -n "$vip" ]; then
        ip addr add "$vip" dev eth0
        arping -U -c 1 -I eth0 "${vip%/*}" >/dev/null 2>&1
        say "vip $vip added"
    fi
    # etcd's milestones with its own timestamps, once nothing is timed
    # any more on this node, to set against Keel's console (which relays
    # etcd's lines as they come).
    grep -E '"msg":"[^"]*(opened backend db|starting local member|became leader at term|ready to serve client requests|serving client traffic securely)' /var/etcd.log |
        sed -e 's/.*"ts":"\([^"]*\)".*"msg":"\([^"]*\)".*/\1 \2/' |
        while read -r line; do say "etcd log: $line"; done
}

main
while :; do sleep 3600; done
