//! Snapshots of the log: the cluster's state at one entry, so that a
//! joining node starts there instead of replaying the log from entry 1,
//! and the entries before it can go ([`super::compact`]).
//!
//! One key, `log-snapshot`, holds the newest snapshot: the entry it was
//! taken at, the engine's clock then, the configuration in force (nodes
//! and `Desired`) and the engine's whole state
//! ([`warden_policy::EngineSnapshot`]), with a format version. Any node
//! may write one (every [`SNAPSHOT_EVERY`] entries, the node that appended
//! that entry); the write is a compare-and-swap that only a newer
//! snapshot wins, so two nodes writing, or a slow writer finishing late,
//! never replace a newer snapshot by an older one.

use anyhow::{Context, Result, anyhow, bail};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_policy::{
    ClusterConfig, Engine, EngineSnapshot, Millis, NodeStatus, OLDEST_SNAPSHOT_FORMAT,
    RestoreError, SNAPSHOT_FORMAT,
};

use super::Keys;
use super::etcd::Etcd;
use crate::desired::Desired;

/// The version of the snapshot record's format (the engine's state inside
/// has its own, [`SNAPSHOT_FORMAT`]). A record of another version is
/// refused, never half read.
pub const FORMAT: u32 = 1;

/// How often a snapshot is taken: after every entry whose number is a
/// multiple of it. Small enough that a joiner replays at most this many
/// entries after the snapshot (plus what the compaction keeps), large
/// enough that writing the snapshot (the whole configuration and state)
/// costs little against the entries it saves.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// How many compare-and-swap races a write may lose before giving up.
const WRITE_RACES: usize = 100;

/// The cluster's state after entry `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSnapshot {
    /// The snapshot's format: a node refuses one of another format
    /// (`SNAPSHOT_FORMAT`) and reads the whole log instead.
    pub format: u32,
    /// The last entry the state includes.
    pub seq: u64,
    /// The engine's clock after that entry (the latest entry time seen):
    /// the node's clock starts from it.
    pub at: Millis,
    /// The configuration in force: the cluster's nodes and what the last
    /// configuration entry applied said.
    pub nodes: Vec<String>,
    /// The configuration in force at that entry.
    pub desired: Desired,
    /// The policy engine's whole state at that entry.
    pub engine: EngineSnapshot,
}

/// What [`write_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The snapshot is now the newest.
    Written,
    /// A snapshot of this entry or a later one was there: kept.
    Kept {
        /// A snapshot of a later entry (`there`) is there already: it stays.
        there: u64,
    },
}

impl LogSnapshot {
    /// A snapshot taken after entry `seq`, at time `now_ms`, of the
    /// configuration and the engine's state.
    pub fn new(
        seq: u64,
        at: Millis,
        nodes: Vec<String>,
        desired: Desired,
        engine: EngineSnapshot,
    ) -> LogSnapshot {
        LogSnapshot {
            format: FORMAT,
            seq,
            at,
            nodes,
            desired,
            engine,
        }
    }

    /// The nodes the state counts as up (whatever their status but Down):
    /// what the link's `up` set starts from.
    pub fn nodes_up(&self) -> impl Iterator<Item = &str> {
        self.engine
            .nodes()
            .filter(|(_, status)| *status != NodeStatus::Down)
            .map(|(name, _)| name)
    }

