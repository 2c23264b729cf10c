//! The embedded store: a node's desired configuration, crash-safe.
//!
//! redb commits are durable when `commit` returns (it syncs to disk), so a
//! change the admin API acknowledged survives `kill -9` of the agent at any
//! moment. Nothing to install: the store is one file in the data directory.
//! Besides the configuration it keeps the server component states and what
//! the node remembers about its types' versions (pins, rejected builds).

use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::components::ComponentStates;
use crate::desired::Desired;
use crate::plugin_versions::VersionRecord;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("warden");
const DESIRED: &str = "desired";
const COMPONENTS: &str = "components";
const PLUGIN_VERSIONS: &str = "plugin-versions";

pub struct Store {
    db: Database,
}

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        Ok(Store { db })
    }

    /// The desired configuration, if one was ever saved.
    pub fn load_desired(&self) -> Result<Option<Desired>> {
        self.load(DESIRED)
    }

    /// Save the desired configuration; durable when this returns.
    pub fn save_desired(&self, desired: &Desired) -> Result<()> {
        self.save(DESIRED, desired)
    }

    /// The node's server component states, if any were ever set.
    pub fn load_components(&self) -> Result<Option<ComponentStates>> {
        self.load(COMPONENTS)
    }

    /// Save the node's server component states; durable when this returns.
    pub fn save_components(&self, states: &ComponentStates) -> Result<()> {
        self.save(COMPONENTS, states)
    }

    /// The types' pins and rejected builds (empty if none were recorded).
    pub fn load_versions(&self) -> Result<VersionRecord> {
        Ok(self.load(PLUGIN_VERSIONS)?.unwrap_or_default())
    }

    /// Save the types' pins and rejected builds; durable when this returns.
    pub fn save_versions(&self, record: &VersionRecord) -> Result<()> {
        self.save(PLUGIN_VERSIONS, record)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let read = self.db.begin_read().context("reading the store")?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err).context("opening the store's table"),
        };
        let Some(value) = table
            .get(key)
            .with_context(|| format!("reading {key} from the store"))?
        else {
            return Ok(None);
        };
        let decoded = serde_json::from_slice(value.value())
            .with_context(|| format!("decoding {key} from the store"))?;
        Ok(Some(decoded))
    }

    fn save<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).with_context(|| format!("encoding {key}"))?;
        let write = self
            .db
            .begin_write()
            .context("starting a store transaction")?;
        {
            let mut table = write
                .open_table(TABLE)
                .context("opening the store's table")?;
            table
                .insert(key, bytes.as_slice())
                .with_context(|| format!("writing {key} to the store"))?;
        }
        write.commit().context("committing to the store")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_saved_is_loaded_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warden.redb");
        {
            let store = Store::open(&path).expect("open");
            assert_eq!(store.load_desired().expect("load"), None);
            let mut desired = Desired::default();
            desired.online.insert("evs".to_string());
            store.save_desired(&desired).expect("save");
        }
        let store = Store::open(&path).expect("reopen");
        let loaded = store.load_desired().expect("load").expect("saved");
        assert!(loaded.online.contains("evs"));
    }
}
