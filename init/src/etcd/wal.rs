//! The member and cluster IDs a data dir belongs to, read from etcd's WAL
//! without starting etcd, so a data dir from another cluster is caught
//! before etcd serves anything (see [`super::rejoin`]).
//!
//! Format (etcd `wal/encoder.go`, `wal/walpb/record.proto`): a sequence of
//! frames, each an 8-byte little-endian length word (low 56 bits: record
//! length; top bit set: the record is followed by `(word >> 56) & 7` bytes
//! of padding to 8-byte alignment) and a `walpb.Record` protobuf (`type`
//! field 1, `crc` 2, `data` 3). Every WAL file starts with a CRC record
//! and a metadata record (type 1) whose data is `etcdserverpb.Metadata`
//! (`NodeID` field 1, `ClusterID` field 2); etcd writes it into each new
//! segment too, so any `*.wal` file will do.

use std::io::Read;
use std::path::{Path, PathBuf};

/// `walpb` record type of the metadata record (`metadataType`).
const METADATA: u64 = 1;
/// The metadata sits in the first few frames; read no more than this of a
/// (pre-allocated, 64 MB) segment.
const HEAD: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub member: u64,
    pub cluster: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot read the etcd WAL {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no metadata record in the first {HEAD} bytes of the etcd WAL {path}")]
    NoMetadata { path: PathBuf },
}

/// The IDs in the newest `*.wal` file under `data_dir/member/wal`, or
/// `None` when there is none.
pub fn read_ids(data_dir: &Path) -> Result<Option<Ids>, WalError> {
    let dir = data_dir.join("member").join("wal");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    // Names are `<seq>-<index>.wal` in fixed-width hex: the largest is newest.
    let newest = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max();
    let Some(path) = newest else { return Ok(None) };
    let mut head = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(HEAD).read_to_end(&mut head))
        .map_err(|source| WalError::Read {
            path: path.clone(),
            source,
        })?;
    ids_from(&head)
        .map(Some)
        .ok_or(WalError::NoMetadata { path })
}

/// The metadata IDs in the head of one WAL segment.
pub fn ids_from(head: &[u8]) -> Option<Ids> {
    let mut off = 0usize;
    while off + 8 <= head.len() {
        let word = u64::from_le_bytes(head[off..off + 8].try_into().ok()?);
        if word == 0 {
            return None; // pre-allocated zeros: the end of the records
        }
        let len = usize::try_from(word & 0x00ff_ffff_ffff_ffff).ok()?;
        let pad = if word & (1 << 63) != 0 {
            ((word >> 56) & 0x7) as usize
        } else {
            0
        };
        let start = off + 8;
        let record = head.get(start..start.checked_add(len)?)?;
        let mut kind = 0;
        let mut data: &[u8] = &[];
        for (field, value) in fields(record)? {
            match (field, value) {
                (1, Value::Varint(v)) => kind = v,
                (3, Value::Bytes(b)) => data = b,
                _ => {}
            }
        }
        if kind == METADATA {
            let mut ids = Ids {
                member: 0,
                cluster: 0,
            };
            for (field, value) in fields(data)? {
                match (field, value) {
                    (1, Value::Varint(v)) => ids.member = v,
                    (2, Value::Varint(v)) => ids.cluster = v,
                    _ => {}
                }
            }
            return Some(ids);
        }
        off = start + len + pad;
    }
    None
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The top-level fields of a protobuf message (varint, 64-bit, length
/// delimited and 32-bit wire types; anything else fails).
fn fields(mut msg: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut msg)?),
            1 => {
                msg = msg.get(8..)?;
                continue;
            }
            2 => {
                let n = usize::try_from(varint(&mut msg)?).ok()?;
                let b = msg.get(..n)?;
                msg = &msg[n..];
                Value::Bytes(b)
            }
            5 => {
                msg = msg.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(i)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a WAL etcd 3.4.23 wrote (member b4acc9f16bc59b3d of
    /// cluster 4ee7f60e12d0f3e1).
    const HEAD_3_4: &[u8] = &[
        0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x84, 0x08, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x1e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x08, 0x01, 0x10, 0xdb, 0xca, 0xb1,
        0x63, 0x1a, 0x15, 0x08, 0xbd, 0xb6, 0x96, 0xde, 0x96, 0xbe, 0xb2, 0xd6, 0xb4, 0x01, 0x10,
        0xe1, 0xe7, 0xc3, 0x96, 0xe1, 0xc1, 0xfd, 0xf3, 0x4e, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x82,
    ];

    #[test]
    fn parses_etcd_3_4_head() {
        assert_eq!(
            ids_from(HEAD_3_4),
            Some(Ids {
                member: 0xb4ac_c9f1_6bc5_9b3d,
                cluster: 0x4ee7_f60e_12d0_f3e1,
            })
        );
    }

    #[test]
    fn damaged_heads() {
        let table: &[(&str, &[u8])] = &[
            ("empty", &[]),
            ("zeros", &[0; 64]),
            ("truncated record", &HEAD_3_4[..40]),
            ("only the CRC record", &HEAD_3_4[..16]),
        ];
        for (what, head) in table {
            assert_eq!(ids_from(head), None, "{what}");
        }
    }

    #[test]
    fn read_ids_from_dir() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_ids(tmp.path()).unwrap().is_none());
        let wal = tmp.path().join("member/wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), [0u8; 16]).unwrap();
        std::fs::write(wal.join("0000000000000001-0000000000000010.wal"), HEAD_3_4).unwrap();
        let ids = read_ids(tmp.path()).unwrap().unwrap();
        assert_eq!(ids.cluster, 0x4ee7_f60e_12d0_f3e1);
        std::fs::write(wal.join("0000000000000002-0000000000000020.wal"), [0u8; 16]).unwrap();
        assert!(matches!(
            read_ids(tmp.path()),
            Err(WalError::NoMetadata { .. })
        ));
    }
}
