//! A minimal writer for the cpio "newc" (SVR4, no CRC) format, the only
//! format the kernel's initramfs unpacker reads.
//!
//! Why our own writer instead of a crate or `cpio -o`: reproducibility lives
//! entirely in the header fields. Every byte here is decided by the caller:
//! entry order, inode numbers (sequential, starting at 1), mtime (fixed),
//! owner (0:0), nlink, device numbers. Tools and crates fill those from
//! `stat()` of the build host (inode numbers, mtimes, the builder's uid) and
//! would make two builds of the same inputs differ. The format is small
//! enough (a 110-byte ASCII header, the NUL-terminated name, 4-byte padding)
//! that owning it costs less than auditing a dependency for those details.

use std::io::{self, Read, Write};

/// Magic of the newc format ("new ASCII", no checksum).
pub const MAGIC: &[u8; 6] = b"070701";
/// Name of the end-of-archive marker entry.
pub const TRAILER: &str = "TRAILER!!!";
/// Length of the fixed header: magic plus 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;

pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio entry {name}: write failed")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cpio entry {name}: {size} bytes does not fit newc's 32-bit size field")]
    TooLarge { name: String, size: u64 },
    #[error("cpio entry {name}: expected {expected} bytes of data, the source gave {got}")]
    ShortData {
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("cpio entry name {name:?} is empty, absolute or contains NUL")]
    BadName { name: String },
}

