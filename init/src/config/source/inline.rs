//! Config bytes as delivered → config YAML: zstd detection and decompression.
//!
//! `keel.config.inline=` carries base64 (decoded in [`super::settings`]) of
//! either plain YAML or a zstd frame; the kernel command line is short
//! (COMMAND_LINE_SIZE is 2048 on x86, 4096 on arm64), so compression
//! matters. The same detection runs on fetched and partition content: it
//! costs four byte comparisons and YAML can never start with the magic.
//!
//! zstd is decoded with ruzstd (pure Rust, so the static musl init links no
//! C library). Two limits stop a decompression bomb: the output is capped at
//! [`MAX_CONFIG_BYTES`], and a frame asking for a window larger than
//! [`MAX_WINDOW`] is refused before ruzstd allocates it (ruzstd reserves the
//! whole window up front and allows up to 100 MiB).

use std::io::Read;

use ruzstd::decoding::StreamingDecoder;

use super::error::SourceError;
use super::MAX_CONFIG_BYTES;

/// A zstd frame starts with 0xFD2FB528, little-endian (RFC 8878 §3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The largest window a frame may ask for. zstd's own levels never go above
/// 8 MiB without `--long`, and shrink the window to fit small inputs.
pub const MAX_WINDOW: u64 = 8 << 20;

/// True when `bytes` starts with a zstd frame, or a skippable frame
/// (magic 0x184D2A5?, RFC 8878 §3.1.2). Neither can start YAML: both
/// contain control bytes that YAML 1.2 §5.1 forbids.
pub fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC) || is_skippable(bytes)
}

fn is_skippable(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[0] & 0xF0 == 0x50 && bytes[1..4] == [0x2A, 0x4D, 0x18]
}

/// Returns the config YAML: `bytes` decompressed if they are zstd, else
/// as they are. `origin` names the source in errors.
pub fn decode_content(origin: &str, bytes: Vec<u8>) -> Result<Vec<u8>, SourceError> {
    let out = if is_zstd(&bytes) {
        decompress(origin, &bytes)?
    } else {
        bytes
    };
    if out.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(origin));
    }
    Ok(out)
}

fn too_large(origin: &str) -> SourceError {
    SourceError::TooLarge {
        origin: origin.to_string(),
        limit: MAX_CONFIG_BYTES,
    }
}