    /// The engine as this snapshot has it, under `config`: this node's
    /// reading of the snapshot's configuration (`desired.cluster_config`
    /// with the snapshot's nodes). If it differs from the one the snapshot
    /// was taken under (this node's plugins declare other singleton types,
    /// say), the state is restored under its own configuration and then
    /// reconfigured, as applying a configuration entry would; a refusal is
    /// an error that says why.
    pub fn restore_engine(&self, config: ClusterConfig) -> Result<Engine> {
        let what = || format!("restoring the snapshot of entry {}", self.seq);
        match Engine::restore(config.clone(), self.engine.clone()) {
            Ok(engine) => Ok(engine),
            Err(RestoreError::OtherConfiguration(difference)) => {
                let mut engine = Engine::restore(self.engine.config().clone(), self.engine.clone())
                    .map_err(anyhow::Error::from)
                    .with_context(what)?;
                engine
                    .reconfigure(config, self.at)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!(
                            "{}: taken under another configuration ({difference}), which this \
                             node's does not replace",
                            what()
                        )
                    })?;
                Ok(engine)
            }
            Err(err) => Err(anyhow::Error::from(err)).with_context(what),
        }
    }

    /// The record as stored.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).context("encoding a log snapshot")
    }

    /// The record stored under `key`; every refusal names the key and what
    /// is wrong: not JSON, another format of the record or of the engine
    /// state in it, fields missing or of the wrong kind.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<LogSnapshot> {
        let value: Value = serde_json::from_slice(bytes)
            .with_context(|| format!("{key} is not JSON ({} bytes)", bytes.len()))?;
        match value.get("format").and_then(Value::as_u64) {
            Some(format) if format == u64::from(FORMAT) => {}
            Some(format) => {
                bail!("{key} holds a snapshot of format {format}; this agent reads format {FORMAT}")
            }
            None => bail!("{key} is not a log snapshot (it has no format number)"),
        }
        // The engine reads its older formats too (format 1: before copies),
        // so a snapshot an older agent wrote still starts a newer one.
        let readable = u64::from(OLDEST_SNAPSHOT_FORMAT)..=u64::from(SNAPSHOT_FORMAT);
        match value.pointer("/engine/format").and_then(Value::as_u64) {
            Some(format) if readable.contains(&format) => {}
            found => bail!(
                "{key}: the engine state in it is of format {}; this agent reads formats \
                 {OLDEST_SNAPSHOT_FORMAT} to {SNAPSHOT_FORMAT}",
                found.map_or("(none)".to_string(), |f| f.to_string())
            ),
        }
        serde_json::from_value(value)
            .with_context(|| format!("{key} is not a log snapshot this agent understands"))
    }
}

/// Whether the node that appended entry `seq` should now take a snapshot
/// (once it has applied it). One writer per interval, so the cluster does
/// not write each snapshot once per node; if that node dies first, the
/// snapshot of the next interval covers it.
pub fn due(seq: u64, origin: &str, me: &str) -> bool {
    seq > 0 && seq.is_multiple_of(SNAPSHOT_EVERY) && origin == me
}

/// The snapshot key as stored now (its value undecoded), with the
/// revision it was read at.
pub(crate) async fn fetch(etcd: &Etcd, keys: &Keys) -> Result<etcd_client::GetResponse> {
    let key = keys.snapshot();
    etcd.request("reading the log snapshot", |mut client| {
        let key = key.clone();
        async move { client.get(key, None).await }
    })
    .await
}

/// The entry number of the snapshot stored now, and the revision that
/// stored it (0 when there is none). A record of a later format (written
/// by a newer agent) counts by its entry number: an older agent never
/// replaces it with one the newer agents could not use. A record nobody
/// can read (corrupt, of an older format, no entry number) counts as none:
/// a snapshot this agent can read replaces it, and it never lets this
/// agent compact entries away.
pub(crate) async fn current(etcd: &Etcd, keys: &Keys) -> Result<(Option<u64>, i64)> {
    let key = keys.snapshot();
    let response = fetch(etcd, keys).await?;
    let Some(kv) = response.kvs().first() else {
        return Ok((None, 0));
    };
    let seq = match LogSnapshot::decode(&key, kv.value()) {
        Ok(snapshot) => Some(snapshot.seq),
        Err(err) => match later_format(kv.value()) {
            Some(seq) => {
                tracing::warn!("{err:#}; it is kept, as a newer agent wrote it");
                Some(seq)
            }
            None => {
                tracing::warn!("{err:#}; a snapshot this agent can read will replace it");
                None
            }
        },
    };
    Ok((seq, kv.mod_revision()))
}

/// The entry number of a snapshot record of a later format than this
/// agent's, read from the two fields every format keeps (`format`, `seq`).
fn later_format(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Header {
        format: u32,
        seq: u64,
    }
    let header: Header = serde_json::from_slice(bytes).ok()?;
    (header.format > FORMAT).then_some(header.seq)
}

