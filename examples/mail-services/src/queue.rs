//! The MTA's on-disk queue: one file per (message, recipient).
//!
//! The MTA answers `250` only once a message is in this queue and fsync'ed,
//! so a crash after the `250` loses nothing: the files are there at the next
//! start and delivery resumes. One file per recipient makes delivery
//! progress exact: a file is removed once the store has acknowledged its PUT.
//! A crash between the store's `OK` and the removal delivers that one copy
//! twice on restart; SMTP is at-least-once by design, and that is the only
//! duplicate this queue can make.
//!
//! Layout under the data directory: `queue/` holds messages waiting for
//! delivery, `tmp/` holds files being written (emptied at start: a file there
//! was never acknowledged), `bad/` holds files that cannot be read back or
//! that the store refused for good, for an operator to look at. Queue file
//! names sort in arrival order.
//!
//! File format: a text head, a blank line, then the body bytes:
//!
//! ```text
//! warden-mta-queue 1
//! from <sender address, empty for the null sender>
//! mailbox <name>
//! crc <crc32 of the body, 8 lowercase hex digits>
//!
//! <body>
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::checksum::crc32;
use crate::fsutil::{self, Context};
use crate::mailbox;

#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// The file name: `<id>.<n>.msg`.
    pub name: String,
    pub from: String,
    pub mailbox: String,
    pub body: Vec<u8>,
}

pub struct Queue {
    queue: PathBuf,
    tmp: PathBuf,
    bad: PathBuf,
    counter: AtomicU64,
    _lock: File,
}

impl Queue {
    /// Opens (creating) the queue in `dir` and locks it for this process.
    pub fn open(dir: &Path) -> io::Result<Queue> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let lock = fsutil::lock_dir(dir)?;
        let q = Queue {
            queue: dir.join("queue"),
            tmp: dir.join("tmp"),
            bad: dir.join("bad"),
            counter: AtomicU64::new(0),
            _lock: lock,
        };
        for d in [&q.queue, &q.tmp, &q.bad] {
            fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        for entry in fs::read_dir(&q.tmp).with_context(|| format!("list {}", q.tmp.display()))? {
            let path = entry?.path();
            fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
        fsutil::fsync_dir(dir)?;
        Ok(q)
    }

    fn new_id(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:016x}{:04x}", n & 0xffff)
    }

    /// Writes one file per mailbox and makes them all durable; returns the
    /// message's queue id. On error nothing was acknowledged, though some
    /// files may already be queued (they will be delivered).
    pub fn enqueue(&self, from: &str, mailboxes: &[String], body: &[u8]) -> io::Result<String> {
        let id = self.new_id();
        let crc = crc32(body);
        let mut written = Vec::new();
        for (n, mbox) in mailboxes.iter().enumerate() {
            debug_assert!(mailbox::is_valid(mbox));
            let name = format!("{id}.{n}.msg");
            let tmp = self.tmp.join(&name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("create {}", tmp.display()))?;
            write!(
                f,
                "warden-mta-queue 1\nfrom {from}\nmailbox {mbox}\ncrc {crc:08x}\n\n"
            )
            .and_then(|()| f.write_all(body))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("write {}", tmp.display()))?;
            written.push(name);
        }
        for name in &written {
            let (src, dst) = (self.tmp.join(name), self.queue.join(name));
            fs::rename(&src, &dst)
                .with_context(|| format!("rename {} to {}", src.display(), dst.display()))?;
        }
        fsutil::fsync_dir(&self.queue)?;
        fsutil::fsync_dir(&self.tmp)?;
        Ok(id)
    }

    /// Queued files, oldest first.
    pub fn pending(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in
            fs::read_dir(&self.queue).with_context(|| format!("list {}", self.queue.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "msg") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Reads a queued file back; `Err` says why it is unusable.
    pub fn load(&self, path: &Path) -> Result<Entry, String> {
        let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no blank line after the head")?;
        let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "head is not UTF-8")?;
        let body = bytes[split + 2..].to_vec();
        let mut lines = head.lines();
        if lines.next() != Some("warden-mta-queue 1") {
            return Err("not a version 1 queue file".into());
        }
        let mut field = |key: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| format!("missing {key} line"))
        };
        let from = field("from")?;
        let mbox = field("mailbox")?;
        let crc = field("crc")?;
        if !mailbox::is_valid(&mbox) {
            return Err(format!("invalid mailbox {mbox:?}"));
        }
        if u32::from_str_radix(&crc, 16).ok() != Some(crc32(&body)) {
            return Err("body checksum mismatch".into());
        }
        Ok(Entry {
            path: path.to_path_buf(),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            from,
            mailbox: mbox,
            body,
        })
    }

    /// Removes a delivered file (durably, so it is not delivered again).
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
        fsutil::fsync_dir(&self.queue)
    }

    /// Moves an unusable file to `bad/`.
    pub fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("queue file without a name"))?;
        let dst = self.bad.join(name);
        fs::rename(path, &dst)
            .with_context(|| format!("move {} to {}", path.display(), dst.display()))?;
        fsutil::fsync_dir(&self.queue)?;
        Ok(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_load_remove() {
        let dir =
            std::env::temp_dir().join(format!("warden-mail-unit-queue-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let q = Queue::open(&dir).unwrap();
        let id = q
            .enqueue("a@b", &["alice".into(), "bob".into()], b"hi\r\n\n\nthere")
            .unwrap();
        let id2 = q.enqueue("", &["carol".into()], b"").unwrap();
        let files = q.pending().unwrap();
        assert_eq!(files.len(), 3);
        let e = q.load(&files[0]).unwrap();
        assert_eq!((e.from.as_str(), e.mailbox.as_str()), ("a@b", "alice"));
        assert_eq!(e.body, b"hi\r\n\n\nthere");
        assert!(e.name.starts_with(&id));
        let e = q.load(&files[2]).unwrap();
        assert!(e.name.starts_with(&id2) && e.from.is_empty() && e.body.is_empty());
        q.remove(&files[0]).unwrap();
        fs::write(&files[1], b"garbage").unwrap();
        assert!(q.load(&files[1]).is_err());
        q.quarantine(&files[1]).unwrap();
        assert_eq!(q.pending().unwrap(), [files[2].clone()]);
        drop(q);
        fs::remove_dir_all(&dir).unwrap();
    }
}
