//! Checkpoints: the small key/value record a resource keeps across
//! instances, agent restarts and (with a cluster store) nodes — registry
//! checkpointing in the Windows model.
//!
//! Where the record lives is behind [`CheckpointStore`], so that the cluster
//! store can take it over; [`FileCheckpoints`] keeps it as JSON in the
//! resource's data directory and is the default. [`Checkpoints`] is what the
//! `checkpoint` import reaches: it caches the record, enforces the size cap
//! and writes every change through before the call returns.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::host_state::ResourceDirs;
use super::private_file::{Flush, read_bounded, replace};

/// The whole record of one resource.
pub type Checkpoint = BTreeMap<String, String>;

/// The most bytes (keys plus values) one resource's record may hold.
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;

/// Where checkpoints are kept. Implementations may block (they are called
/// on a blocking thread); errors are texts an operator can act on.
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// The record of `resource`; empty if it has none yet.
    fn load(&self, resource: &str) -> Result<Checkpoint, String>;
    /// Replace the record of `resource`, durably, before returning.
    fn save(&self, resource: &str, checkpoint: &Checkpoint) -> Result<(), String>;
    /// Whether a record read once may be kept in memory. Not when another
    /// node may write it in between (the cluster's store: the group moves
    /// away and back).
    fn cacheable(&self) -> bool {
        true
    }
}

/// Checkpoints as a JSON file in a resource's private directory, replaced
/// atomically (temp file, fsync, rename, fsync of the directory), so a crash
/// leaves either the old record or the new one, never a torn one.
///
/// The file is out of the plugin's reach (it is not under `/data`): a
/// plugin changes its record only through the `checkpoint` import, with
/// its cap. Earlier agents kept it in the data directory; that file is
/// taken over once (read as untrusted input: no link followed, size
/// bounded) and removed.
#[derive(Debug, Clone)]
pub struct FileCheckpoints {
    dir: PathBuf,
    /// Where an earlier agent kept the record, inside the data directory.
    legacy: PathBuf,
}

/// The file name of the record in the private directory (and, for
/// records of earlier agents, in the data directory).
pub const CHECKPOINT_FILE: &str = ".warden-checkpoint.json";

/// The most bytes a record file may hold: the cap on keys and values,
/// with room for JSON's quoting and escapes (up to six bytes a character).
const MAX_RECORD_FILE: u64 = (MAX_CHECKPOINT_BYTES as u64) * 6 + 4096;

