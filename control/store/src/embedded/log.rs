//! The on-disk formats: framed records, the transaction log and the snapshot.
//!
//! Every record is `[len u32 LE][crc32 u32 LE][payload]`, the CRC covering the length bytes
//! and the payload, so a damaged length is caught as surely as damaged data. Payloads:
//!
//! - log record (one per committed transaction):
//!   `[version u8 = 1][revision u64][batch_start u64][count u32]` then `count` writes, each
//!   `[op u8: 1 put, 2 delete][key_len u32][key]` and, for a put, `[value_len u32][value]`.
//!   `batch_start` is the revision of the first record written by the same fsync; recovery uses
//!   it to tell a torn last batch (crash) from damage in the middle of the log.
//! - snapshot header: `[version u8 = 1][revision u64][count u64]`, then `count` entries
//!   `[key_len u32][key][create_revision u64][mod_revision u64][value_len u32][value]`.
//!
//! All integers are little-endian.

use crate::{KeyValue, Revision, StoreError, Write};

const HEADER_LEN: usize = 8;
const VERSION: u8 = 1;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// The smallest log payload: version, revision, batch_start, count.
const MIN_TXN_PAYLOAD: usize = 1 + 8 + 8 + 4;

/// Appends one framed record holding `payload` to `out`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a record is smaller than 4 GiB");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// The record at `offset`: `Ok(None)` at a clean end of file, otherwise its payload and the
/// offset just past it, or why it is unreadable.
fn read_record(buf: &[u8], offset: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[offset..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < HEADER_LEN {
        return Err(format!("only {} bytes of a record header", rest.len()));
    }
    let len_bytes: [u8; 4] = rest[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    let stored_crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 {
        // A zeroed region (a crash can leave one) would otherwise pass: crc32 of nothing is 0.
        return Err("zero-length record".to_string());
    }
    if len > rest.len() - HEADER_LEN {
        return Err(format!(
            "record of {len} bytes runs past the end of the file ({} bytes left)",
            rest.len() - HEADER_LEN
        ));
    }
    let payload = &rest[HEADER_LEN..HEADER_LEN + len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finalize() != stored_crc {
        return Err("checksum mismatch".to_string());
    }
    Ok(Some((payload, offset + HEADER_LEN + len)))
}

/// A decoded log record: one committed transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TxnRecord {
    pub revision: Revision,
    pub batch_start: Revision,
    pub writes: Vec<Write>,
}

/// Appends the framed log record of one transaction to `out`.
pub(crate) fn encode_txn(
    revision: Revision,
    batch_start: Revision,
    writes: &[Write],
    out: &mut Vec<u8>,
) {
    let mut payload = Vec::with_capacity(MIN_TXN_PAYLOAD + writes.len() * 64);
    payload.push(VERSION);
    payload.extend_from_slice(&revision.to_le_bytes());
    payload.extend_from_slice(&batch_start.to_le_bytes());
    put_len(&mut payload, writes.len());
    for write in writes {
        match write {
            Write::Put { key, value } => {
                payload.push(OP_PUT);
                put_bytes(&mut payload, key.as_bytes());
                put_bytes(&mut payload, value);
            }
            Write::Delete { key } => {
                payload.push(OP_DELETE);
                put_bytes(&mut payload, key.as_bytes());
            }
        }
    }
    frame(&payload, out);
}

fn decode_txn(payload: &[u8]) -> Result<TxnRecord, String> {
    let mut r = Reader::new(payload);
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("unknown log record version {version}"));
    }
    let revision = r.u64()?;
    let batch_start = r.u64()?;
    let count = r.u32()? as usize;
    let mut writes = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let op = r.u8()?;
        let key = r.string()?;
        writes.push(match op {
            OP_PUT => Write::Put {
                key,
                value: r.bytes()?.to_vec(),
            },
            OP_DELETE => Write::Delete { key },
            other => return Err(format!("unknown write op {other}")),
        });
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(TxnRecord {
        revision,
        batch_start,
        writes,
    })
}

/// What a log file holds, read from its start.
#[derive(Debug)]
pub(crate) struct LogScan {
    /// Each record with the byte offset it starts at.
    pub records: Vec<(u64, TxnRecord)>,
    /// Where the readable records end; the file must be cut here when `torn` is set.
    pub valid_len: u64,
    /// Why the tail past `valid_len` was unreadable (a crash during the last batch's write).
    pub torn: Option<String>,
}

