//! The running nodes: one QEMU each on a shared switch, and what an operator
//! can do to them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_qemu::{Accel, Drive, Nic, Vm, VmConfig};
use keel_switch::{MacAddr, Switch};

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
    /// The machine config template (`examples/cluster.yaml.tmpl`; unused
    /// by the floor).
    pub template: String,
    pub accel: Accel,
    /// Per VM; etcd needs ~160 MB of tmpfs for its WAL (QEMU-NOTES).
    pub memory_mib: u32,
    /// Extra kernel parameters.
    pub append: String,
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
    disks: Vec<PathBuf>,
    /// What `Accel::Auto` resolved to, and why.
    pub accel: Accel,
    pub accel_note: Option<String>,
}

impl Cluster {
    /// Renders every node's config disk, starts the switch and boots every
    /// node.
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
        // The floor takes everything from kernel parameters: no disks.
        let mut disks = Vec::new();
        if opts.image == Image::Keel {
            for node in &opts.topology.nodes {
                let yaml = render(&opts.template, &opts.topology, node)?;
                disks.push(config_disk(
                    &opts.dir,
                    &format!("{}.config.img", node.hostname),
                    &yaml,
                )?);
            }
        }
        let resolved = keel_qemu::accel::resolve(opts.accel, Some(&kernel));
        let switch = Switch::start(opts.dir.join("l2"), opts.topology.nodes.len())
            .context("start the switch")?;
        let mut c = Cluster {
            vms: (0..opts.topology.nodes.len()).map(|_| None).collect(),
            opts,
            switch,
            disks,
            accel: resolved.accel,
            accel_note: resolved.note,
        };
        for n in 1..=c.vms.len() {
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

    /// Boots node `n` (a new QEMU; its console log starts over).
    pub fn boot(&mut self, n: usize) -> anyhow::Result<()> {
        self.check(n)?;
        let mut append = format!("{APPEND} {}", self.opts.append);
        if self.opts.image == Image::Floor {
            append += " ";
            append += &self
                .opts
                .topology
                .floor_params(&self.opts.topology.nodes[n - 1]);
        }
        let mut cfg = VmConfig::boot(
            self.opts.build.join("vmlinux"),
            self.opts.build.join(self.opts.image.initrd()),
            append.trim_end(),
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
        if let Some(disk) = self.disks.get(n - 1) {
            cfg.drives = vec![Drive::new(disk).with_serial("keel-config")];
        }
        // A guest reboot ends QEMU, so `restart` is always a fresh boot and
        // a node that reboots by itself shows as off.
        cfg.no_reboot = true;
        let vm = cfg.spawn().with_context(|| format!("boot node{n}"))?;
        self.vms[n - 1] = Some(vm);
        Ok(())
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

    /// The MACs answering an ARP probe for `ip` within `wait`, sorted
    /// (the switch's own probe, [`Switch::who_has`]).
    pub fn who_has(&self, ip: Ipv4Addr, wait: Duration) -> Vec<MacAddr> {
        let mut macs: Vec<MacAddr> = self
            .switch
            .who_has(ip, wait)
            .into_iter()
            .map(|(mac, _)| mac)
            .collect();
        macs.sort();
        macs.dedup();
        macs
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
