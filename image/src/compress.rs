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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_round_trips() {
        // Several MB so that more than one multi-threaded job is involved.
        let data: Vec<u8> = (0..6_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let a = zstd(&data, 3).unwrap();
        let b = zstd(&data, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(zstd::stream::decode_all(&a[..]).unwrap(), data);
        assert!(a.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]), "zstd frame magic");
    }
}