/// Reads every record of a log. A bad record is a crash artefact only if nothing from a later
/// batch follows it: a batch is written by one write() and made durable by one fdatasync, so a
/// crash can tear only the last one (possibly leaving holes in it, since pages reach the disk
/// in any order). Anything readable from a later batch after a bad record is real damage.
///
/// `base` is the revision the log starts from (the snapshot's, or 1 for a new store).
pub(crate) fn scan_log(buf: &[u8], path: &str, base: Revision) -> Result<LogScan, StoreError> {
    let mut records: Vec<(u64, TxnRecord)> = Vec::new();
    let mut offset = 0;
    loop {
        let failure = match read_record(buf, offset) {
            Ok(None) => {
                return Ok(LogScan {
                    records,
                    valid_len: offset as u64,
                    torn: None,
                })
            }
            Ok(Some((payload, next))) => match decode_txn(payload) {
                Ok(record) => {
                    records.push((offset as u64, record));
                    offset = next;
                    continue;
                }
                Err(reason) => reason,
            },
            Err(reason) => reason,
        };
        // The torn batch may be the last good record's or the next one; any batch after that
        // was written only after the bad record had been synced.
        let last_good = records.last().map_or(base, |(_, r)| r.revision);
        if let Some(later) = find_later_batch(buf, offset + 1, last_good + 2) {
            return Err(StoreError::Corrupt {
                path: path.to_string(),
                offset: offset as u64,
                reason: format!(
                    "{failure}, yet a valid record (revision {later}) follows it, so this is \
                     damage rather than a torn write"
                ),
            });
        }
        return Ok(LogScan {
            records,
            valid_len: offset as u64,
            torn: Some(failure),
        });
    }
}

/// The revision of a readable log record starting anywhere at or after `from` whose batch
/// started at `min_batch_start` or later. Cheap header checks come before the checksum so that
/// scanning garbage stays linear in practice.
fn find_later_batch(buf: &[u8], from: usize, min_batch_start: Revision) -> Option<Revision> {
    let mut p = from;
    while p + HEADER_LEN + MIN_TXN_PAYLOAD <= buf.len() {
        let head = &buf[p + HEADER_LEN..];
        if head[0] == VERSION {
            let revision = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
            let batch_start = u64::from_le_bytes(head[9..17].try_into().expect("8 bytes"));
            if batch_start >= min_batch_start && batch_start <= revision {
                if let Ok(Some((payload, _))) = read_record(buf, p) {
                    if decode_txn(payload).is_ok() {
                        return Some(revision);
                    }
                }
            }
        }
        p += 1;
    }
    None
}

/// Serializes a snapshot: every key at `revision`.
pub(crate) fn encode_snapshot<'a>(
    revision: Revision,
    kvs: impl ExactSizeIterator<Item = &'a KeyValue>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut header = vec![VERSION];
    header.extend_from_slice(&revision.to_le_bytes());
    header.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    frame(&header, &mut out);
    let mut entry = Vec::new();
    for kv in kvs {
        entry.clear();
        put_bytes(&mut entry, kv.key.as_bytes());
        entry.extend_from_slice(&kv.create_revision.to_le_bytes());
        entry.extend_from_slice(&kv.mod_revision.to_le_bytes());
        put_bytes(&mut entry, &kv.value);
        frame(&entry, &mut out);
    }
    out
}