impl FileCheckpoints {
    /// Checkpoints in the resource's private directory (a node alone).
    pub fn new(dirs: &ResourceDirs) -> FileCheckpoints {
        FileCheckpoints {
            dir: dirs.private.clone(),
            legacy: dirs.data.join(CHECKPOINT_FILE),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, String> {
        let record: Checkpoint = serde_json::from_slice(bytes)
            .map_err(|e| format!("{} is not a checkpoint record: {e}", path.display()))?;
        let size: usize = record.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_CHECKPOINT_BYTES {
            return Err(format!(
                "{} holds {size} bytes of keys and values, over the cap of {MAX_CHECKPOINT_BYTES}",
                path.display()
            ));
        }
        Ok(record)
    }

    /// The record an earlier agent left in the data directory, moved into
    /// the private directory. A record the plugin could have replaced by a
    /// link or a device is refused (and left alone): it is not the agent's.
    fn take_over_legacy(&self) -> Result<Checkpoint, String> {
        let bytes = match read_bounded(&self.legacy, MAX_RECORD_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Checkpoint::new()),
            Err(e) => {
                tracing::warn!(
                    "not taking over the checkpoint record of an earlier agent: {e}; \
                     the resource starts with an empty record"
                );
                return Ok(Checkpoint::new());
            }
        };
        let record = match FileCheckpoints::parse(&self.legacy, &bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!("not taking over the checkpoint record of an earlier agent: {e}");
                return Ok(Checkpoint::new());
            }
        };
        self.save("", &record)?;
        let _ = std::fs::remove_file(&self.legacy);
        tracing::info!(
            "took over the checkpoint record {} into {}",
            self.legacy.display(),
            self.path().display()
        );
        Ok(record)
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self, _resource: &str) -> Result<Checkpoint, String> {
        let path = self.path();
        match read_bounded(&path, MAX_RECORD_FILE) {
            Ok(Some(bytes)) => FileCheckpoints::parse(&path, &bytes),
            Ok(None) => self.take_over_legacy(),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    fn save(&self, _resource: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        let bytes = serde_json::to_vec(checkpoint)
            .map_err(|e| format!("encoding the checkpoint record: {e}"))?;
        replace(&self.dir, CHECKPOINT_FILE, &bytes, Flush::ToDisk)
            .map_err(|e| format!("writing {}: {e}", self.path().display()))
    }
}

/// One resource's checkpoints as the `checkpoint` import sees them.
#[derive(Debug)]
pub struct Checkpoints {
    resource: Arc<str>,
    store: Arc<dyn CheckpointStore>,
    /// The record as last loaded or saved; `None` until first use, and
    /// again after a save that did not finish (a cut-off call), so that the
    /// next use reloads what really is stored.
    cached: Mutex<Option<Checkpoint>>,
}

impl Checkpoints {
    /// Checkpoints of `resource` in `store`.
    pub fn new(resource: Arc<str>, store: Arc<dyn CheckpointStore>) -> Checkpoints {
        Checkpoints {
            resource,
            store,
            cached: Mutex::new(None),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Checkpoint>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole record, loading it on first use.
    pub async fn all(&self) -> Result<Checkpoint, String> {
        if let Some(record) = &*self.cache() {
            return Ok(record.clone());
        }
        let (store, resource) = (self.store.clone(), self.resource.clone());
        let record = blocking(move || store.load(&resource)).await?;
        if self.store.cacheable() {
            *self.cache() = Some(record.clone());
        }
        Ok(record)
    }

    /// Apply `change` to the record and save it; nothing changes if the
    /// result is over the cap or cannot be saved.
    pub async fn update(&self, change: impl FnOnce(&mut Checkpoint)) -> Result<(), String> {
        let mut record = self.all().await?;
        change(&mut record);
        let size: usize = record.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_CHECKPOINT_BYTES {
            return Err(format!(
                "the checkpoint of {} would hold {size} bytes, over its cap of \
                 {MAX_CHECKPOINT_BYTES} bytes (keys and values); nothing was changed",
                self.resource
            ));
        }
        *self.cache() = None;
        let (store, resource) = (self.store.clone(), self.resource.clone());
        let saved = record.clone();
        blocking(move || store.save(&resource, &saved)).await?;
        if self.store.cacheable() {
            *self.cache() = Some(record);
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the checkpoint task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_a_new_cache_and_respect_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = ResourceDirs::inside(dir.path());
        dirs.create().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileCheckpoints::new(&dirs));
        let one = Checkpoints::new("r".into(), store.clone());
        one.update(|r| {
            r.insert("k".into(), "v".into());
        })
        .await
        .unwrap();
        let two = Checkpoints::new("r".into(), store);
        assert_eq!(
            two.all().await.unwrap().get("k").map(String::as_str),
            Some("v")
        );
        let err = two
            .update(|r| {
                r.insert("big".into(), "x".repeat(MAX_CHECKPOINT_BYTES));
            })
            .await
            .unwrap_err();
        assert!(err.contains("over its cap of 65536 bytes"), "{err}");
        assert_eq!(two.all().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_earlier_agents_record_is_taken_over_but_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = ResourceDirs::inside(dir.path());
        dirs.create().unwrap();
        std::fs::write(dirs.data.join(CHECKPOINT_FILE), r#"{"k":"v"}"#).unwrap();
        let store = FileCheckpoints::new(&dirs);
        assert_eq!(
            store.load("r").unwrap().get("k").map(String::as_str),
            Some("v")
        );
        assert!(!dirs.data.join(CHECKPOINT_FILE).exists());
        assert!(dirs.private.join(CHECKPOINT_FILE).exists());

        // A plugin's link at the old place is not followed.
        let other = tempfile::tempdir().unwrap();
        let dirs = ResourceDirs::inside(other.path());
        dirs.create().unwrap();
        let outside = other.path().join("outside.json");
        std::fs::write(&outside, r#"{"secret":"x"}"#).unwrap();
        std::os::unix::fs::symlink(&outside, dirs.data.join(CHECKPOINT_FILE)).unwrap();
        let store = FileCheckpoints::new(&dirs);
        assert!(store.load("r").unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(&outside).unwrap(),
            r#"{"secret":"x"}"#
        );
    }
}
