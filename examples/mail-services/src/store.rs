//! The mail store's engine: the write-ahead log on disk, the messages in
//! memory, mount/recovery, clean dismount and offline verification.
//!
//! The files in the data directory:
//!
//! - `wal.log`: every acknowledged message, one record each (see [`crate::wal`]).
//! - `CLEAN`: present only while the store is *not* running after a clean
//!   dismount. Mounting removes it first thing (the store is dirty while it
//!   runs); a clean dismount writes it last. So a start that finds no
//!   `CLEAN` knows the last run crashed and recovers: it replays the log and
//!   cuts off a torn tail. This is the Exchange "dirty shutdown" state.
//! - `lock`: held (flock) while a store runs, so two cannot share a directory.
//! - `store.snapshot`: reserved for compaction. This store never deletes
//!   messages, so a snapshot would be exactly as large as the log; it is not
//!   written and a store that finds one ignores it.
//!
//! Why everything in memory: these are test services for a cluster host,
//! sized for thousands of messages, not millions; the log is what must be
//! right, the in-memory view is rebuilt from it at every mount.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fsutil::{self, Context};
use crate::wal::{self, Record, Tail};

pub const WAL_FILE: &str = "wal.log";
pub const CLEAN_FILE: &str = "CLEAN";
pub const SNAPSHOT_FILE: &str = "store.snapshot";

/// What mounting found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountReport {
    /// The last dismount was clean (or this is a brand-new store).
    pub clean: bool,
    /// No `wal.log` existed: a new, empty store was created.
    pub created: bool,
    /// `CLEAN` was present but the log had a torn tail anyway.
    pub marker_but_torn: bool,
    pub records: usize,
    pub last_seq: u64,
    /// Bytes cut off the end of the log, and why.
    pub dropped_tail: u64,
    pub tail_reason: Option<&'static str>,
}

#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// The log is damaged before its end: refusing to mount rather than
    /// silently losing acknowledged messages.
    Corrupt {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "{e}"),
            OpenError::Corrupt { path, reason } => {
                write!(f, "{} is corrupt: {reason}", path.display())
            }
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// A failed append. `fatal` means the state of the log on disk is unknown
/// (fsync failed, or a partial write could not be undone): the process must
/// stop without `CLEAN` so that the next mount recovers from what is
/// really on disk.
#[derive(Debug)]
pub struct AppendError {
    pub error: io::Error,
    pub fatal: bool,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// A mounted store. Not thread-safe on its own: the server wraps it in a
/// mutex, which also orders appends (seq order = log order).
pub struct Engine {
    dir: PathBuf,
    wal: File,
    wal_len: u64,
    /// Replayed records: what GET, SINCE and SEQ see.
    records: Vec<Arc<Record>>,
    /// Records durable in the log but not replayed yet (a passive copy's
    /// replay queue, see [`Engine::append_replicated`]); always empty on an
    /// active copy. They follow `records` in seq order.
    pending: Vec<Arc<Record>>,
    by_mailbox: HashMap<String, Vec<usize>>,
    clean_start: bool,
    dismounted: bool,
    _lock: File,
}

impl Engine {
    /// Mounts the store in `dir` (created if missing), recovering if the
    /// last run did not dismount cleanly.
    pub fn open(dir: &Path) -> Result<(Engine, MountReport), OpenError> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let lock = fsutil::lock_dir(dir)?;
        let wal_path = dir.join(WAL_FILE);
        let clean_path = dir.join(CLEAN_FILE);
        let had_marker = clean_path
            .try_exists()
            .with_context(|| format!("check {}", clean_path.display()))?;
        let created = !wal_path
            .try_exists()
            .with_context(|| format!("check {}", wal_path.display()))?;
        if created && had_marker {
            return Err(OpenError::Corrupt {
                path: wal_path,
                reason: "the CLEAN marker is present but the log is missing".into(),
            });
        }
        let mut wal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .with_context(|| format!("open {}", wal_path.display()))?;
        if created {
            wal.sync_all()
                .with_context(|| format!("fsync {}", wal_path.display()))?;
            fsutil::fsync_dir(dir)?;
        }
        let mut buf = Vec::new();
        wal.read_to_end(&mut buf)
            .with_context(|| format!("read {}", wal_path.display()))?;
        let scan = wal::scan(&buf);
        drop(buf);