/// Reads a snapshot written by [`encode_snapshot`]. A snapshot is renamed into place only
/// once complete and synced, so any flaw in it is damage.
pub(crate) fn decode_snapshot(
    buf: &[u8],
    path: &str,
) -> Result<(Revision, Vec<KeyValue>), StoreError> {
    let corrupt = |offset: usize, reason: String| StoreError::Corrupt {
        path: path.to_string(),
        offset: offset as u64,
        reason,
    };
    let (header, mut offset) = match read_record(buf, 0) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(corrupt(0, "empty snapshot".to_string())),
        Err(reason) => return Err(corrupt(0, reason)),
    };
    let mut r = Reader::new(header);
    let (version, revision, count) = (|| Ok::<_, String>((r.u8()?, r.u64()?, r.u64()?)))()
        .map_err(|reason| corrupt(0, reason))?;
    if version != VERSION {
        return Err(corrupt(0, format!("unknown snapshot version {version}")));
    }
    let mut kvs = Vec::new();
    for _ in 0..count {
        let (payload, next) = match read_record(buf, offset) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(corrupt(offset, format!("ends before its {count} entries"))),
            Err(reason) => return Err(corrupt(offset, reason)),
        };
        let mut r = Reader::new(payload);
        let kv = (|| {
            Ok::<_, String>(KeyValue {
                key: r.string()?,
                create_revision: r.u64()?,
                mod_revision: r.u64()?,
                value: r.bytes()?.to_vec(),
            })
        })()
        .map_err(|reason| corrupt(offset, reason))?;
        kvs.push(kv);
        offset = next;
    }
    if offset != buf.len() {
        return Err(corrupt(offset, "bytes after the last entry".to_string()));
    }
    Ok((revision, kvs))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("a field is smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "payload ends early: wanted {n} more bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "key is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Write {
        Write::Put {
            key: key.to_string(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn log_of(batches: &[&[u64]]) -> Vec<u8> {
        let mut out = Vec::new();
        for batch in batches {
            for &rev in *batch {
                encode_txn(rev, batch[0], &[put(&format!("k{rev}"), "v")], &mut out);
            }
        }
        out
    }

    fn record_offsets(buf: &[u8]) -> Vec<usize> {
        let mut offsets = vec![];
        let mut offset = 0;
        while let Ok(Some((_, next))) = read_record(buf, offset) {
            offsets.push(offset);
            offset = next;
        }
        offsets
    }

    #[test]
    fn txn_record_round_trips() {
        let writes = vec![
            put("a", "1"),
            Write::Delete {
                key: "b".to_string(),
            },
        ];
        let mut buf = Vec::new();
        encode_txn(7, 6, &writes, &mut buf);
        let scan = scan_log(&buf, "log", 1).unwrap();
        assert_eq!(
            scan.records,
            vec![(
                0,
                TxnRecord {
                    revision: 7,
                    batch_start: 6,
                    writes,
                }
            )]
        );
        assert!(scan.torn.is_none());
    }

    #[test]
    fn torn_last_batch_with_a_hole_is_truncated_not_corrupt() {
        let mut buf = log_of(&[&[2], &[3, 4, 5]]);
        let offsets = record_offsets(&buf);
        // Revision 4's page never reached the disk, revision 5's did.
        buf[offsets[2] + 9] ^= 0xff;
        let scan = scan_log(&buf, "log", 1).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.valid_len, offsets[2] as u64);
        assert!(scan.torn.is_some());
    }

    #[test]
    fn a_torn_first_batch_is_not_corrupt() {
        let mut buf = log_of(&[&[2, 3, 4]]);
        buf[9] ^= 0xff;
        let scan = scan_log(&buf, "log", 1).unwrap();
        assert!(scan.records.is_empty());
        assert_eq!(scan.valid_len, 0);
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corrupt() {
        let mut buf = log_of(&[&[2], &[3], &[4]]);
        let offsets = record_offsets(&buf);
        buf[offsets[1] + 1] ^= 0x01; // the length field
        match scan_log(&buf, "log", 1) {
            Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, offsets[1] as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn zeroed_tail_is_torn() {
        let mut buf = log_of(&[&[2]]);
        let len = buf.len();
        buf.resize(len + 4096, 0);
        let scan = scan_log(&buf, "log", 1).unwrap();
        assert_eq!(scan.valid_len, len as u64);
        assert_eq!(scan.records.len(), 1);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let kvs = vec![
            KeyValue {
                key: "a".into(),
                value: b"1".to_vec(),
                create_revision: 2,
                mod_revision: 5,
            },
            KeyValue {
                key: "b".into(),
                value: vec![],
                create_revision: 3,
                mod_revision: 3,
            },
        ];
        let mut buf = encode_snapshot(9, kvs.iter());
        assert_eq!(decode_snapshot(&buf, "snap").unwrap(), (9, kvs));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(matches!(
            decode_snapshot(&buf, "snap"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