fn zstd_err(origin: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Zstd {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// Decodes every frame in `data` (RFC 8878 §3: a stream is a sequence of
/// frames; skippable frames, §3.1.2, are skipped).
fn decompress(origin: &str, data: &[u8]) -> Result<Vec<u8>, SourceError> {
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if is_skippable(rest) {
            let len = rest
                .get(4..8)
                .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| zstd_err(origin, "truncated skippable frame"))?;
            rest = rest
                .get(8usize.saturating_add(len)..)
                .ok_or_else(|| zstd_err(origin, "truncated skippable frame"))?;
            continue;
        }
        if !rest.starts_with(&ZSTD_MAGIC) {
            return Err(zstd_err(origin, "trailing bytes after the last frame"));
        }
        match frame_window(rest) {
            None => return Err(zstd_err(origin, "truncated frame header")),
            Some(FrameWindow::ContentSize(n)) if n > MAX_CONFIG_BYTES => {
                return Err(too_large(origin))
            }
            Some(FrameWindow::Window(w)) if w > MAX_WINDOW => {
                return Err(zstd_err(
                    origin,
                    format!("frame window of {w} bytes exceeds the {MAX_WINDOW}-byte limit"),
                ))
            }
            Some(_) => {}
        }
        let mut decoder =
            StreamingDecoder::new(&mut rest).map_err(|e| zstd_err(origin, e.to_string()))?;
        // One byte over the cap tells "exactly at the cap" from "over".
        let budget = (MAX_CONFIG_BYTES + 1).saturating_sub(out.len() as u64);
        (&mut decoder)
            .take(budget)
            .read_to_end(&mut out)
            .map_err(|e| zstd_err(origin, e.to_string()))?;
        if out.len() as u64 > MAX_CONFIG_BYTES {
            return Err(too_large(origin));
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
enum FrameWindow {
    /// Single-segment frame: the window is the declared content size.
    ContentSize(u64),
    Window(u64),
}

/// Reads the window a frame needs from its header (RFC 8878 §3.1.1.1),
/// `None` if the header is truncated.
fn frame_window(frame: &[u8]) -> Option<FrameWindow> {
    let fhd = *frame.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        // §3.1.1.1.2: Window_Descriptor follows the descriptor byte.
        let wd = *frame.get(5)?;
        let window_log = 10 + u64::from(wd >> 3);
        let base = 1u64 << window_log;
        let window = base + (base / 8) * u64::from(wd & 7);
        return Some(FrameWindow::Window(window));
    }
    // §3.1.1.1.3 and .4: Dictionary_ID then Frame_Content_Size.
    let did_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let start = 5 + did_len;
    let field = frame.get(start..start + fcs_len)?;
    let mut le = [0u8; 8];
    le[..fcs_len].copy_from_slice(field);
    let mut size = u64::from_le_bytes(le);
    if fcs_len == 2 {
        size += 256;
    }
    Some(FrameWindow::ContentSize(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::settings::decode_base64;
    use base64::Engine as _;
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};

    const YAML: &[u8] = b"version: v1alpha1\nmachine:\n  type: controlplane\n";

    fn zstd(data: &[u8]) -> Vec<u8> {
        compress_to_vec(data, CompressionLevel::Fastest)
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    /// base64 text → decoded YAML, or the error text.
    fn pipeline(text: &str) -> Result<Vec<u8>, String> {
        let raw = decode_base64("keel.config.inline", text).map_err(|e| e.to_string())?;
        decode_content("keel.config.inline", raw).map_err(|e| e.to_string())
    }

    #[test]
    fn detection_table() {
        let plain = b64(YAML);
        let unpadded = plain.trim_end_matches('=').to_string();
        let wrapped: String = plain
            .as_bytes()
            .chunks(8)
            .map(|c| format!("{}\n ", String::from_utf8_lossy(c)))
            .collect();
        let compressed = b64(&zstd(YAML));
        let two_frames = b64(&[zstd(b"a: 1\n"), zstd(b"b: 2\n")].concat());
        let mut skippable = vec![0x5A, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9];
        skippable.extend(zstd(YAML));
        let skippable = b64(&skippable);
        let truncated = {
            let z = zstd(YAML);
            b64(&z[..z.len() - 3])
        };
        let trailing = b64(&[zstd(YAML), b"xyz".to_vec()].concat());
        let header_only = b64(&ZSTD_MAGIC);
        type Case<'a> = (&'a str, &'a str, Result<&'a [u8], &'a str>);
        let table: Vec<Case> = vec![
            ("plain", &plain, Ok(YAML)),
            ("unpadded", &unpadded, Ok(YAML)),
            ("wrapped", &wrapped, Ok(YAML)),
            ("zstd", &compressed, Ok(YAML)),
            ("two frames", &two_frames, Ok(b"a: 1\nb: 2\n")),
            ("skippable frame", &skippable, Ok(YAML)),
            ("bad base64", "not*base64", Err("not valid base64")),
            ("empty", " ", Err("the value is empty")),
            (
                "truncated zstd",
                &truncated,
                Err("zstd data does not decompress"),
            ),
            ("trailing junk", &trailing, Err("trailing bytes")),
            ("header only", &header_only, Err("truncated frame header")),
        ];
        for (name, input, want) in table {
            match (pipeline(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(e), Err(text)) => {
                    assert!(
                        e.starts_with("keel.config.inline") || e.contains("keel.config.inline")
                    );
                    assert!(e.contains(text), "{name}: {e}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bomb_is_capped() {
        let big = vec![b'a'; usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1];
        let bomb = zstd(&big);
        assert!(bomb.len() < 64 * 1024, "compresses well: {}", bomb.len());
        let e = decode_content("keel.config.inline", bomb).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");

        // The same content split over frames that each declare a small
        // size: only the running output cap can stop it.
        let chunk = vec![b'a'; 1 << 20];
        let frames: Vec<u8> = (0..5).flat_map(|_| zstd(&chunk)).collect();
        let e = decode_content("keel.config.inline", frames).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");

        // Exactly at the cap is fine.
        let exact = vec![b'a'; usize::try_from(MAX_CONFIG_BYTES).unwrap()];
        assert_eq!(
            decode_content("x", zstd(&exact)).unwrap().len(),
            exact.len()
        );

        // Plain content over the cap is refused too.
        let e = decode_content("x", big).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn huge_window_refused_before_allocation() {
        // Magic, descriptor without single-segment, window descriptor
        // 0x58: log 10+11 = 21 → 2 MiB is fine; 0x78: log 25 → 32 MiB.
        assert_eq!(
            frame_window(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58]),
            Some(FrameWindow::Window(2 << 20))
        );
        let frame = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x78, 0, 0, 0];
        let e = decode_content("x", frame.to_vec()).unwrap_err().to_string();
        assert!(e.contains("exceeds the 8388608-byte limit"), "{e}");
        // Single segment, 2-byte content size: value + 256.
        assert_eq!(
            frame_window(&[0x28, 0xB5, 0x2F, 0xFD, 0x60, 0x00, 0x01]),
            Some(FrameWindow::ContentSize(256 + 256))
        );
        assert_eq!(frame_window(&[0x28, 0xB5, 0x2F, 0xFD, 0x60, 0x00]), None);
    }

    #[test]
    fn never_panics_on_garbage() {
        // A cheap deterministic sweep of mangled frames.
        let good = zstd(YAML);
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let _ = decode_content("x", bad);
            }
            let _ = decode_content("x", good[..i].to_vec());
        }
    }
}
