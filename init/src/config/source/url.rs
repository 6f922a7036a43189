//! Placeholders in the config URL: `${uuid}`, `${serial}`, `${mac}`,
//! `${hostname}` (the set Talos substitutes in `talos.config=`), so one
//! command line can serve a fleet and the server picks each node's config.

use std::path::Path;

use super::error::SourceError;

/// The values a URL may refer to; `None` when this machine has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// SMBIOS system UUID, lower case.
    pub uuid: Option<String>,
    /// SMBIOS system serial number.
    pub serial: Option<String>,
    /// MAC of the first physical Ethernet link by name, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    pub hostname: Option<String>,
}

/// Where each value comes from, for "has no value" errors.
const HINTS: &[(&str, &str)] = &[
    ("uuid", "read from /sys/class/dmi/id/product_uuid"),
    ("serial", "read from /sys/class/dmi/id/product_serial"),
    (
        "mac",
        "the first /sys/class/net/* link with a device and type 1",
    ),
    (
        "hostname",
        "set with keel.hostname= or by DHCP before the fetch",
    ),
];

impl Placeholders {
    /// Reads the values from sysfs. DMI files are the kernel's view of the
    /// SMBIOS System Information structure (DMTF DSP0134 §7.2), exported by
    /// drivers/firmware/dmi-id.c; `product_uuid` and `product_serial` are
    /// readable by root only, which PID 1 is.
    pub fn from_sys(sys_root: &Path, hostname: Option<&str>) -> Placeholders {
        let dmi = sys_root.join("class/dmi/id");
        Placeholders {
            uuid: read_trimmed(&dmi.join("product_uuid")).map(|s| s.to_ascii_lowercase()),
            serial: read_trimmed(&dmi.join("product_serial")),
            mac: first_physical_mac(sys_root),
            hostname: hostname
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string),
        }
    }

    fn value(&self, name: &str) -> Option<Option<&str>> {
        let v = match name {
            "uuid" => &self.uuid,
            "serial" => &self.serial,
            "mac" => &self.mac,
            "hostname" => &self.hostname,
            _ => return None,
        };
        Some(v.as_deref())
    }

    /// Replaces every `${name}` in `template`, percent-encoding each value.
    /// A `$` not followed by `{` is kept as is. Substituted text is not
    /// scanned again, so a serial number containing `${` cannot inject.
    pub fn substitute(&self, template: &str) -> Result<String, SourceError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                return Err(SourceError::BadUrl {
                    url: template.to_string(),
                    reason: format!("unterminated placeholder {:?}", &rest[at..]),
                });
            };
            let name = &after[..end];
            match self.value(name) {
                None => {
                    return Err(SourceError::UnknownPlaceholder {
                        url: template.to_string(),
                        name: name.to_string(),
                    })
                }
                Some(None) => {
                    return Err(SourceError::PlaceholderUnavailable {
                        url: template.to_string(),
                        name: name.to_string(),
                        hint: HINTS
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, h)| h.to_string())
                            .unwrap_or_default(),
                    })
                }
                Some(Some(v)) => percent_encode_into(v, &mut out),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Percent-encodes everything but RFC 3986 §2.3 unreserved characters and
