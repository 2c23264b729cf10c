//! The store's write-ahead log: record codec and recovery scan.
//!
//! Every acknowledged message is one record appended to `wal.log` and
//! fsync'ed before the store says `OK`. A crash can therefore leave at most
//! one damaged record, at the very end: a *torn tail* (the write that was in
//! flight). Anything else that is damaged was already acknowledged, and
//! losing it silently would break the store's promise. [`scan`] tells the two
//! apart: damage with an intact later record after it is *corruption*; damage
//! with nothing intact after it is a torn tail, safe to cut off.
//!
//! Record layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//! 0       4     magic "WMR1"
//! 4       8     seq (u64): 1 for the first record, +1 for each next one
//! 12      1     mailbox length M (1..=64)
//! 13      4     body length B (u32, at most MAX_BODY)
//! 17      M     mailbox name (see `mailbox::is_valid`)
//! 17+M    B     body
//! 17+M+B  4     CRC-32 (IEEE) of bytes 0 .. 17+M+B
//! ```

use crate::checksum::crc32;
use crate::mailbox;

pub const MAGIC: [u8; 4] = *b"WMR1";
pub const HEADER_LEN: usize = 17;
pub const TRAILER_LEN: usize = 4;
/// Largest message body the store accepts (16 MiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub mailbox: String,
    pub body: Vec<u8>,
}

