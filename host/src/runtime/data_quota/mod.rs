//! A size quota on each resource's `/data`: bytes and directory entries.
//!
//! A plugin that fills the disk through its `/data` stops the agent's own
//! store and every other resource on the node, so the agent, not a
//! file-system quota the operator may never set up, bounds what a plugin
//! can put there. Every WASI call that grows `/data` asks [`DataQuota`]
//! first (`filesystem.rs` intercepts `wasi:filesystem/types`, `stream.rs`
//! the output streams it hands out); a call that would pass the quota fails
//! with `insufficient-space` (ENOSPC to the guest) and nothing else changes.
//!
//! The accounting is conservative and cheap: usage is measured by a walk
//! of the directory (`walk.rs`, bounded, without following links) the
//! first time it is needed, then every growth the plugin asks for is added
//! to that figure, with no walk per write. Overwrites and failed calls are
//! counted as growth too, so the estimate only errs high; when it says the
//! quota is reached and something changed since the last walk (or that
//! walk is older than two seconds), a new walk corrects it before anything
//! is refused. The state lives in the
//! resource's `ResourceContext`, so it outlives the stores built for it.
//!
//! What the managed process (native code the operator allowed) writes in
//! its working directory counts at each walk but is not limited: the agent
//! sees only what goes through WASI.

mod filesystem;
mod stream;
mod walk;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use filesystem::{QuotaFilesystem, add_to_linker};

/// The default quota on a resource's `/data`: 256 MiB.
pub const DEFAULT_DATA_QUOTA_BYTES: u64 = 256 << 20;
/// The default quota on the entries (files, directories, links) in a
/// resource's `/data`.
pub const DEFAULT_DATA_QUOTA_ENTRIES: u64 = 10_000;
/// The largest entry quota an operator may set: a walk visits up to one
/// more entry than the quota, so this bounds the cost of a walk.
pub const MAX_DATA_QUOTA_ENTRIES: u64 = 1_000_000;

/// How old a walk may be before a refusal walks again although the plugin
/// changed nothing: the managed process may have freed room meanwhile.
const REMEASURE_AFTER: Duration = Duration::from_secs(2);

/// Walks of one directory are spaced by at least this, and by at least
/// `WALK_SPACING_FACTOR` times the last walk's length: a plugin that
/// frees a byte before every write (unlink, truncate) gets its writes
/// slowed, not a walk of up to a million entries per write.
const MIN_WALK_GAP: Duration = Duration::from_millis(100);
const WALK_SPACING_FACTOR: u32 = 4;

/// How much one resource may keep in its `/data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Bytes in files and symbolic links (their apparent size: a sparse
    /// file counts at its length, since the plugin may fill it).
    pub bytes: u64,
    /// Files, directories and links, each counted once.
    pub entries: u64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            bytes: DEFAULT_DATA_QUOTA_BYTES,
            entries: DEFAULT_DATA_QUOTA_ENTRIES,
        }
    }
}

/// What one call would add to `/data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// Bytes added.
    pub bytes: u64,
    /// Entries added (files, directories, links).
    pub entries: u64,
}

impl Growth {
    /// A growth of `bytes` bytes and no entry.
    pub fn bytes(bytes: u64) -> Growth {
        Growth { bytes, entries: 0 }
    }

    /// A new entry of `bytes` bytes.
    pub fn entry(bytes: u64) -> Growth {
        Growth { bytes, entries: 1 }
    }
}

/// The answer to a growth that was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the quota; counted.
    Admitted,
    /// Over the estimate, but the estimate may be stale: walk, then ask
    /// again.
    Measure,
    /// Over the quota as last measured, and nothing changed since.
    Refused,
}

/// What a write through a stream may write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Up to this many bytes (never 0).
    Bytes(u64),
    Measure,
    Refused,
}

/// The quota of one resource's `/data` and its running estimate of usage.
#[derive(Debug)]
pub struct DataQuota {
    resource: Arc<str>,
    dir: PathBuf,
    limits: QuotaLimits,
    /// See [`REMEASURE_AFTER`].
    remeasure_after: Duration,
    usage: Mutex<Usage>,
}

