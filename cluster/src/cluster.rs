//! The running nodes: one QEMU each on a shared switch, and what an operator
//! (or a test) can do to them. This is the workspace's one multi-node QEMU
//! harness: `make run`, `make bench-run` and the end-to-end tests
//! (keel-tests' `cluster`) all boot their nodes here.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use keel_qemu::{Accel, Drive, Nic, Vm, VmConfig};
use keel_switch::{MacAddr, Switch, WhoHas};

use crate::nodes::{config_disk, render, Topology};
use crate::status::NodeStatus;

/// What the nodes boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// Keel: `initramfs.cpio`, each node with a `KEEL-CONFIG` disk
    /// rendered from the template.
    Keel,
    /// The benchmark floor (`keel-image --floor`): `floor.cpio`, busybox +
    /// etcd, told its name, address, etcd cluster and (node 1) the VIP by
    /// `floor.*` kernel parameters; no config disk.
    Floor,
}

impl Image {
    fn initrd(self) -> &'static str {
        match self {
            Image::Keel => "initramfs.cpio",
            Image::Floor => "floor.cpio",
        }
    }
}

/// How a node gets its machine config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeConfig {
    /// On a `KEEL-CONFIG` vfat disk, as `make run` gives it.
    Disk(String),
    /// On the kernel command line (`keel.config.inline=`).
    Inline(String),
}

/// What one node has besides its place in the topology (name, MAC,
/// switch port).
#[derive(Debug, Clone, Default)]
pub struct NodeSetup {
    /// None: no config (the floor, or a node left to find its own).
    pub config: Option<NodeConfig>,
    /// NICs after the switch NIC (e.g. user networking with a host
    /// forward).
    pub extra_nics: Vec<Nic>,
    /// Disks after the config disk.
    pub drives: Vec<Drive>,
    /// Kernel parameters for this node only.
    pub append: String,
    /// The host port (on 127.0.0.1) forwarded to the node's API, if any.
    pub api_port: Option<u16>,
    /// This node's initramfs instead of the image's (the floor's, with
    /// the node's certificates appended: `floor.rs`).
    pub initrd: Option<PathBuf>,
}

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub image: Image,
    /// Holds `vmlinux` and `initramfs.cpio` (`make image`), or
    /// `floor.cpio` (`keel-image --floor`).
    pub build: PathBuf,
    /// Run directory: console logs, QMP sockets, config disks, the switch.
    pub dir: PathBuf,
    pub topology: Topology,
    /// Node `n`'s at index `n - 1`; nodes past its end get the default.
    pub setups: Vec<NodeSetup>,
    pub accel: Accel,
    /// Per VM; etcd needs ~160 MB of tmpfs for its WAL
    /// (docs/ARCHITECTURE.md, "Facts measured under QEMU").
    pub memory_mib: u32,
    /// Extra kernel parameters for every node.
    pub append: String,
}

