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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Checkpoints as a JSON file in a resource's data directory, replaced
/// atomically (temp file, fsync, rename, fsync of the directory), so a crash
/// leaves either the old record or the new one, never a torn one.
///
/// The file is inside the directory the plugin sees as `/data`: a plugin
/// can read or spoil its own record, nobody else's.
#[derive(Debug, Clone)]
pub struct FileCheckpoints {
    dir: PathBuf,
}

/// The file name of the record in the data directory.
pub const CHECKPOINT_FILE: &str = ".warden-checkpoint.json";

impl FileCheckpoints {
    pub fn new(data_dir: &Path) -> FileCheckpoints {
        FileCheckpoints {
            dir: data_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self, _resource: &str) -> Result<Checkpoint, String> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::new()),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a checkpoint record: {e}", path.display()))
    }

    fn save(&self, _resource: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        let path = self.path();
        let temp = self.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&serde_json::to_vec(checkpoint)?)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            // The rename itself is durable only once the directory is.
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
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
        let store: Arc<dyn CheckpointStore> = Arc::new(FileCheckpoints::new(dir.path()));
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
}
