//! The human-readable summary printed after a build: where the bytes go,
//! so growth of the image (a module pulling in a large closure, a bigger
//! etcd) is visible at every build.

use std::fmt::Write;

use crate::assemble::Report;
use crate::tree::Category;

/// `12345678` → `12,345,678`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The size table, then notes (built-in modules skipped, unresolved
/// softdeps), then the files written and the time spent.
pub fn render(report: &Report) -> String {
    let sizes = &report.sizes;
    let cat = |c| sizes.by_category.get(&c).copied().unwrap_or(0);
    let (init, modules, etcd, tools) = (
        cat(Category::Init),
        cat(Category::Modules),
        cat(Category::Etcd),
        cat(Category::Tools),
    );
    let other = sizes.archive - init - modules - etcd - tools;
    let mut rows = vec![
        ("init".to_string(), init),
        (
            format!("modules ({} .ko + indexes)", sizes.module_count),
            modules,
        ),
        ("etcd + libs".to_string(), etcd),
        ("mke2fs + libs not in etcd's".to_string(), tools),
        ("other (dirs, /etc, cpio headers)".to_string(), other),
        ("total uncompressed (cpio)".to_string(), sizes.archive),
    ];
    for archive in &report.archives {
        let (path, bytes) = (&archive.path, &archive.bytes);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".zst") {
            rows.push((format!("{name} (zstd)"), *bytes));
        }
    }
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel {}: {} required options present; {} modules listed, {} carried",
        report.release,
        report.options_checked,
        report.listed,
        report.closure.modules.len()
    );
    for (label, bytes) in &rows {
        let _ = writeln!(out, "  {label:<width$}  {:>12} bytes", thousands(*bytes));
    }
    if !report.closure.builtin.is_empty() {
        let _ = writeln!(
            out,
            "note: built into the kernel, nothing to carry: {}",
            report.closure.builtin.join(", ")
        );
    }
    for (module, soft) in &report.closure.unresolved_softdeps {
        let _ = writeln!(
            out,
            "note: softdep {soft} of {module} matches no module (modprobe skips it too)"
        );
    }
    for archive in &report.archives {
        let _ = writeln!(
            out,
            "{} {} ({} bytes)",
            if archive.written {
                "wrote"
            } else {
                "up to date:"
            },
            archive.path.display(),
            thousands(archive.bytes)
        );
    }
    let _ = writeln!(
        out,
        "kernel: vmlinuz {} bytes, vmlinux {} bytes ({})",
        thousands(report.kernel.vmlinuz_bytes),
        thousands(report.kernel.vmlinux_bytes),
        if report.kernel.vmlinux_extracted {
            "extracted"
        } else {
            "up to date"
        }
    );
    let timing: Vec<String> = report
        .timings
        .iter()
        .map(|(name, d)| format!("{name} {:.2}s", d.as_secs_f64()))
        .collect();
    let _ = writeln!(out, "time: {}", timing.join(", "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (12345678, "12,345,678"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }
}
