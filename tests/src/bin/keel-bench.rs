//! `make bench`: boots the image N times under QEMU and prints the median
//! boot phase times read off the console's kernel timestamps, the sizes of
//! the artifacts, and PID 1's RSS at `ready`. A benchmark, not a test: it
//! prints numbers and asserts nothing about them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_tests::console::{boot_marks, median};

fn main() -> anyhow::Result<()> {
    let mut runs = 5usize;
    let mut build: Option<PathBuf> = None;
    let mut net = false;
    let mut show = false;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("runs") | Short('n') => runs = parser.value()?.parse()?,
            Long("build") => build = Some(parser.value()?.into()),
            Long("net") => net = true,
            Long("show") => show = true,
            Long("help") | Short('h') => {
                println!("usage: keel-bench [--build DIR] [--runs N] [--net]");
                println!("  --net  network benchmark: /init → all links configured");
                println!("  --show print the Keel console lines of the last run");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(b) = build {
        std::env::set_var("KEEL_BUILD", b);
    }
    let build = keel_tests::build_dir();
    if net {
        return net_bench(runs, show);
    }

    let mut to_init = Vec::new();
    let mut to_modules = Vec::new();
    let mut to_ready = Vec::new();
    let mut init_to_ready = Vec::new();
    let mut wall = Vec::new();
    let mut rss = Vec::new();
    for i in 1..=runs {
        let start = Instant::now();
        let (_dir, vm) = keel_tests::boot_vm("keel.config=none");
        vm.wait_for_line("keel: ready in", keel_tests::BOOT_TIMEOUT)
            .with_context(|| format!("run {i}: boot did not reach ready"))?;
        let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
        let log = vm.serial_log();
        let m = boot_marks(&log).with_context(|| format!("run {i}: console lacks timestamps"))?;
        eprintln!(
            "run {i}: kernel→/init {:.0} ms, →modules {:.0} ms, →ready {:.0} ms, QEMU start→ready {wall_ms:.0} ms, RSS {} kB",
            m.init_ms, m.modules_ms, m.ready_ms, m.rss_kb
        );
        to_init.push(m.init_ms);
        to_modules.push(m.modules_ms);
        to_ready.push(m.ready_ms);
        init_to_ready.push(m.ready_ms - m.init_ms);
        wall.push(wall_ms);
        rss.push(m.rss_kb as f64);
        let _ = vm
            .qmp(Duration::from_secs(5))
            .and_then(|mut q| q.quit().map_err(Into::into));
        let _ = vm.wait_exit(Duration::from_secs(10));
    }

    let size = |p: PathBuf| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    let init = keel_tests::init_binary();
    println!("keel boot benchmark: {runs} runs, TCG, medians");
    println!(
        "  kernel start → /init          {:>8.0} ms",
        median(&mut to_init)
    );
    println!(
        "  kernel start → modules loaded {:>8.0} ms",
        median(&mut to_modules)
    );
    println!(
        "  kernel start → ready          {:>8.0} ms",
        median(&mut to_ready)
    );
    println!(
        "  /init → ready                 {:>8.0} ms",
        median(&mut init_to_ready)
    );
    println!(
        "  QEMU start → ready (wall)     {:>8.0} ms",
        median(&mut wall)
    );
    println!(
        "  PID 1 RSS at ready            {:>8.0} kB",
        median(&mut rss)
    );
    println!("  init binary                   {:>8} bytes", size(init));
    for (label, file) in [
        ("initramfs (none)", "initramfs.cpio"),
        ("initramfs (zstd)", "initramfs.cpio.zst"),
        ("vmlinux", "vmlinux"),
        ("vmlinuz", "vmlinuz"),
    ] {
        println!("  {label:<29} {:>8} bytes", size(build.join(file)));
    }
    Ok(())
}

/// Two NICs, static addresses, a route and a VLAN: no DHCP, so the number
/// is Keel's own work, not a server's reply time.
const NET_CONFIG: &str = "version: v1alpha1
machine:
  type: worker
  network:
    hostname: bench
    nameservers: [10.0.2.3]
    interfaces:
      - interface: enp0s1
        addresses: [10.0.2.15/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 10.0.2.2
      - deviceSelector:
          hardwareAddr: \"52:54:00:12:34:0b\"
        addresses: [192.168.50.10/24]
        mtu: 1400
        vlans:
          - vlanId: 7
            addresses: [192.168.57.10/24]
";

fn net_bench(runs: usize, show: bool) -> anyhow::Result<()> {
    use base64::Engine;
    let inline = base64::engine::general_purpose::STANDARD.encode(NET_CONFIG);
    let mut links = Vec::new();
    let mut without_modules = Vec::new();
    let mut modules = Vec::new();
    for i in 1..=runs {
        let (_dir, vm) = keel_tests::boot_vm_with(&format!("keel.config.inline={inline}"), |c| {
            c.nics = vec![
                keel_qemu::Nic::user("n0").with_mac("52:54:00:12:34:0a"),
                keel_qemu::Nic::user("n1").with_mac("52:54:00:12:34:0b"),
            ];
        });
        vm.wait_for_line(
            "network: all links configured for the machine config",
            keel_tests::BOOT_TIMEOUT,
        )
        .with_context(|| format!("run {i}: links never configured"))?;
        let log = vm.serial_log();
        let m = keel_tests::console::net_marks(&log)
            .with_context(|| format!("run {i}: console lacks the network marks"))?;
        eprintln!(
            "run {i}: links phase {:.0} ms, /init → configured without modules {:.0} ms (modules phase {:.0} ms)",
            m.links_phase_ms,
            m.init_to_configured_without_modules(),
            m.modules_phase_ms
        );
        if show && i == runs {
            for l in log
                .lines()
                .filter(|l| l.contains("keel") || l.contains("Run /init"))
            {
                eprintln!("{l}");
            }
        }
        links.push(m.links_phase_ms);
        without_modules.push(m.init_to_configured_without_modules());
        modules.push(m.modules_phase_ms);
        let _ = vm
            .qmp(Duration::from_secs(5))
            .and_then(|mut q| q.quit().map_err(Into::into));
        let _ = vm.wait_exit(Duration::from_secs(10));
    }
    println!("keel network benchmark: {runs} runs, TCG, 2 NICs + VLAN, static, medians");
    println!(
        "  /init → all links configured, without the modules phase {:>6.0} ms",
        median(&mut without_modules)
    );
    println!(
        "  links phase (naming, altnames, pre-config plan)         {:>6.0} ms",
        median(&mut links)
    );
    println!(
        "  modules phase (excluded above)                          {:>6.0} ms",
        median(&mut modules)
    );
    Ok(())
}
