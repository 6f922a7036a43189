//! The iPXE script written next to `vmlinuz` and `initramfs.cpio.zst`, so
//! the three files served from one TFTP or HTTP directory PXE-boot a node.

/// `boot.ipxe`. Relative names load from wherever iPXE fetched the script.
/// `${net0/mac}` is expanded by iPXE itself (the MAC of the NIC that
/// booted, as `52:54:00:12:34:56`), so every server fetches its own config.
/// Keel's own `${mac}` placeholder cannot be passed through an iPXE script:
/// iPXE expands every `${…}` on the kernel line before the kernel sees it
/// (its `${mac}` is the same as `${net0/mac}` here).
pub const BOOT_IPXE: &str = "#!ipxe
# Keel PXE boot script, written by `make image` next to vmlinuz and
# initramfs.cpio.zst: serve the three files from one TFTP or HTTP directory.
#
# keel-config is the base URL of the per-node machine configs, one file per
# NIC MAC (52:54:00:12:34:56.yaml). Set it before chaining this script (for
# example in your iPXE menu: set keel-config http://10.0.0.1/keel) or edit
# the default below.
isset ${keel-config} || set keel-config http://${next-server}:8080
kernel vmlinuz console=tty0 console=ttyS0,115200 printk_devkmsg=on keel.config=${keel-config}/${net0/mac}.yaml
initrd initramfs.cpio.zst
boot
";

/// The default config base URL in [`BOOT_IPXE`], for tools that rewrite it.
pub const DEFAULT_CONFIG_BASE: &str = "http://${next-server}:8080";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script() {
        assert!(BOOT_IPXE.starts_with("#!ipxe\n"));
        assert!(BOOT_IPXE.contains(&format!("set keel-config {DEFAULT_CONFIG_BASE}\n")));
        let kernel = BOOT_IPXE
            .lines()
            .find(|l| l.starts_with("kernel "))
            .unwrap();
        assert!(kernel.contains("keel.config=${keel-config}/${net0/mac}.yaml"));
        assert!(BOOT_IPXE.contains("\ninitrd initramfs.cpio.zst\nboot\n"));
    }
}