/// Encodes one record. The caller has checked the mailbox name and the body
/// size (the store refuses both before it gets here).
pub fn encode(seq: u64, mailbox: &str, body: &[u8]) -> Vec<u8> {
    debug_assert!(mailbox::is_valid(mailbox));
    debug_assert!(body.len() <= MAX_BODY);
    let mut out = Vec::with_capacity(HEADER_LEN + mailbox.len() + body.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(mailbox.len() as u8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(mailbox.as_bytes());
    out.extend_from_slice(body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

enum Decoded {
    Record(Record, usize),
    /// The buffer ends inside the record.
    Short,
    Bad(&'static str),
}

fn decode(buf: &[u8]) -> Decoded {
    let magic_seen = buf.len().min(MAGIC.len());
    if buf[..magic_seen] != MAGIC[..magic_seen] {
        return Decoded::Bad("bad magic");
    }
    if buf.len() < HEADER_LEN {
        return Decoded::Short;
    }
    let seq = u64::from_le_bytes(buf[4..12].try_into().expect("8 bytes"));
    let mlen = usize::from(buf[12]);
    let blen = u32::from_le_bytes(buf[13..17].try_into().expect("4 bytes")) as usize;
    if mlen == 0 || mlen > mailbox::MAX_LEN {
        return Decoded::Bad("bad mailbox length");
    }
    if blen > MAX_BODY {
        return Decoded::Bad("bad body length");
    }
    let end = HEADER_LEN + mlen + blen;
    if buf.len() < end + TRAILER_LEN {
        return Decoded::Short;
    }
    let stored = u32::from_le_bytes(buf[end..end + 4].try_into().expect("4 bytes"));
    if crc32(&buf[..end]) != stored {
        return Decoded::Bad("checksum mismatch");
    }
    let name = &buf[HEADER_LEN..HEADER_LEN + mlen];
    let Some(name) = std::str::from_utf8(name)
        .ok()
        .filter(|n| mailbox::is_valid(n))
    else {
        return Decoded::Bad("bad mailbox name");
    };
    let record = Record {
        seq,
        mailbox: name.to_string(),
        body: buf[HEADER_LEN + mlen..end].to_vec(),
    };
    Decoded::Record(record, end + TRAILER_LEN)
}

/// Decodes exactly one record that fills `buf` (a record shipped to a
/// passive copy, see `crate::replication::wire`). Why separate from
/// [`scan`]: a shipped record comes from a peer, not from our own disk, so
/// anything but one whole, intact record is refused with the reason.
pub fn decode_one(buf: &[u8]) -> Result<Record, String> {
    if buf.is_empty() {
        return Err("empty record".into());
    }
    match decode(buf) {
        Decoded::Record(rec, len) if len == buf.len() => Ok(rec),
        Decoded::Record(_, len) => Err(format!(
            "{} bytes after the end of the record ({len} bytes)",
            buf.len() - len
        )),
        Decoded::Short => Err(format!("a record cut short at {} bytes", buf.len())),
        Decoded::Bad(reason) => Err(reason.to_string()),
    }
}

/// The CRC-32 stored in the trailer of `seq`'s record: what a passive copy
/// and the active compare to tell whether their logs agree at a position.
pub fn record_crc(rec: &Record) -> u32 {
    let bytes = encode(rec.seq, &rec.mailbox, &rec.body);
    let n = bytes.len();
    u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]])
}

/// Largest encoded record: what a shipped record may claim as its length.
pub const MAX_RECORD: usize = HEADER_LEN + crate::mailbox::MAX_LEN + MAX_BODY + TRAILER_LEN;

/// What follows the last good record.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// The log ends exactly after a good record.
    Clean,
    /// Damaged bytes at the end with nothing intact after them: the write
    /// that was in flight at a crash. Safe to truncate at `offset`.
    Torn {
        offset: u64,
        bytes: u64,
        reason: &'static str,
    },
    /// Damage before intact data, or records out of sequence: acknowledged
    /// messages would be lost by truncating. Needs an operator.
    Corrupt { offset: u64, reason: String },
}

#[derive(Debug)]
pub struct Scan {
    /// The good records, in order, with seq 1, 2, 3, ...
    pub records: Vec<Record>,
    /// Length of the good prefix of the log.
    pub good_len: u64,
    pub tail: Tail,
}

/// Scans a whole log.
pub fn scan(buf: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut last_seq = 0u64;
    let damage = loop {
        if pos == buf.len() {
            break None;
        }
        match decode(&buf[pos..]) {
            Decoded::Record(rec, len) => {
                if rec.seq != last_seq + 1 {
                    let reason = format!(
                        "record at offset {pos} has seq {} where {} was expected",
                        rec.seq,
                        last_seq + 1
                    );
                    return Scan {
                        records,
                        good_len: pos as u64,
                        tail: Tail::Corrupt {
                            offset: pos as u64,
                            reason,
                        },
                    };
                }
                last_seq = rec.seq;
                records.push(rec);
                pos += len;
            }
            Decoded::Short => break Some("short read"),
            Decoded::Bad(reason) => break Some(reason),
        }
    };
    let tail = match damage {
        None => Tail::Clean,
        Some(reason) => match find_intact_after(buf, pos + 1, last_seq) {
            Some((off, seq)) => Tail::Corrupt {
                offset: pos as u64,
                reason: format!(
                    "{reason} at offset {pos}, but an intact record (seq {seq}) follows at offset {off}"
                ),
            },
            None => Tail::Torn {
                offset: pos as u64,
                bytes: (buf.len() - pos) as u64,
                reason,
            },
        },
    };
    Scan {
        records,
        good_len: pos as u64,
        tail,
    }
}

/// Looks for an intact record with a later seq anywhere from `from` on.
fn find_intact_after(buf: &[u8], from: usize, last_seq: u64) -> Option<(usize, u64)> {
    let mut off = from;
    while off + HEADER_LEN + TRAILER_LEN <= buf.len() {
        let rest = &buf[off..];
        let i = rest.windows(MAGIC.len()).position(|w| w == MAGIC)?;
        off += i;
        if let Decoded::Record(rec, _) = decode(&buf[off..])
            && rec.seq > last_seq
        {
            return Some((off, rec.seq));
        }
        off += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: u64) -> Vec<u8> {
        (1..=n)
            .flat_map(|seq| encode(seq, "alice", format!("message {seq}").as_bytes()))
            .collect()
    }

    #[test]
    fn round_trip() {
        let buf = log_of(3);
        let s = scan(&buf);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.good_len, buf.len() as u64);
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.records[2].body, b"message 3");
        assert_eq!(scan(&[]).tail, Tail::Clean);
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        let full = log_of(2);
        let first = encode(1, "alice", b"message 1").len();
        for cut in first + 1..full.len() {
            let s = scan(&full[..cut]);
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(
                s.tail,
                Tail::Torn {
                    offset: first as u64,
                    bytes: (cut - first) as u64,
                    reason: "short read"
                },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_and_zeros_after_the_end_are_a_torn_tail() {
        let mut buf = log_of(2);
        let good = buf.len();
        buf.extend_from_slice(&[0u8; 100]);
        let s = scan(&buf);
        assert_eq!(s.records.len(), 2);
        assert!(matches!(s.tail, Tail::Torn { offset, bytes: 100, .. } if offset == good as u64));

        // A full-length last record with a flipped byte is also torn.
        let mut buf = log_of(3);
        let n = buf.len();
        buf[n - 6] ^= 0xff;
        let s = scan(&buf);
        assert_eq!(s.records.len(), 2);
        assert!(matches!(
            s.tail,
            Tail::Torn {
                reason: "checksum mismatch",
                ..
            }
        ));
    }

    #[test]
    fn damage_before_intact_records_is_corruption() {
        let mut buf = log_of(3);
        buf[HEADER_LEN + 2] ^= 0x01; // inside record 1's mailbox name
        let s = scan(&buf);
        assert!(s.records.is_empty());
        match s.tail {
            Tail::Corrupt { offset: 0, reason } => assert!(reason.contains("seq 2"), "{reason}"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn decode_one_takes_one_whole_record_and_nothing_else() {
        let rec = encode(7, "bob", b"shipped");
        let got = decode_one(&rec).unwrap();
        assert_eq!((got.seq, got.mailbox.as_str()), (7, "bob"));
        assert_eq!(record_crc(&got), crc32(&rec[..rec.len() - 4]));
        assert!(
            decode_one(&rec[..rec.len() - 1])
                .unwrap_err()
                .contains("cut short")
        );
        let mut two = rec.clone();
        two.push(0);
        assert!(decode_one(&two).unwrap_err().contains("after the end"));
        let mut bad = rec.clone();
        bad[20] ^= 1;
        assert_eq!(decode_one(&bad).unwrap_err(), "checksum mismatch");
        assert!(decode_one(b"").is_err());
        assert_eq!(decode_one(b"GARBAGE!").unwrap_err(), "bad magic");
        // A header claiming a 4 GiB body is refused from the header alone.
        let mut huge = encode(1, "a", b"");
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_one(&huge).unwrap_err(), "bad body length");
    }

    #[test]
    fn out_of_sequence_is_corruption() {
        let mut buf = log_of(1);
        buf.extend(encode(3, "bob", b"skipped one"));
        assert!(matches!(scan(&buf).tail, Tail::Corrupt { .. }));
    }
}