/// Usage as last measured plus every growth admitted since.
#[derive(Debug, Default)]
struct Usage {
    /// When the last walk was made; `None` until the first.
    measured: Option<Instant>,
    bytes: u64,
    entries: u64,
    /// Something was admitted, removed or shrunk since the last walk, so
    /// a walk could find less than the estimate.
    changed: bool,
    /// In a burst of refusals, which is logged once.
    refusing: bool,
    /// How many walks were made (for tests and benchmarks).
    walks: u64,
    /// How long the last walk took: the next waits a few times that.
    walk_took: Duration,
    /// Everything ever admitted: what was admitted while a walk ran (and
    /// may have landed after it passed the file) is added to its finding.
    admitted: Growth,
}

impl DataQuota {
    /// The quota `limits` on `dir`, the data directory of `resource`.
    /// Nothing is read yet: the first growth measures the directory.
    pub fn new(resource: Arc<str>, dir: PathBuf, limits: QuotaLimits) -> DataQuota {
        DataQuota {
            resource,
            dir,
            limits,
            remeasure_after: REMEASURE_AFTER,
            usage: Mutex::default(),
        }
    }

    /// How many walks of the directory were made so far.
    pub fn walks(&self) -> u64 {
        self.lock().walks
    }

    /// The usage, even if a thread panicked while holding it: every update
    /// leaves it consistent, so there is nothing to repair.
    fn lock(&self) -> MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count `growth` if it fits the estimate; otherwise say whether a
    /// walk could help. Never blocks.
    pub(crate) fn try_charge(&self, growth: Growth) -> Verdict {
        let mut usage = self.lock();
        if usage.measured.is_none() {
            return Verdict::Measure;
        }
        let bytes = usage.bytes.saturating_add(growth.bytes);
        let entries = usage.entries.saturating_add(growth.entries);
        let fits = (growth.bytes == 0 || bytes <= self.limits.bytes)
            && (growth.entries == 0 || entries <= self.limits.entries);
        if fits {
            usage.bytes = bytes;
            usage.entries = entries;
            usage.admitted.bytes = usage.admitted.bytes.saturating_add(growth.bytes);
            usage.admitted.entries = usage.admitted.entries.saturating_add(growth.entries);
            usage.changed |= growth != Growth::default();
            usage.refusing = false;
            Verdict::Admitted
        } else if self.stale(&usage) {
            Verdict::Measure
        } else {
            Verdict::Refused
        }
    }

    /// How many bytes a stream may write now. Never blocks.
    pub(crate) fn stream_permit(&self) -> Permit {
        let usage = self.lock();
        if usage.measured.is_none() {
            return Permit::Measure;
        }
        match self.limits.bytes.saturating_sub(usage.bytes) {
            0 if self.stale(&usage) => Permit::Measure,
            0 => Permit::Refused,
            left => Permit::Bytes(left),
        }
    }

    /// Whether a walk could find less than the estimate: the plugin
    /// changed something since the last walk, or it is old.
    fn stale(&self, usage: &Usage) -> bool {
        usage.changed
            || usage
                .measured
                .is_none_or(|at| at.elapsed() >= self.remeasure_after)
    }

    /// Something in `/data` was removed or shrunk (or may have been): the
    /// next time the estimate says full, walk before refusing.
    pub(crate) fn note_change(&self) {
        self.lock().changed = true;
    }

    /// Count `growth`, walking the directory first if the estimate is
    /// stale and says it does not fit. `Err` if it does not fit the quota.
    pub(crate) async fn charge(&self, growth: Growth) -> Result<(), QuotaExceeded> {
        match self.try_charge(growth) {
            Verdict::Admitted => return Ok(()),
            Verdict::Refused => {
                self.refused(growth);
                return Err(QuotaExceeded);
            }
            Verdict::Measure => self.measure().await,
        }
        match self.try_charge(growth) {
            Verdict::Admitted => Ok(()),
            // Measured just now: a second walk would find the same.
            Verdict::Measure | Verdict::Refused => {
                self.refused(growth);
                Err(QuotaExceeded)
            }
        }
    }