impl Options {
    /// Every node's config rendered from `template` onto a `KEEL-CONFIG`
    /// disk (`make run`), with `cas` as the cluster's CAs; an unknown
    /// template field is an error naming it. Each node also gets a NIC on
    /// QEMU user networking (MAC `api_mac`; the template gives it
    /// 10.0.2.15/24) with a free host port on 127.0.0.1 forwarded to its
    /// node API at its switch address: slirp connects from 10.0.2.2 to
    /// that address through the user NIC, which Linux accepts (weak host
    /// model) and answers back out of the same NIC.
    pub fn with_template(
        mut self,
        template: &str,
        cas: &crate::nodes::Cas,
    ) -> anyhow::Result<Options> {
        self.setups = self
            .topology
            .nodes
            .iter()
            .map(|node| {
                let port = free_port()?;
                let nic = host_nic(node, port, None);
                Ok(NodeSetup {
                    config: Some(NodeConfig::Disk(render(
                        template,
                        &self.topology,
                        node,
                        cas,
                    )?)),
                    extra_nics: vec![nic],
                    api_port: Some(port),
                    ..NodeSetup::default()
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(self)
    }
}

/// Node `node`'s NIC on QEMU user networking: host port `api` on
/// 127.0.0.1 forwarded to its node API, and `etcd` to its etcd client
/// port, at its switch address.
fn host_nic(node: &crate::nodes::NodeSpec, api: u16, etcd: Option<u16>) -> Nic {
    let mut netdev = format!(
        "user,id=api0,ipv6=off,restrict=on,hostfwd=tcp:127.0.0.1:{api}-{}:{}",
        node.address,
        keel::api::PORT
    );
    if let Some(port) = etcd {
        netdev += &format!(",hostfwd=tcp:127.0.0.1:{port}-{}:2379", node.address);
    }
    Nic::new(netdev).with_mac(&node.api_mac)
}

impl Options {
    /// Also forwards a free host port to each node's etcd client port
    /// (the template must keep `clientOnNodeAddress`, Keel's default);
    /// the ports, node by node, for `etcdctl --endpoints`.
    pub fn with_etcd_forwards(mut self) -> anyhow::Result<(Options, Vec<u16>)> {
        let mut ports = Vec::new();
        for (setup, node) in self.setups.iter_mut().zip(&self.topology.nodes) {
            let Some(api) = setup.api_port else {
                bail!("{}: no API forward to add etcd's to", node.hostname);
            };
            let port = free_port()?;
            setup.extra_nics = vec![host_nic(node, api, Some(port))];
            ports.push(port);
        }
        Ok((self, ports))
    }
}

/// The kernel command line of every node.
const APPEND: &str = "console=ttyS0 printk_devkmsg=on panic=-1";

/// How long a graceful power-off may take (etcd gets 10 s to stop).
pub const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub opts: Options,
    pub switch: Switch,
    /// Node `n` at index `n - 1`; None once it has been stopped.
    vms: Vec<Option<Vm>>,
    /// How many times node `n` has been booted.
    boots: Vec<usize>,
    /// Console logs of earlier boots, `("nodeN boot K", text)`, for
    /// failure messages.
    pub earlier: Vec<(String, String)>,
    /// What `Accel::Auto` resolved to, and why.
    pub accel: Accel,
    pub accel_note: Option<String>,
}

impl Cluster {
    /// Starts the switch and boots every node.
    pub fn start(opts: Options) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("create {}", opts.dir.display()))?;
        let kernel = opts.build.join("vmlinux");
        for f in [&kernel, &opts.build.join(opts.image.initrd())] {
            if !f.exists() {
                let make = match opts.image {
                    Image::Keel => "make image",
                    Image::Floor => "make bench-run",
                };
                bail!("{} is missing: run `{make}` first", f.display());
            }
        }
        let resolved = keel_qemu::accel::resolve(opts.accel, Some(&kernel));
        let count = opts.topology.nodes.len();
        let switch = Switch::start(opts.dir.join("l2"), count).context("start the switch")?;
        let mut c = Cluster {
            vms: (0..count).map(|_| None).collect(),
            boots: vec![0; count],
            earlier: Vec::new(),
            opts,
            switch,
            accel: resolved.accel,
            accel_note: resolved.note,
        };
        for n in 1..=count {
            c.boot(n)?;
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    pub fn console_path(&self, n: usize) -> PathBuf {
        self.opts.dir.join(format!("node{n}.console.log"))
    }

    fn qmp_path(&self, n: usize) -> PathBuf {
        self.opts.dir.join(format!("node{n}.qmp"))
    }

    fn mac(&self, n: usize) -> &str {
        &self.opts.topology.nodes[n - 1].mac
    }

    /// The host port forwarded to node `n`'s API, if it has one.
    pub fn api_port(&self, n: usize) -> Option<u16> {
        self.setup(n).api_port
    }

    /// Node `n`'s setup.
    pub fn setup(&self, n: usize) -> NodeSetup {
        self.opts.setups.get(n - 1).cloned().unwrap_or_default()
    }

    /// Changes node `n`'s setup for its next boot.
    pub fn set_setup(&mut self, n: usize, setup: NodeSetup) -> anyhow::Result<()> {
        self.check(n)?;
        if self.opts.setups.len() < n {
            self.opts.setups.resize(n, NodeSetup::default());
        }
        self.opts.setups[n - 1] = setup;
        Ok(())
    }

    /// How many times node `n` has been booted (1 after the first).
    pub fn boot_count(&self, n: usize) -> usize {
        self.boots[n - 1]
    }

    /// Boots node `n` (a new QEMU; its console log starts over, the old
    /// one is kept in [`Cluster::earlier`]).
    pub fn boot(&mut self, n: usize) -> anyhow::Result<()> {
        self.check(n)?;
        let node = &self.opts.topology.nodes[n - 1];
        let setup = self.setup(n);
        if let Some(old) = self.vms[n - 1].take() {
            let _ = old.kill();
            let name = format!("node{n} boot {}", self.boots[n - 1]);
            let log = old.serial_log();
            // Kept on disk too, beside the console that starts over: what
            // a node said before a power-off is what explains a failover.
            let kept = self.opts.dir.join(format!(
                "{}.boot{}.console.log",
                node.hostname,
                self.boots[n - 1]
            ));
            let _ = std::fs::write(kept, &log);
            self.earlier.push((name, log));
        }
        let mut append = format!("{APPEND} {} {}", self.opts.append, setup.append);
        let mut drives = Vec::new();
        match &setup.config {
            Some(NodeConfig::Disk(yaml)) => {
                let disk = config_disk(
                    &self.opts.dir,
                    &format!("{}.config.img", node.hostname),
                    yaml,
                )?;
                drives.push(Drive::new(disk).with_serial("keel-config"));
            }
            Some(NodeConfig::Inline(yaml)) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(yaml);
                append += &format!(" keel.config.inline={b64}");
            }
            None => {}
        }
        drives.extend(setup.drives);
        if self.opts.image == Image::Floor {
            append += " ";
            append += &self.opts.topology.floor_params(node);
        }
        let mut cfg = VmConfig::boot(
            self.opts.build.join("vmlinux"),
            setup
                .initrd
                .clone()
                .unwrap_or_else(|| self.opts.build.join(self.opts.image.initrd())),
            append.split_whitespace().collect::<Vec<_>>().join(" "),
            self.console_path(n),
        );
        cfg.accel = self.accel;
        cfg.memory_mib = self.opts.memory_mib;
        cfg.qmp_socket = Some(self.qmp_path(n));
        cfg.nics = vec![Nic::dgram_unix(
            "n0",
            self.switch.vm_path(n - 1),
            self.switch.port_path(n - 1),
        )
        .with_mac(self.mac(n))];
        cfg.nics.extend(setup.extra_nics);
        cfg.drives = drives;
        // A guest reboot ends QEMU, so `restart` is always a fresh boot and
        // a node that reboots by itself shows as off.
        cfg.no_reboot = true;
        let vm = cfg.spawn().with_context(|| format!("boot node{n}"))?;
        self.vms[n - 1] = Some(vm);
        self.boots[n - 1] += 1;
        Ok(())
    }

    /// Node `n`'s QEMU of its current boot, running or not.
    pub fn node_vm(&self, n: usize) -> Option<&Vm> {
        self.vms.get(n.wrapping_sub(1))?.as_ref()
    }

    fn check(&self, n: usize) -> anyhow::Result<()> {
        if n == 0 || n > self.vms.len() {
            bail!("no node {n} (nodes are 1 to {})", self.vms.len());
        }
        Ok(())
    }

    fn vm(&self, n: usize) -> anyhow::Result<&Vm> {
        self.check(n)?;
        match &self.vms[n - 1] {
            Some(vm) if matches!(vm.try_wait(), Ok(None)) => Ok(vm),
            _ => bail!("node{n} is not running"),
        }
    }

    pub fn running(&self, n: usize) -> bool {
        self.vm(n).is_ok()
    }

    /// Node `n`'s state from its console (and whether QEMU still runs).
    pub fn status(&self, n: usize) -> NodeStatus {
        let text = std::fs::read(self.console_path(n))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut s = NodeStatus::parse(&text);
        if !self.running(n) {
            // What the console said last no longer holds.
            if s.phase != "off" {
                s.phase = "stopped".into();
            }
            s.etcd = "-".into();
            s.vip = "-".into();
            s.configured = false;
        }
        s
    }

    /// Presses node `n`'s power button (graceful: VIP resigned, etcd
    /// stopped, filesystems synced).
    pub fn power_off(&self, n: usize) -> anyhow::Result<()> {
        let mut q = self.vm(n)?.qmp(Duration::from_secs(10))?;
        q.system_powerdown()?;
        Ok(())
    }

    /// Ends node `n`'s QEMU at once (a crash or power cut).
    pub fn kill(&self, n: usize) -> anyhow::Result<()> {
        let mut q = self.vm(n)?.qmp(Duration::from_secs(10))?;
        q.quit()?;
        Ok(())
    }

    /// Sets node `n`'s NIC's link down (cable pulled) or up.
    pub fn set_link(&self, n: usize, up: bool) -> anyhow::Result<()> {
        let mut q = self.vm(n)?.qmp(Duration::from_secs(10))?;
        q.set_link("n0", up)?;
        Ok(())
    }

    /// Freezes node `n` (QMP `stop`: its CPUs and clocks stand still, as
    /// in a paused VM or a live migration) or lets it run on (`cont`).
    pub fn freeze(&self, n: usize, frozen: bool) -> anyhow::Result<()> {
        let mut q = self.vm(n)?.qmp(Duration::from_secs(10))?;
        q.execute(if frozen { "stop" } else { "cont" }, None)?;
        Ok(())
    }

    /// Throttles node `n`'s disk with serial `serial` to `iops` operations
    /// a second (a failing or saturated disk: etcd's fsyncs stall), or
    /// lifts the limit with `None`. QMP `block_set_io_throttle` on the
    /// drive's block backend (`-drive id=dN`: QEMU 7.2 still takes the
    /// backend name as `device`).
    pub fn throttle_disk(&self, n: usize, serial: &str, iops: Option<u64>) -> anyhow::Result<()> {
        let setup = self.setup(n);
        let before = usize::from(matches!(setup.config, Some(NodeConfig::Disk(_))));
        let index = setup
            .drives
            .iter()
            .position(|d| d.serial.as_deref() == Some(serial))
            .with_context(|| format!("node{n} has no disk with serial {serial}"))?;
        let mut q = self.vm(n)?.qmp(Duration::from_secs(10))?;
        q.block_set_io_throttle(&format!("d{}", before + index), iops.unwrap_or(0))?;
        Ok(())
    }

    /// Powers node `n` off gracefully if it runs, then boots it again.
    pub fn restart(&mut self, n: usize) -> anyhow::Result<()> {
        if self.running(n) {
            self.power_off(n)?;
            if let Some(vm) = &self.vms[n - 1] {
                if vm.wait_exit(POWER_OFF_TIMEOUT).is_err() {
                    let _ = vm.kill();
                }
            }
        }
        self.boot(n)
    }

    /// The MACs answering an ARP probe for `ip` within `wait`, sorted.
    pub fn who_has(&self, ip: Ipv4Addr, wait: Duration) -> Vec<MacAddr> {
        WhoHas::new(ip, wait).macs(&self.switch)
    }

    /// The node with MAC `mac`.
    pub fn node_of(&self, mac: MacAddr) -> Option<usize> {
        self.opts
            .topology
            .nodes
            .iter()
            .find(|n| n.mac.parse::<MacAddr>().is_ok_and(|m| m == mac))
            .map(|n| n.index)
    }

    /// Powers every running node off gracefully (in parallel), waits up to
    /// [`POWER_OFF_TIMEOUT`], kills what is left, and removes the run
    /// directory's sockets (console logs stay).
    pub fn shutdown(&mut self) {
        for n in 1..=self.vms.len() {
            let _ = self.power_off(n);
        }
        let end = Instant::now() + POWER_OFF_TIMEOUT;
        for vm in self.vms.iter().flatten() {
            let left = end.saturating_duration_since(Instant::now());
            if vm.wait_exit(left).is_err() {
                let _ = vm.kill();
            }
        }
        self.vms.iter_mut().for_each(|v| *v = None);
        for n in 1..=self.vms.len() {
            let _ = std::fs::remove_file(self.qmp_path(n));
        }
        let _ = remove_sockets(&self.opts.dir.join("l2"));
    }
}

/// A port on 127.0.0.1 nobody listens on now (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn remove_sockets(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_socket()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for vm in self.vms.iter().flatten() {
            let _ = vm.kill();
        }
    }
}
