//! The few file-system moves that durability rests on.
//!
//! Why a module: "write it, fsync it, rename it, fsync the directory" is easy
//! to get almost right, and every service with state (store, MTA, indexer)
//! needs it. A rename or a new file is durable only once its *directory* is
//! fsync'ed, which is the step most often forgotten.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

/// Adds context to an I/O error while keeping its kind, so callers can still
/// match on `ErrorKind` and operators read what was being done.
pub trait Context<T> {
    fn context<C: Display>(self, what: C) -> io::Result<T>;
    fn with_context<C: Display, F: FnOnce() -> C>(self, what: F) -> io::Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context<C: Display>(self, what: C) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, what: F) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
    }
}

/// Makes the directory entries of `dir` (new files, renames, removals) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))
}

/// Replaces `dir/name` with `bytes` atomically: a reader (or a crash) sees
/// the old file or the new one, never a mix.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, &target)
        .with_context(|| format!("rename {} to {}", tmp.display(), target.display()))?;
    fsync_dir(dir)
}

/// Takes an exclusive lock on `dir/lock` for the life of the returned file.
///
/// Why: two processes appending to one write-ahead log (or delivering one
/// queue) would corrupt it. In a cluster the shared disk is fenced by the
/// cluster itself; this lock catches the same mistake on one machine, e.g. a
/// supervisor that starts a second copy before the first has gone. The
/// kernel drops the lock when the process dies, even by SIGKILL.
pub fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another process (it holds the lock on {})",
                dir.display(),
                path.display()
            ),
        )),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("lock {}", path.display())),
    }
}
