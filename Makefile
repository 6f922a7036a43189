# Keel: the two commands for a newcomer are `make run` and `make test`.
# Everything they need is installed by scripts/deps.sh.

SHELL := /bin/bash
BUILD ?= build
CACHE ?= $(BUILD)/cache
MUSL := x86_64-unknown-linux-musl
INIT := target/$(MUSL)/release/keel
# Host tools (image builder, launcher, bench) build with the `tools`
# profile: optimised, but without the init's slow LTO.
TOOLS := cargo run -q --profile tools
ARTIFACTS := $(BUILD)/vmlinux $(BUILD)/initramfs.cpio $(BUILD)/initramfs.cpio.zst

.PHONY: run run-one test deps fresh-check init image lint bench bench-net bench-failover bench-run bench-faults clean

## make run: build everything and boot a control plane of NODES nodes with
## a VIP (examples/cluster.yaml.tmpl), with a live status view; commands on
## stdin act on the nodes, Ctrl-C powers them off (README, "make run").
NODES ?= 3
VIP ?= 10.5.0.100
run: deps image
	$(TOOLS) -p keel-cluster --bin keel-cluster -- --build $(BUILD) \
	  --nodes $(NODES) --vip $(VIP) $(RUN_ARGS)

## make run-one: one node, console on the terminal, with
## examples/single-node.yaml as its machine config (RUN_CONFIG=...).
RUN_CONFIG ?= examples/single-node.yaml
run-one: deps image
	$(TOOLS) -p keel-qemu --bin keel-qemu -- \
	  --kernel $(BUILD)/vmlinux --initrd $(BUILD)/initramfs.cpio \
	  --append "keel.config.inline=$$(base64 -w0 $(RUN_CONFIG)) $(RUN_APPEND)" \
	  --log $(BUILD)/run/node0.console.log --qmp $(BUILD)/run/node0.qmp $(RUN_ARGS)

## make test: lint, unit and integration tests, then the QEMU end-to-end tests.
test: deps image lint
	cargo test --workspace --exclude keel-tests
	cargo test -p keel-tests -- --test-threads=1

deps:
	@bash scripts/deps.sh

## make fresh-check: prove that deps.sh installs everything: a fresh
## Debian bookworm root (debootstrap, cached in build/fresh), the repo
## read-only and the host's Rust toolchain bind-mounted, then deps.sh and
## .ci/run inside it (FRESH_ARGS=--quick: no QEMU tests). Needs root.
fresh-check: deps
	bash scripts/fresh-check.sh $(FRESH_ARGS)

init:
	cargo build --release -p keel --target $(MUSL)

# The image builder is cheap to rerun: it caches the .debs and vmlinux and
# rewrites the initramfs only from its inputs.
image: init
	bash image/fetch-debs.sh $(CACHE)
	$(TOOLS) -p keel-image -- --cache $(CACHE) --init $(INIT) --out $(BUILD) --compression both

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## make bench: boot the image repeatedly and report phase times and sizes.
bench: deps image
	$(TOOLS) -p keel-tests --bin keel-bench -- --build $(BUILD) $(BENCH_ARGS)

## make bench-net: /init → all links configured (static config, 2 NICs + VLAN).
bench-net: deps image
	$(TOOLS) -p keel-tests --bin keel-bench -- --build $(BUILD) --net $(BENCH_ARGS)

## make bench-failover: the VIP under 24 faults (graceful, crash, partition,
## etcd kill) on 3 nodes in network namespaces with real etcd members;
## median/max failover per kind and the split-brain overlap. Needs root.
bench-failover: deps init
	$(TOOLS) -p keel-tests --bin keel-failover -- $(BENCH_ARGS)

## make bench-run: `make run` start → the VIP answering (the real make run,
## non-interactive), against the floor: the same QEMU nodes booting the same
## kernel into busybox + etcd only (keel-image --floor); medians and ratio.
bench-run: deps image
	$(TOOLS) -p keel-image -- --floor --cache $(CACHE) --out $(BUILD)
	$(TOOLS) -p keel-cluster --bin keel-bench-run -- --build $(BUILD) $(BENCH_ARGS)

## make bench-faults: an IPv4 and an IPv6 VIP under faults on their holder
## in QEMU (graceful, crash, freeze 12 s and 1.5 s, partition, link down,
## and a disk stall of etcd's leader; BENCH_ARGS='--rounds N --kinds a,b
## --families 4,6'), an observer probing every 50 ms: failover per kind and
## VIP, two MACs claiming at once, needless moves.
bench-faults: deps image
	$(TOOLS) -p keel-cluster --bin keel-bench-faults -- --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)/run target
