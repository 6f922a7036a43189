//! zstd compression of the archive, for PXE where size matters (QEMU tests
//! boot the uncompressed archive: decompression costs ~0.4 s under TCG).

use std::io::Write;

#[derive(Debug, thiserror::Error)]
#[error("zstd compression (level {level}) failed")]
pub struct CompressError {
    pub level: i32,
    #[source]
    pub source: std::io::Error,
}

/// zstd worker threads. A constant on purpose: the frame layout of
/// multi-threaded zstd follows its job size, and keeping every parameter
/// fixed (instead of following the host's core count) keeps the output a
/// function of the input and the level alone.
const WORKERS: u32 = 2;

/// Compresses `data` into one zstd frame with the content size and a
/// checksum in it (what `zstd -19` writes, and what the kernel's unzstd
/// reads when CONFIG_RD_ZSTD is set).
pub fn zstd(data: &[u8], level: i32) -> Result<Vec<u8>, CompressError> {
    let err = |source| CompressError { level, source };
    let mut encoder =
        zstd::stream::Encoder::new(Vec::with_capacity(data.len() / 3), level).map_err(err)?;
    encoder.multithread(WORKERS).map_err(err)?;
    encoder.include_checksum(true).map_err(err)?;
    encoder.include_contentsize(true).map_err(err)?;
    encoder
        .set_pledged_src_size(Some(data.len() as u64))
        .map_err(err)?;
    encoder.write_all(data).map_err(err)?;
    encoder.finish().map_err(err)
}

/// What a compressed archive was made from: the level, the input's size
/// and its FNV-1a 64 hash, and the output's size. Written next to the
/// archive after it, so a rebuild whose archive is unchanged skips the
/// ~16 s of zstd -19 (`make run` rebuilds the image every time), and a
/// truncated or replaced output (its size no longer matches) is redone.
/// FNV rather than a cryptographic hash: this guards against stale
/// builds, not against an adversary, and needs no dependency.
pub fn stamp(input: &[u8], level: i32, output_len: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(
        "zstd level {level} of {} bytes, fnv1a-64 {h:016x}: {output_len} bytes\n",
        input.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_with_every_input() {
        let base = stamp(b"abc", 19, 10);
        // FNV-1a 64 of "abc" (reference value from the FNV test vectors).
        assert!(base.contains("e71fa2190541574b"), "{base}");
        for other in [
            stamp(b"abd", 19, 10),
            stamp(b"abc", 3, 10),
            stamp(b"abc", 19, 11),
            stamp(b"abcd", 19, 10),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn reproducible_and_round_trips() {
        // Several MB so that more than one multi-threaded job is involved.
        let data: Vec<u8> = (0..6_000_000u32)
            .map(|i| u8::try_from(i % 251).unwrap() ^ (i >> 13).to_le_bytes()[0])
            .collect();
        let a = zstd(&data, 3).unwrap();
        let b = zstd(&data, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(zstd::stream::decode_all(&a[..]).unwrap(), data);
        assert!(a.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]), "zstd frame magic");
    }
}