        let (dropped_tail, tail_reason) = match scan.tail {
            Tail::Clean => (0, None),
            Tail::Torn {
                offset,
                bytes,
                reason,
            } => {
                wal.set_len(offset)
                    .and_then(|()| wal.sync_all())
                    .with_context(|| {
                        format!("truncate {} to {offset} bytes", wal_path.display())
                    })?;
                (bytes, Some(reason))
            }
            Tail::Corrupt { reason, .. } => {
                return Err(OpenError::Corrupt {
                    path: wal_path,
                    reason,
                });
            }
        };
        // From here on the store is dirty until a clean dismount.
        if had_marker {
            fs::remove_file(&clean_path)
                .with_context(|| format!("remove {}", clean_path.display()))?;
            fsutil::fsync_dir(dir)?;
        }

        let mut by_mailbox: HashMap<String, Vec<usize>> = HashMap::new();
        let records: Vec<Arc<Record>> = scan.records.into_iter().map(Arc::new).collect();
        for (i, r) in records.iter().enumerate() {
            by_mailbox.entry(r.mailbox.clone()).or_default().push(i);
        }
        let clean = created || (had_marker && dropped_tail == 0);
        let report = MountReport {
            clean,
            created,
            marker_but_torn: had_marker && dropped_tail > 0,
            records: records.len(),
            last_seq: records.last().map_or(0, |r| r.seq),
            dropped_tail,
            tail_reason,
        };
        let engine = Engine {
            dir: dir.to_path_buf(),
            wal,
            wal_len: scan.good_len,
            records,
            pending: Vec::new(),
            by_mailbox,
            clean_start: clean,
            dismounted: false,
            _lock: lock,
        };
        Ok((engine, report))
    }

    /// Appends one message and makes it durable; returns its seq. When this
    /// returns `Ok`, the record is on disk (fdatasync'ed).
    pub fn append(&mut self, mailbox: &str, body: &[u8]) -> Result<u64, AppendError> {
        let invalid = |msg: String| AppendError {
            error: io::Error::new(io::ErrorKind::InvalidInput, msg),
            fatal: false,
        };
        if self.dismounted {
            return Err(invalid("the store is dismounted".into()));
        }
        if !crate::mailbox::is_valid(mailbox) {
            return Err(invalid(format!("invalid mailbox name {mailbox:?}")));
        }
        if body.len() > wal::MAX_BODY {
            return Err(invalid(format!(
                "body of {} bytes exceeds {}",
                body.len(),
                wal::MAX_BODY
            )));
        }
        // A copy just activated replays what it had copied before it writes.
        self.replay();
        let seq = self.position() + 1;
        let bytes = wal::encode(seq, mailbox, body);
        self.write_durably(&bytes)?;
        self.apply(Arc::new(Record {
            seq,
            mailbox: mailbox.to_string(),
            body: body.to_vec(),
        }));
        Ok(seq)
    }