/// Store `snapshot` unless one of its entry or a later one is there.
pub async fn write_snapshot(etcd: &Etcd, keys: &Keys, snapshot: &LogSnapshot) -> Result<Written> {
    let key = keys.snapshot();
    let body = snapshot.encode()?;
    for _ in 0..WRITE_RACES {
        let (there, revision) = current(etcd, keys).await?;
        if let Some(there) = there.filter(|&there| there >= snapshot.seq) {
            return Ok(Written::Kept { there });
        }
        let unchanged = if revision == 0 {
            Compare::create_revision(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, revision)
        };
        let txn =
            Txn::new()
                .when([unchanged])
                .and_then([TxnOp::put(key.clone(), body.clone(), None)]);
        let answer = etcd
            .request("writing the log snapshot", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .with_context(|| {
                format!(
                    "snapshot of entry {} ({} bytes) to {key}",
                    snapshot.seq,
                    body.len()
                )
            })?;
        if answer.succeeded() {
            return Ok(Written::Written);
        }
        // Another snapshot landed meanwhile (or this one did, and its
        // answer was lost): look again.
    }
    Err(anyhow!(
        "writing the snapshot of entry {}: {key} changed under it {WRITE_RACES} times in a row",
        snapshot.seq
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_policy::{GroupConfig, ResourceConfig};

    fn snapshot(seq: u64) -> LogSnapshot {
        let mut group = GroupConfig::new("web");
        group.resources.push(ResourceConfig::new("r", "process"));
        let config = ClusterConfig {
            nodes: vec!["n1".to_string(), "n2".to_string()],
            singleton_types: Vec::new(),
            groups: vec![group],
        };
        let mut engine = Engine::new(config).expect("valid");
        engine.handle(warden_policy::Event::NodeUp("n2".to_string()), Millis(5));
        LogSnapshot::new(
            seq,
            Millis(5),
            vec!["n1".to_string(), "n2".to_string()],
            Desired::default(),
            engine.snapshot(),
        )
    }

    #[test]
    fn a_snapshot_survives_its_encoding() {
        let original = snapshot(1000);
        let bytes = original.encode().expect("encodes");
        let decoded = LogSnapshot::decode("k", &bytes).expect("decodes");
        assert_eq!(decoded, original);
        assert_eq!(decoded.nodes_up().collect::<Vec<_>>(), ["n2"]);
    }

    #[test]
    fn a_corrupt_or_future_snapshot_is_refused_naming_its_key() {
        let key = "/warden/c/log-snapshot";
        let err = LogSnapshot::decode(key, b"{not json").expect_err("refused");
        assert!(format!("{err:#}").contains(key), "{err:#}");

        let mut value: Value =
            serde_json::from_slice(&snapshot(7).encode().expect("encodes")).expect("json");
        value["format"] = Value::from(FORMAT + 1);
        let err = LogSnapshot::decode(key, value.to_string().as_bytes()).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains(key) && text.contains("format 2"), "{text}");

        value["format"] = Value::from(FORMAT);
        value["engine"]["format"] = Value::from(SNAPSHOT_FORMAT + 1);
        let err = LogSnapshot::decode(key, value.to_string().as_bytes()).expect_err("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains(key) && text.contains("engine state"),
            "{text}"
        );

        value["engine"]["format"] = Value::from(SNAPSHOT_FORMAT);
        value["seq"] = Value::from("seven");
        let err = LogSnapshot::decode(key, value.to_string().as_bytes()).expect_err("refused");
        assert!(format!("{err:#}").contains(key), "{err:#}");
    }

    #[test]
    fn only_a_later_format_with_an_entry_number_is_kept_from_older_writers() {
        let mut value: Value =
            serde_json::from_slice(&snapshot(7).encode().expect("encodes")).expect("json");
        value["format"] = Value::from(FORMAT + 1);
        assert_eq!(later_format(value.to_string().as_bytes()), Some(7));
        value["format"] = Value::from(FORMAT);
        assert_eq!(later_format(value.to_string().as_bytes()), None);
        assert_eq!(later_format(b"{not json"), None);
        assert_eq!(later_format(br#"{"format": 99}"#), None);
    }

    #[test]
    fn snapshots_are_due_once_per_interval_from_its_appender() {
        assert!(due(SNAPSHOT_EVERY, "n1", "n1"));
        assert!(!due(SNAPSHOT_EVERY, "n2", "n1"));
        assert!(!due(SNAPSHOT_EVERY + 1, "n1", "n1"));
        assert!(!due(0, "n1", "n1"));
    }

    #[test]
    fn a_snapshot_under_another_reading_of_its_configuration_is_reconfigured() {
        let taken = snapshot(10);
        let mut config = taken.engine.config().clone();
        config.groups[0].failover_threshold += 1;
        let refused = Engine::restore(config.clone(), taken.engine.clone());
        assert!(matches!(refused, Err(RestoreError::OtherConfiguration(_))));
        let engine = taken.restore_engine(config.clone()).expect("restores");
        assert_eq!(engine.config(), &config);
        assert_eq!(engine.node("n2").map(|n| n.status), Some(NodeStatus::Up));

        // Removing a group that is coming online is what reconfigure refuses.
        let mut running = Engine::restore(taken.engine.config().clone(), taken.engine.clone())
            .expect("restores under its own");
        running.handle(
            warden_policy::Event::GroupOnlineRequested("web".to_string()),
            Millis(6),
        );
        let busy = LogSnapshot {
            engine: running.snapshot(),
            ..taken
        };
        config.groups.clear();
        let err = busy.restore_engine(config).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains("entry 10") && text.contains("web"), "{text}");
    }
}