/// `:` (a `pchar`, §3.3, so a MAC stays readable in a path or query). A
/// serial number may contain spaces, `/`, `?` or `#`, which would otherwise
/// change the URL's structure.
fn percent_encode_into(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A sysfs attribute, trimmed; `None` when missing, unreadable or empty.
fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The MAC of the first physical Ethernet link, by name in byte order.
///
/// Physical: `device` exists (virtual links — lo, bridges, bonds, veth,
/// dummies — have no backing device, see sysfs-class-net), and `type` is 1,
/// ARPHRD_ETHER (include/uapi/linux/if_arp.h), which excludes e.g.
/// InfiniBand. An all-zero address is skipped as not a real MAC.
pub fn first_physical_mac(sys_root: &Path) -> Option<String> {
    let net = sys_root.join("class/net");
    let mut names: Vec<String> = std::fs::read_dir(&net)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let link = net.join(&name);
        if !link.join("device").exists() {
            return None;
        }
        if read_trimmed(&link.join("type")).as_deref() != Some("1") {
            return None;
        }
        let mac = read_trimmed(&link.join("address"))?.to_ascii_lowercase();
        let valid = mac.len() == 17
            && mac
                .split(':')
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            && mac != "00:00:00:00:00:00";
        valid.then_some(mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fixture sysfs: DMI ids and four links, of which `enp2s0` is the
    /// first physical Ethernet link by name (`bond0` has no device,
    /// `enp1s0` is InfiniBand, `lo` is virtual).
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dmi = root.join("class/dmi/id");
        fs::create_dir_all(&dmi).unwrap();
        fs::write(
            dmi.join("product_uuid"),
            "4C4C4544-0042-3510-8052-B4C04F4E4D32\n",
        )
        .unwrap();
        fs::write(dmi.join("product_serial"), "SN 12/34#5\n").unwrap();
        let link = |name: &str, device: bool, ty: &str, mac: &str| {
            let d = root.join("class/net").join(name);
            fs::create_dir_all(&d).unwrap();
            if device {
                fs::create_dir_all(d.join("device")).unwrap();
            }
            fs::write(d.join("type"), format!("{ty}\n")).unwrap();
            fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        };
        link("lo", false, "772", "00:00:00:00:00:00");
        link("bond0", false, "1", "02:00:00:00:00:01");
        link(
            "enp1s0",
            true,
            "32",
            "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00",
        );
        link("enp2s0", true, "1", "52:54:00:AB:CD:EF");
        link("enp3s0", true, "1", "52:54:00:00:00:03");
        dir
    }

    #[test]
    fn from_sys_reads_fixture() {
        let dir = fixture();
        let p = Placeholders::from_sys(dir.path(), Some("node-1"));
        assert_eq!(
            p,
            Placeholders {
                uuid: Some("4c4c4544-0042-3510-8052-b4c04f4e4d32".into()),
                serial: Some("SN 12/34#5".into()),
                mac: Some("52:54:00:ab:cd:ef".into()),
                hostname: Some("node-1".into()),
            }
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Placeholders::from_sys(empty.path(), Some(" ")),
            Placeholders::default()
        );
    }

    #[test]
    fn substitution_table() {
        let dir = fixture();
        let full = Placeholders::from_sys(dir.path(), Some("cp-1"));
        let none = Placeholders::default();
        let table: &[(&Placeholders, &str, Result<&str, &str>)] = &[
            (&full, "http://c/x", Ok("http://c/x")),
            (
                &full,
                "http://c/${uuid}.yaml",
                Ok("http://c/4c4c4544-0042-3510-8052-b4c04f4e4d32.yaml"),
            ),
            (
                &full,
                "http://c/?s=${serial}",
                Ok("http://c/?s=SN%2012%2F34%235"),
            ),
            (
                &full,
                "http://c/m/${mac}",
                Ok("http://c/m/52:54:00:ab:cd:ef"),
            ),
            (&full, "http://c/${hostname}", Ok("http://c/cp-1")),
            (
                &full,
                "http://c/${hostname}/${mac}?u=${uuid}",
                Ok("http://c/cp-1/52:54:00:ab:cd:ef?u=4c4c4544-0042-3510-8052-b4c04f4e4d32"),
            ),
            (&full, "http://c/$x/${hostname}$", Ok("http://c/$x/cp-1$")),
            (
                &full,
                "http://c/${code}",
                Err("unknown placeholder ${code}"),
            ),
            (&full, "http://c/${}", Err("unknown placeholder ${}")),
            (
                &full,
                "http://c/${UUID}",
                Err("unknown placeholder ${UUID}"),
            ),
            (&full, "http://c/${uuid", Err("unterminated placeholder")),
            (
                &none,
                "http://c/${uuid}",
                Err("placeholder ${uuid} has no value"),
            ),
            (
                &none,
                "http://c/${serial}",
                Err("placeholder ${serial} has no value"),
            ),
            (
                &none,
                "http://c/${mac}",
                Err("placeholder ${mac} has no value"),
            ),
            (
                &none,
                "http://c/${hostname}",
                Err("placeholder ${hostname} has no value"),
            ),
            (&none, "http://c/plain", Ok("http://c/plain")),
        ];
        for (p, template, want) in table {
            match (p.substitute(template), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{template}"),
                (Err(e), Err(text)) => {
                    let e = e.to_string();
                    assert!(e.starts_with(template), "{template}: {e}");
                    assert!(e.contains(text), "{template}: {e}");
                }
                (got, want) => panic!("{template}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn substituted_values_are_not_rescanned() {
        let p = Placeholders {
            serial: Some("${uuid}".into()),
            ..Default::default()
        };
        assert_eq!(
            p.substitute("http://c/${serial}").unwrap(),
            "http://c/%24%7Buuid%7D"
        );
    }
}