    /// Appends records copied from the active copy with one fsync, and queues
    /// them for [`Engine::replay`]; returns the new log position. Why not
    /// replay at once: the passive acknowledges as soon as the records are
    /// durable, and the replay (copy queue vs replay queue, as Exchange
    /// reports them) follows. Each record must carry the next seq.
    pub fn append_replicated(&mut self, records: Vec<Record>) -> Result<u64, AppendError> {
        let invalid = |msg: String| AppendError {
            error: io::Error::new(io::ErrorKind::InvalidData, msg),
            fatal: false,
        };
        if self.dismounted {
            return Err(invalid("the store is dismounted".into()));
        }
        let mut bytes = Vec::new();
        for (expected, rec) in (self.position() + 1..).zip(&records) {
            if rec.seq != expected {
                return Err(invalid(format!(
                    "copied record has seq {} where {expected} was expected",
                    rec.seq
                )));
            }
            if !crate::mailbox::is_valid(&rec.mailbox) || rec.body.len() > wal::MAX_BODY {
                return Err(invalid(format!("copied record {} is malformed", rec.seq)));
            }
            bytes.extend(wal::encode(rec.seq, &rec.mailbox, &rec.body));
        }
        if bytes.is_empty() {
            return Ok(self.position());
        }
        self.write_durably(&bytes)?;
        self.pending.extend(records.into_iter().map(Arc::new));
        Ok(self.position())
    }

    /// Writes `bytes` at the end of the log and fdatasyncs it.
    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), AppendError> {
        if let Err(e) = self.wal.write_all_at(bytes, self.wal_len) {
            // Undo a partial write so that later records do not land after
            // garbage (which the next mount would rightly call corruption).
            let undone = self
                .wal
                .set_len(self.wal_len)
                .and_then(|()| self.wal.sync_data());
            return Err(AppendError {
                error: io::Error::new(e.kind(), format!("append to {WAL_FILE}: {e}")),
                fatal: undone.is_err(),
            });
        }
        if let Err(e) = self.wal.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages: nothing about the file can be trusted any more.
            return Err(AppendError {
                error: io::Error::new(e.kind(), format!("fsync {WAL_FILE}: {e}")),
                fatal: true,
            });
        }
        self.wal_len += bytes.len() as u64;
        Ok(())
    }

    fn apply(&mut self, rec: Arc<Record>) {
        self.by_mailbox
            .entry(rec.mailbox.clone())
            .or_default()
            .push(self.records.len());
        self.records.push(rec);
    }

    /// Replays every copied record into the messages served; returns how many.
    pub fn replay(&mut self) -> usize {
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len();
        for rec in pending {
            self.apply(rec);
        }
        n
    }

    /// Drops the whole log and every message (a passive copy's reseed): the
    /// log is cut to nothing and fsync'ed before this returns `Ok`.
    pub fn reset(&mut self) -> io::Result<()> {
        self.wal
            .set_len(0)
            .and_then(|()| self.wal.sync_all())
            .with_context(|| format!("truncate {}", self.dir.join(WAL_FILE).display()))?;
        self.wal_len = 0;
        self.records.clear();
        self.pending.clear();
        self.by_mailbox.clear();
        Ok(())
    }

    /// The log position: the seq of the last durable record (replayed or not).
    pub fn position(&self) -> u64 {
        (self.records.len() + self.pending.len()) as u64
    }

    /// Records durable but not replayed yet.
    pub fn replay_queue(&self) -> usize {
        self.pending.len()
    }

    /// The CRC of the record at `position` (`None` for 0 or past the end).
    pub fn crc_at(&self, position: u64) -> Option<u32> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        let rec = match self.records.get(i) {
            Some(r) => r,
            None => self.pending.get(i - self.records.len())?,
        };
        Some(wal::record_crc(rec))
    }

    /// The data directory this engine mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The messages of one mailbox, oldest first.
    pub fn mailbox(&self, name: &str) -> Vec<Arc<Record>> {
        self.by_mailbox
            .get(name)
            .map(|ix| ix.iter().map(|&i| Arc::clone(&self.records[i])).collect())
            .unwrap_or_default()
    }

    /// Up to `max` messages with a seq greater than `seq`, oldest first.
    pub fn since(&self, seq: u64, max: usize) -> Vec<Arc<Record>> {
        // Seqs are 1, 2, 3, ... so record i has seq i + 1.
        let start = usize::try_from(seq)
            .unwrap_or(usize::MAX)
            .min(self.records.len());
        self.records[start..].iter().take(max).cloned().collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.records.last().map_or(0, |r| r.seq)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether this mount found a clean previous dismount.
    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    /// Clean dismount: makes the log durable and writes `CLEAN`. Refuses
    /// further appends; the caller exits right after.
    pub fn dismount(&mut self) -> io::Result<()> {
        self.replay();
        self.dismounted = true;
        self.wal
            .sync_all()
            .with_context(|| format!("fsync {}", self.dir.join(WAL_FILE).display()))?;
        let path = self.dir.join(CLEAN_FILE);
        let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        writeln!(
            f,
            "dismounted cleanly at {}: records={} seq={}",
            crate::log::timestamp(std::time::SystemTime::now()),
            self.len(),
            self.last_seq()
        )
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
        fsutil::fsync_dir(&self.dir)
    }
}

