//! `keel.config.sha256=`: pin the config content.
//!
//! The digest is taken over the final YAML, after zstd decompression, so
//! one pin covers the same config whether it arrives inline (plain or
//! compressed), over a URL or from a partition, and an operator computes it
//! with `sha256sum config.yaml`. The pin applies to every source: a pinned
//! node must not accept a different config from a disk someone plugged in.

use sha2::{Digest, Sha256};

use super::error::SourceError;

/// Parses 64 hex digits (either case) into a digest.
pub fn parse_sha256(param: &str, v: &str) -> Result<[u8; 32], SourceError> {
    let bad = |reason: String| SourceError::BadParam {
        param: param.to_string(),
        reason,
    };
    let v = v.trim();
    if v.len() != 64 {
        return Err(bad(format!(
            "{v:?} is not a SHA-256 digest: expected 64 hex digits, got {}",
            v.len()
        )));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(v, &mut out)
        .map_err(|e| bad(format!("{v:?} is not a SHA-256 digest: {e}")))?;
    Ok(out)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks `bytes` against the pin, if there is one.
pub fn verify(origin: &str, pin: Option<&[u8; 32]>, bytes: &[u8]) -> Result<(), SourceError> {
    let Some(pin) = pin else { return Ok(()) };
    let actual = Sha256::digest(bytes);
    if actual.as_slice() == pin.as_slice() {
        Ok(())
    } else {
        Err(SourceError::Sha256Mismatch {
            origin: origin.to_string(),
            expected: hex::encode(pin),
            actual: hex::encode(actual),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("abc"), FIPS 180-2 appendix B.1.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<&str, &str>)] = &[
            (ABC, Ok(ABC)),
            (
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                Ok(ABC),
            ),
            ("abc", Err("expected 64 hex digits, got 3")),
            ("", Err("expected 64 hex digits, got 0")),
            (&"zz".repeat(32), Err("Invalid character")),
            (&"a".repeat(65), Err("got 65")),
        ];
        for (input, want) in table {
            let got = parse_sha256("keel.config.sha256", input);
            match (got, want) {
                (Ok(d), Ok(hex)) => assert_eq!(hex::encode(d), *hex),
                (Err(e), Err(text)) => {
                    let e = e.to_string();
                    assert!(e.starts_with("kernel parameter keel.config.sha256:"), "{e}");
                    assert!(e.contains(text), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn verify_match_and_mismatch() {
        let pin = parse_sha256("p", ABC).unwrap();
        verify("keel.config.inline", Some(&pin), b"abc").unwrap();
        verify("keel.config.inline", None, b"anything").unwrap();
        let e = verify("keel.config.inline", Some(&pin), b"abd")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "keel.config.inline: sha256 mismatch: keel.config.sha256 expects {ABC}, \
                 content has {}",
                sha256_hex(b"abd")
            )
        );
    }
}