    /// Walk the directory (off the async workers) and make the result the
    /// estimate.
    pub(crate) async fn measure(&self) {
        let wait = {
            let usage = self.lock();
            let gap = MIN_WALK_GAP.max(usage.walk_took * WALK_SPACING_FACTOR);
            usage.measured.map(|at| gap.saturating_sub(at.elapsed()))
        };
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        let started = Instant::now();
        let admitted_before = self.lock().admitted;
        let dir = self.dir.clone();
        let limits = self.limits;
        let measured = tokio::task::spawn_blocking(move || walk::measure(&dir, limits)).await;
        let found = match measured {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                // The directory cannot be read: count it as full rather than
                // let writes through unmeasured. Every refusal is logged
                // with the reason of the last walk.
                tracing::warn!(
                    resource = &*self.resource,
                    "cannot measure the data directory {}: {e}; counting it as full",
                    self.dir.display()
                );
                walk::Found::full(limits)
            }
            Err(e) => {
                tracing::warn!(
                    resource = &*self.resource,
                    "measuring the data directory {} failed: {e}; counting it as full",
                    self.dir.display()
                );
                walk::Found::full(limits)
            }
        };
        let mut usage = self.lock();
        usage.measured = Some(Instant::now());
        // Over-counts what landed before the walk passed it; the next walk
        // corrects that. Never under-counts.
        let during = usage.admitted;
        usage.bytes = found
            .bytes
            .saturating_add(during.bytes.saturating_sub(admitted_before.bytes));
        usage.entries = found
            .entries
            .saturating_add(during.entries.saturating_sub(admitted_before.entries));
        usage.changed = false;
        usage.walks += 1;
        usage.walk_took = started.elapsed();
    }

    /// `growth` was refused: log it if it is the first refusal of a burst
    /// (the next admitted growth ends the burst).
    pub(crate) fn refused(&self, growth: Growth) {
        let mut usage = self.lock();
        if usage.refusing {
            return;
        }
        usage.refusing = true;
        let what = if growth.entries > 0
            && usage.entries.saturating_add(growth.entries) > self.limits.entries
        {
            format!("{} of {} entries used", usage.entries, self.limits.entries)
        } else {
            format!(
                "{} of {} bytes used, {} more asked for",
                usage.bytes, self.limits.bytes, growth.bytes
            )
        };
        tracing::warn!(
            resource = &*self.resource,
            "the data directory is full ({what}): the plugin's writes fail with \
             insufficient-space until it frees room (quota: [plugins.TYPE] \
             data_quota_mib, data_quota_files)"
        );
    }
}

/// A growth that does not fit the quota; the guest sees
/// `insufficient-space` (ENOSPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuotaExceeded;

impl From<QuotaExceeded> for std::io::Error {
    fn from(_: QuotaExceeded) -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(dir: &std::path::Path, bytes: u64, entries: u64) -> DataQuota {
        DataQuota {
            // Only changes make a walk stale here, not the clock.
            remeasure_after: Duration::MAX,
            ..DataQuota::new(
                "r".into(),
                dir.to_path_buf(),
                QuotaLimits { bytes, entries },
            )
        }
    }

    #[tokio::test]
    async fn growth_is_counted_until_the_quota_then_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let quota = quota(dir.path(), 100, 3);
        assert_eq!(quota.charge(Growth::entry(60)).await, Ok(()));
        assert_eq!(quota.walks(), 1, "measured once, at the first growth");
        assert_eq!(quota.charge(Growth::bytes(40)).await, Ok(()));
        // Full by the estimate; the walk finds nothing (no file was
        // written), so the estimate was high: corrected, then admitted.
        assert_eq!(quota.charge(Growth::bytes(1)).await, Ok(()));
        assert_eq!(quota.walks(), 2);
        std::fs::write(dir.path().join("f"), [0u8; 100]).expect("write");
        quota.note_change();
        assert_eq!(quota.charge(Growth::bytes(100)).await, Err(QuotaExceeded));
        assert_eq!(quota.walks(), 3);
        // Nothing changed since: refused without another walk.
        assert_eq!(quota.charge(Growth::bytes(1)).await, Err(QuotaExceeded));
        assert_eq!(quota.walks(), 3);
        // Entries are their own limit: bytes full, entries not.
        assert_eq!(quota.charge(Growth::entry(0)).await, Ok(()));
        assert_eq!(quota.stream_permit(), Permit::Measure);
    }
}
