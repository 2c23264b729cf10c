//! Where a joining node starts: the newest snapshot and the entries after
//! it, or the whole log when there is no snapshot it can use.

use anyhow::{Context, Result, bail};
use etcd_client::GetOptions;

use super::Keys;
use super::etcd::Etcd;
use super::log::{self, LogEntry, LogEvent};
use super::snapshot::{self, LogSnapshot};
use crate::desired::Desired;

/// How many times the reading starts again because etcd compacted its
/// history past the revision it reads at (a compaction runs at most once
/// per snapshot interval, so twice in a row is already unusual).
const COMPACTED_RETRIES: usize = 5;

/// What a joining node starts from, read at one etcd revision.
#[derive(Debug)]
pub struct Start {
    /// The state after entry `snapshot.seq`, if a usable snapshot was there.
    pub snapshot: Option<LogSnapshot>,
    /// The entries after the snapshot (every entry without one), in order,
    /// without a gap.
    pub entries: Vec<LogEntry>,
    /// The etcd revision of the reading: a watch from `revision + 1` misses
    /// nothing.
    pub revision: i64,
    /// Why the snapshot in etcd was not used, when one was there and the
    /// whole log was read instead.
    pub refused: Option<String>,
}

impl Start {
    /// The log is empty: no snapshot, no entry (a new cluster).
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty()
    }

    /// The last entry the start covers (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.seq)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0)
    }

    /// The configuration in force after the last entry: the latest
    /// configuration entry, else the snapshot's.
    pub fn configuration(&self) -> Option<(&[String], &Desired)> {
        self.entries
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                LogEvent::Configure { nodes, desired } => Some((nodes.as_slice(), desired)),
                LogEvent::Policy(_) => None,
            })
            .or(self
                .snapshot
                .as_ref()
                .map(|s| (s.nodes.as_slice(), &s.desired)))
    }
}

/// Read where a joining node starts: the snapshot (if any) and the entries
/// after it, all at one revision. A snapshot that cannot be used (corrupt,
/// of another format) is refused with its key named in `refused`, and the
/// whole log is read instead if it is still there; if entries it covered
/// were compacted away the error says so, since the cluster's state then
/// cannot be rebuilt here.
pub async fn read_start(etcd: &Etcd, keys: &Keys) -> Result<Start> {
    let mut attempt = 0;
    loop {
        match read_once(etcd, keys).await {
            Err(err) if log::is_compacted(&err) && attempt < COMPACTED_RETRIES => {
                tracing::debug!("etcd compacted its history under the reading: {err:#}");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn read_once(etcd: &Etcd, keys: &Keys) -> Result<Start> {
    let key = keys.snapshot();
    let response = snapshot::fetch(etcd, keys).await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or(0);
    let (snapshot, refused) = match response.kvs().first() {
        None => (None, None),
        Some(kv) => match LogSnapshot::decode(&key, kv.value()) {
            Ok(snapshot) => (Some(snapshot), None),
            Err(err) => {
                tracing::warn!("{err:#}; reading the whole log instead");
                (None, Some(format!("{err:#}")))
            }
        },
    };
    let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
    let (entries, revision) = log::read_at(etcd, keys, from, revision).await?;
    let head = head_at(etcd, keys, revision).await?;
    let start = Start {
        snapshot,
        entries,
        revision,
        refused,
    };
    check(&start, head, &key)?;
    Ok(start)
}

/// The log head at `revision` (0 when there is none).
async fn head_at(etcd: &Etcd, keys: &Keys, revision: i64) -> Result<u64> {
    let response = etcd
        .request("reading the log head", |mut client| {
            let key = keys.log_head();
            async move {
                client
                    .get(key, Some(GetOptions::new().with_revision(revision)))
                    .await
            }
        })
        .await?;
    match response.kvs().first() {
        None => Ok(0),
        Some(kv) => kv
            .value_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{} is not a sequence number", keys.log_head())),
    }
}

/// The start covers the log without a gap: from entry 1 or the entry after
/// the snapshot, up to the head.
fn check(start: &Start, head: u64, key: &str) -> Result<()> {
    let mut expected = start.snapshot.as_ref().map_or(1, |s| s.seq + 1);
    for entry in &start.entries {
        if entry.seq != expected {
            if start.snapshot.is_none() && expected == 1 {
                let why = start
                    .refused
                    .as_deref()
                    .map_or(format!("there is no snapshot at {key}"), str::to_string);
                bail!(
                    "the log's entries before {} were compacted away and {why}: this node \
                     cannot rebuild the cluster's state (restore a snapshot to {key})",
                    entry.seq
                );
            }
            bail!(
                "the log has a gap: entry {} follows {}",
                entry.seq,
                expected - 1
            );
        }
        expected += 1;
    }
    if expected <= head {
        let why = match (&start.snapshot, &start.refused) {
            (None, Some(refused)) => format!("; {refused}"),
            (None, None) if head > 0 => format!("; there is no snapshot at {key}"),
            _ => String::new(),
        };
        bail!(
            "the log's head says entry {head} but the entries read end at {}{why}",
            expected - 1
        );
    }
    Ok(())
}