/// The verdict of `mail-store --verify`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `CLEAN` present and the log intact: mounts without recovery.
    Clean { records: usize },
    /// The next mount will recover: no `CLEAN` (crash, or still running),
    /// and/or a torn tail of `torn_tail_bytes` that it will cut off.
    Dirty {
        records: usize,
        torn_tail_bytes: u64,
        reason: String,
    },
    /// Damage recovery cannot repair without losing acknowledged messages;
    /// the store refuses to mount.
    Corrupt { reason: String },
}

impl Verdict {
    /// 0 clean, 3 dirty (recovery needed), 4 corrupt.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Clean { .. } => 0,
            Verdict::Dirty { .. } => 3,
            Verdict::Corrupt { .. } => 4,
        }
    }

    /// The one line `--verify` prints on stdout.
    pub fn line(&self) -> String {
        match self {
            Verdict::Clean { records } => format!("clean records={records}"),
            Verdict::Dirty {
                records,
                torn_tail_bytes,
                reason,
            } => format!("dirty records={records} torn_tail_bytes={torn_tail_bytes} ({reason})"),
            Verdict::Corrupt { reason } => format!("corrupt ({reason})"),
        }
    }
}

/// Checks a data directory without changing anything in it.
pub fn verify(dir: &Path) -> Verdict {
    let corrupt = |reason: String| Verdict::Corrupt { reason };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return corrupt(format!("{} is not a directory", dir.display())),
        Err(e) => return corrupt(format!("cannot read {}: {e}", dir.display())),
    }
    let wal_path = dir.join(WAL_FILE);
    let marker = match dir.join(CLEAN_FILE).try_exists() {
        Ok(m) => m,
        Err(e) => return corrupt(format!("cannot check {CLEAN_FILE}: {e}")),
    };
    let buf = match fs::read(&wal_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !marker => {
            // Never started here: nothing to recover.
            return Verdict::Clean { records: 0 };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return corrupt("the CLEAN marker is present but wal.log is missing".into());
        }
        Err(e) => return corrupt(format!("cannot read {}: {e}", wal_path.display())),
    };
    let scan = wal::scan(&buf);
    let records = scan.records.len();
    match scan.tail {
        Tail::Corrupt { reason, .. } => corrupt(reason),
        Tail::Torn {
            offset,
            bytes,
            reason,
        } => Verdict::Dirty {
            records,
            torn_tail_bytes: bytes,
            reason: format!("torn tail at offset {offset}: {reason}"),
        },
        Tail::Clean if marker => Verdict::Clean { records },
        Tail::Clean => Verdict::Dirty {
            records,
            torn_tail_bytes: 0,
            reason: "no CLEAN marker: the last run did not dismount cleanly, or is still running"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "warden-mail-unit-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn mount_append_dismount_remount() {
        let dir = tempdir("engine");
        let (mut e, r) = Engine::open(&dir).unwrap();
        assert!(r.created && r.clean);
        assert_eq!(e.append("alice", b"hi").unwrap(), 1);
        assert_eq!(e.append("bob", b"yo").unwrap(), 2);
        assert_eq!(e.append("alice", b"again").unwrap(), 3);
        assert!(e.append("Bad Name", b"x").is_err());
        assert_eq!(e.mailbox("alice").len(), 2);
        assert_eq!(
            e.since(1, 10).iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(e.since(0, 1).len(), 1);
        assert!(e.since(99, 10).is_empty());
        // A second mount of the same directory is refused while this one lives.
        assert!(matches!(Engine::open(&dir), Err(OpenError::Io(_))));
        assert!(matches!(
            verify(&dir),
            Verdict::Dirty {
                torn_tail_bytes: 0,
                ..
            }
        ));
        e.dismount().unwrap();
        drop(e);
        assert_eq!(verify(&dir), Verdict::Clean { records: 3 });
        let (e, r) = Engine::open(&dir).unwrap();
        assert!(r.clean && !r.created);
        assert_eq!((e.len(), e.last_seq()), (3, 3));
        assert!(!dir.join(CLEAN_FILE).exists());
        drop(e);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copied_records_are_durable_before_they_are_replayed() {
        let dir = tempdir("copied");
        let (mut e, _) = Engine::open(&dir).unwrap();
        let rec = |seq: u64| Record {
            seq,
            mailbox: "carol".into(),
            body: format!("copy {seq}").into_bytes(),
        };
        assert_eq!(e.append_replicated(vec![rec(1), rec(2)]).unwrap(), 2);
        assert_eq!((e.position(), e.last_seq(), e.replay_queue()), (2, 0, 2));
        assert_eq!(e.crc_at(2), Some(wal::record_crc(&rec(2))));
        assert_eq!((e.crc_at(0), e.crc_at(3)), (None, None));
        // A gap or a repeat is refused and writes nothing.
        assert!(e.append_replicated(vec![rec(4)]).is_err());
        assert!(e.append_replicated(vec![rec(2)]).is_err());
        assert_eq!(e.replay(), 2);
        assert_eq!(
            (e.position(), e.last_seq(), e.mailbox("carol").len()),
            (2, 2, 2)
        );
        assert_eq!(e.append("carol", b"own").unwrap(), 3);
        drop(e);
        let (mut e, _) = Engine::open(&dir).unwrap();
        assert_eq!(e.position(), 3);
        e.reset().unwrap();
        assert_eq!(
            (e.position(), e.last_seq(), e.mailbox("carol").len()),
            (0, 0, 0)
        );
        assert_eq!(fs::metadata(dir.join(WAL_FILE)).unwrap().len(), 0);
        drop(e);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crash_then_recover_cuts_only_the_torn_tail() {
        let dir = tempdir("torn");
        let (mut e, _) = Engine::open(&dir).unwrap();
        e.append("alice", b"one").unwrap();
        e.append("alice", b"two").unwrap();
        drop(e); // no dismount: a crash
        let wal_path = dir.join(WAL_FILE);
        let good = fs::metadata(&wal_path).unwrap().len();
        let half = wal::encode(3, "alice", b"three");
        let mut f = OpenOptions::new().append(true).open(&wal_path).unwrap();
        f.write_all(&half[..half.len() / 2]).unwrap();
        drop(f);
        let torn = (half.len() / 2) as u64;
        assert_eq!(
            verify(&dir),
            Verdict::Dirty {
                records: 2,
                torn_tail_bytes: torn,
                reason: format!("torn tail at offset {good}: short read")
            }
        );
        let (mut e, r) = Engine::open(&dir).unwrap();
        assert!(!r.clean);
        assert_eq!((r.records, r.dropped_tail), (2, torn));
        assert_eq!(fs::metadata(&wal_path).unwrap().len(), good);
        assert_eq!(e.append("alice", b"three").unwrap(), 3);
        drop(e);
        fs::remove_dir_all(&dir).unwrap();
    }
}
