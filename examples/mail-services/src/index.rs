//! The search index (MS Search's part): a tokenizer, an inverted index
//! word -> [(mailbox, seq)], and its file.
//!
//! The index is derived data: the store is the truth and the index can
//! always be rebuilt by reading the store from seq 0. So the file only has
//! to be *either* a consistent old version *or* a consistent new one, never
//! a mix: it is rewritten whole (temp file, fsync, rename, fsync directory)
//! and carries a CRC; a file that fails its check is thrown away and the
//! indexer starts over. Rewriting the whole file per batch is O(index) and
//! fine at the sizes these services are built for.
//!
//! File format (`index.dat`, UTF-8 text):
//!
//! ```text
//! warden-index 1
//! indexed <seq>
//! w <word> <mailbox>:<seq> <mailbox>:<seq> ...
//! ...
//! end <crc32 of every byte before this line, 8 lowercase hex digits>
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use crate::checksum::crc32;
use crate::fsutil;
use crate::mailbox;

pub const INDEX_FILE: &str = "index.dat";
/// Longer "words" (base64 blobs, hashes) are not indexed.
pub const MAX_WORD_CHARS: usize = 64;

/// The distinct words of `text`: maximal runs of letters and digits
/// (Unicode), lowercased. Invalid UTF-8 is read lossily.
pub fn tokenize(text: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(text);
    let mut words = BTreeSet::new();
    let mut word = String::new();
    let mut chars = 0usize;
    let mut flush = |word: &mut String, chars: &mut usize| {
        if !word.is_empty() && *chars <= MAX_WORD_CHARS {
            words.insert(std::mem::take(word));
        }
        word.clear();
        *chars = 0;
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            chars += 1;
        } else {
            flush(&mut word, &mut chars);
        }
    }
    flush(&mut word, &mut chars);
    words
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Posting {
    pub mailbox: String,
    pub seq: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Index {
    indexed_seq: u64,
    postings: BTreeMap<String, Vec<Posting>>,
}

impl Index {
    /// The highest store seq already indexed.
    pub fn indexed_seq(&self) -> u64 {
        self.indexed_seq
    }

    pub fn words(&self) -> usize {
        self.postings.len()
    }

    /// Indexes one message. Messages must come in seq order.
    pub fn add(&mut self, seq: u64, mailbox: &str, body: &[u8]) {
        for word in tokenize(body) {
            self.postings.entry(word).or_default().push(Posting {
                mailbox: mailbox.to_string(),
                seq,
            });
        }
        self.indexed_seq = self.indexed_seq.max(seq);
    }

    /// The messages containing `query`, which must tokenize to exactly one
    /// word (so `Hello` finds `hello`, and `two words` is an error).
    pub fn search(&self, query: &str) -> Result<&[Posting], String> {
        let words = tokenize(query.as_bytes());
        let mut it = words.iter();
        match (it.next(), it.next()) {
            (Some(w), None) => Ok(self.postings.get(w).map_or(&[][..], Vec::as_slice)),
            _ => Err(format!("{query:?} is not one word (letters and digits)")),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("warden-index 1\nindexed {}\n", self.indexed_seq);
        for (word, postings) in &self.postings {
            s.push_str("w ");
            s.push_str(word);
            for p in postings {
                s.push_str(&format!(" {}:{}", p.mailbox, p.seq));
            }
            s.push('\n');
        }
        let crc = crc32(s.as_bytes());
        s.push_str(&format!("end {crc:08x}\n"));
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Index, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("too short")?;
        let (body, trailer) = text.split_at(body_end);
        let stored = trailer
            .trim_end()
            .strip_prefix("end ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("no end line (torn write?)")?;
        if crc32(body.as_bytes()) != stored {
            return Err("checksum mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some("warden-index 1") {
            return Err("not a version 1 index".into());
        }
        let indexed_seq = lines
            .next()
            .and_then(|l| l.strip_prefix("indexed "))
            .and_then(|n| n.parse().ok())
            .ok_or("bad indexed line")?;
        let mut postings = BTreeMap::new();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some("w"), Some(word)) = (parts.next(), parts.next()) else {
                return Err(format!("bad line {line:?}"));
            };
            let mut list = Vec::new();
            for p in parts {
                let posting = p
                    .split_once(':')
                    .and_then(|(m, s)| {
                        Some(Posting {
                            mailbox: m.to_string(),
                            seq: s.parse().ok()?,
                        })
                    })
                    .filter(|p| mailbox::is_valid(&p.mailbox))
                    .ok_or_else(|| format!("bad posting {p:?}"))?;
                list.push(posting);
            }
            postings.insert(word.to_string(), list);
        }
        Ok(Index {
            indexed_seq,
            postings,
        })
    }
}

/// Loads `dir/index.dat`: `Ok(None)` if there is none, `Err` if it is
/// damaged (the caller rebuilds).
pub fn load(dir: &Path) -> Result<Option<Index>, String> {
    match std::fs::read(dir.join(INDEX_FILE)) {
        Ok(bytes) => Index::decode(&bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read {}: {e}",
            dir.join(INDEX_FILE).display()
        )),
    }
}

/// Atomically replaces `dir/index.dat` with `encoded`.
pub fn save(dir: &Path, encoded: &[u8]) -> io::Result<()> {
    fsutil::write_atomic(dir, INDEX_FILE, encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_words_of_letters_and_digits() {
        let w = tokenize("Hello, WORLD! x2 hello über-Straße\r\n".as_bytes());
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        assert_eq!(w, ["hello", "straße", "world", "x2", "über"]);
        assert!(tokenize(&[b'a'; 65]).is_empty());
    }

    #[test]
    fn search_and_round_trip() {
        let mut ix = Index::default();
        ix.add(1, "alice", b"quarterly report attached");
        ix.add(2, "bob", b"the Report is late");
        assert_eq!(ix.search("REPORT").unwrap().len(), 2);
        assert_eq!(
            ix.search("late").unwrap(),
            [Posting {
                mailbox: "bob".into(),
                seq: 2
            }]
        );
        assert!(ix.search("nothing").unwrap().is_empty());
        assert!(ix.search("two words").is_err());
        assert!(ix.search("!!").is_err());
        let bytes = ix.encode();
        assert_eq!(Index::decode(&bytes).unwrap(), ix);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(Index::decode(&bad).is_err());
        assert!(Index::decode(&bytes[..bytes.len() - 5]).is_err());
    }
}