/// The header fields of one entry; everything not here is always zero
/// (uid, gid, the device the file lives on, the checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl Header<'_> {
    /// Encodes the header, the name, its NUL and the padding that brings the
    /// data to a 4-byte boundary.
    pub fn encode(&self) -> Vec<u8> {
        let namesize = self.name.len() + 1;
        let mut out = Vec::with_capacity(HEADER_LEN + namesize + 3);
        out.extend_from_slice(MAGIC);
        let fields = [
            self.ino,
            self.mode,
            0, // uid: everything in the image belongs to root
            0, // gid
            self.nlink,
            self.mtime,
            self.filesize,
            0, // devmajor of the filesystem the entry came from: meaningless here
            0, // devminor
            self.rdev_major,
            self.rdev_minor,
            u32::try_from(namesize).expect("a path name under 4 GiB"),
            0, // check: only used by the "070702" CRC variant
        ];
        for field in fields {
            out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        out.extend_from_slice(self.name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }
}

/// Streams entries into `inner`. Inode numbers are handed out sequentially
/// so they depend only on entry order.
pub struct Writer<W: Write> {
    inner: W,
    mtime: u32,
    next_ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W, mtime: u32) -> Self {
        Writer {
            inner,
            mtime,
            next_ino: 1,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        // nlink 2 like a fresh directory ("." and the parent's entry); the
        // kernel ignores it for directories, but cpio -t shows it.
        self.entry(name, S_IFDIR | perm, 2, 0, (0, 0))?;
        Ok(())
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        let size = self.size32(name, target.len() as u64)?;
        self.entry(name, S_IFLNK | 0o777, 1, size, (0, 0))?;
        self.data(name, target.as_bytes())
    }

    pub fn char_dev(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, S_IFCHR | perm, 1, 0, (major, minor))
    }

    /// A regular file of exactly `size` bytes read from `data`. nlink is 1:
    /// the kernel treats entries with nlink >= 2 as hard links to be
    /// matched by inode number.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), CpioError> {
        let size32 = self.size32(name, size)?;
        self.entry(name, S_IFREG | perm, 1, size32, (0, 0))?;
        let got =
            io::copy(&mut data.take(size), &mut self.inner).map_err(|source| CpioError::Io {
                name: name.to_owned(),
                source,
            })?;
        self.written += got;
        if got != size {
            return Err(CpioError::ShortData {
                name: name.to_owned(),
                expected: size,
                got,
            });
        }
        self.pad(name)
    }

    /// Writes the trailer and pads the archive to a 512-byte boundary the
    /// way cpio(1) does (the kernel does not need it; it keeps the output
    /// identical to what the standard tool would emit).
    /// Returns the inner writer and the archive's total size.
    pub fn finish(mut self) -> Result<(W, u64), CpioError> {
        let header = Header {
            name: TRAILER,
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.raw(TRAILER, &header.encode())?;
        let padded = self.written.next_multiple_of(512);
        let zeros = vec![0u8; usize::try_from(padded - self.written).expect("under 512")];
        self.raw(TRAILER, &zeros)?;
        Ok((self.inner, self.written))
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        filesize: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> Result<(), CpioError> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') || name == TRAILER {
            return Err(CpioError::BadName {
                name: name.to_owned(),
            });
        }
        let header = Header {
            name,
            ino: self.next_ino,
            mode,
            nlink,
            mtime: self.mtime,
            filesize,
            rdev_major,
            rdev_minor,
        };
        self.next_ino += 1;
        self.raw(name, &header.encode())
    }

    fn data(&mut self, name: &str, bytes: &[u8]) -> Result<(), CpioError> {
        self.raw(name, bytes)?;
        self.pad(name)
    }

    fn pad(&mut self, name: &str) -> Result<(), CpioError> {
        let padding =
            usize::try_from(self.written.next_multiple_of(4) - self.written).expect("under 4");
        self.raw(name, &[0u8; 3][..padding])
    }

    fn raw(&mut self, name: &str, bytes: &[u8]) -> Result<(), CpioError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| CpioError::Io {
                name: name.to_owned(),
                source,
            })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn size32(&self, name: &str, size: u64) -> Result<u32, CpioError> {
        u32::try_from(size).map_err(|_| CpioError::TooLarge {
            name: name.to_owned(),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known-good header, field by field (see `matches_gnu_cpio` for the
    /// same bytes produced by the real tool).
    #[test]
    fn header_layout_matches_newc() {
        let header = Header {
            name: "a/b",
            ino: 1,
            mode: S_IFREG | 0o644,
            nlink: 1,
            mtime: 0,
            filesize: 5,
            rdev_major: 0,
            rdev_minor: 0,
        };
        let expected = concat!(
            "070701",   // magic
            "00000001", // ino
            "000081A4", // mode: regular file, 0644
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000005", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000004", // namesize, NUL included
            "00000000", // check
            "a/b\0",    // 110 + 4 = 114: not a multiple of 4, so 2 NULs follow
            "\0\0",
        );
        assert_eq!(header.encode(), expected.as_bytes());
    }

    #[test]
    fn entries_are_padded_and_numbered() {
        let mut w = Writer::new(Vec::new(), 7);
        w.dir("d", 0o755).unwrap();
        w.file("d/f", 0o600, 3, &mut &b"xyz"[..]).unwrap();
        w.symlink("d/l", "f").unwrap();
        w.char_dev("d/c", 0o600, 5, 1).unwrap();
        let (out, len) = w.finish().unwrap();
        assert_eq!(len, out.len() as u64);
        assert_eq!(out.len() % 512, 0);
        let text = String::from_utf8_lossy(&out);
        // Four entries plus the trailer, inodes 1..=4 in order.
        assert_eq!(text.matches("070701").count(), 5);
        for (ino, name) in [(1, "d\0"), (2, "d/f\0"), (3, "d/l\0"), (4, "d/c\0")] {
            let pos = text.find(name).unwrap();
            let header = &text[pos - HEADER_LEN..pos];
            assert_eq!(&header[6..14], format!("{ino:08X}"), "{name}");
            assert_eq!(&header[46..54], "00000007", "mtime of {name}");
        }
        assert!(text.contains("xyz\0"));
        // The char device: rdevmajor 5, rdevminor 1.
        let pos = text.find("d/c\0").unwrap();
        let header = &text[pos - HEADER_LEN..pos];
        assert_eq!(&header[78..94], "0000000500000001");
    }

    #[test]
    fn short_source_is_an_error() {
        let mut w = Writer::new(Vec::new(), 0);
        let err = w.file("f", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
        assert!(matches!(err, CpioError::ShortData { got: 3, .. }), "{err}");
    }

    #[test]
    fn bad_names_are_rejected() {
        let mut w = Writer::new(Vec::new(), 0);
        for name in ["", "/abs", "TRAILER!!!"] {
            assert!(w.dir(name, 0o755).is_err(), "{name:?}");
        }
    }

    fn have_cpio() -> bool {
        std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_ok()
    }

    /// Byte-for-byte comparison with GNU cpio for one file (`--reproducible`
    /// zeroes the device numbers; GNU numbers inodes from 0, we from 1, so
    /// the first header's inode field is masked).
    #[test]
    fn matches_gnu_cpio() {
        use std::os::unix::fs::PermissionsExt;
        if !have_cpio() {
            eprintln!("cpio(1) not installed: skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let file = dir.path().join("a/b");
        std::fs::write(&file, b"hello").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        let mut child = std::process::Command::new("cpio")
            .args([
                "-o",
                "-H",
                "newc",
                "--owner",
                "0:0",
                "--reproducible",
                "--quiet",
            ])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"a/b\n").unwrap();
        let mut gnu = child.wait_with_output().unwrap().stdout;

        let mut w = Writer::new(Vec::new(), 0);
        w.file("a/b", 0o644, 5, &mut &b"hello"[..]).unwrap();
        let (mut ours, _) = w.finish().unwrap();

        gnu[6..14].copy_from_slice(b"00000000");
        ours[6..14].copy_from_slice(b"00000000");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&gnu)
        );
    }

    /// GNU cpio parses our archive back with the same names, types, modes,
    /// owners and link targets.
    #[test]
    fn gnu_cpio_lists_our_archive() {
        if !have_cpio() {
            eprintln!("cpio(1) not installed: skipping");
            return;
        }
        let mut w = Writer::new(Vec::new(), 0);
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, 4, &mut &b"\x7fELF"[..]).unwrap();
        w.dir("sbin", 0o755).unwrap();
        w.symlink("sbin/modprobe", "/init").unwrap();
        let (archive, _) = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-itv", "--quiet"])
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<Vec<&str>> = listing
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let summary: Vec<String> = lines
            .iter()
            .map(|f| {
                // A device shows "major, minor" where others show the size.
                let name_at = if f[0].starts_with('c') { 9 } else { 8 };
                format!("{} {} {} {}", f[0], f[2], f[3], f[name_at..].join(" "))
            })
            .collect();
        assert_eq!(
            summary,
            [
                "drwxr-xr-x root root dev",
                "crw------- root root dev/console",
                "-rwxr-xr-x root root init",
                "drwxr-xr-x root root sbin",
                "lrwxrwxrwx root root sbin/modprobe -> /init",
            ]
        );
    }
}
