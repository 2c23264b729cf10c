//! The cluster's event log: what every engine replica applies, in order.
//!
//! An entry is appended with one etcd transaction: if the head still says
//! `N`, write entry `N+1` and move the head to `N+1`. Two agents appending
//! at once cannot both win; the loser reads the new head and tries again.
//! So the log has one order, and each entry carries the time its writer
//! stamped on it, which every replica uses as the engine's "now".

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use warden_policy::{Event as PolicyEvent, Millis};

use super::Keys;
use super::etcd::Etcd;
use crate::desired::Desired;

/// How many times an append retries a lost race before it gives up (a
/// sign of a log written faster than it can be read, not of bad luck).
const APPEND_RACES: usize = 1000;

/// How many entries one read asks for: etcd answers in pages well under
/// the 4 MiB a gRPC message may carry, however long the log.
const PAGE: i64 = 500;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The entry's place in the log, from 1: every node applies entries in
    /// this order.
    pub seq: u64,
    /// When its writer appended it (wall clock, ms).
    pub at: Millis,
    /// The node that appended it.
    pub origin: String,
    /// Unique to this append (see [`append`]): how a writer whose answer
    /// was lost finds out that its entry is in the log after all. Empty in
    /// entries written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// What happened.
    pub event: LogEvent,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogEvent {
    /// The cluster's configuration: its nodes, groups and resources. The
    /// first entry of every log.
    Configure {
        /// The cluster's nodes, in the order that breaks ties.
        nodes: Vec<String>,
        /// The cluster's groups and resources.
        desired: Desired,
    },
    /// Something the policy engine takes in.
    Policy(PolicyEvent),
}

/// Wall-clock milliseconds.
pub fn now() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// An id no other append of any agent has: this process's id and start
/// time, and a counter.
fn append_id() -> String {
    static INCARNATION: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let incarnation = INCARNATION.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{:x}.{started:x}", std::process::id())
    });
    format!("{incarnation}.{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// At most this many entries go into one append's transaction: etcd takes
/// at most 128 operations in one (`--max-txn-ops`), and the head's move is
/// one more.
pub const BATCH_ENTRIES: usize = 64;

/// At most this many bytes of events go into one append's transaction (as
/// JSON), far below etcd's 1.5 MiB request limit (`--max-request-bytes`).
/// One event larger than this still goes, alone.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Where an append landed, and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The first entry written.
    pub first: u64,
    /// The last entry written (`first` for a single event).
    pub last: u64,
    /// Attempts refused because another writer moved the head first: the
    /// price of contention, each one a raft proposal spent for nothing.
    pub races: usize,
}

/// Append `event`; returns its sequence number.
///
/// Exactly once, also when etcd carried out an attempt whose answer was
/// lost (a member died after committing it, a timeout): every later
/// attempt first looks for the entry's id among the entries written since
/// the first uncertain attempt. An attempt compares the head's revision,
/// so of two attempts made on one head only one can land, and one made on
/// an older head cannot land any more once the head moved. A lost race
/// answers with the new head (the transaction's `else`), so the next
/// attempt goes at once, without reading the head again: under contention
/// each attempt costs one round trip, not two.
pub async fn append(etcd: &Etcd, keys: &Keys, origin: &str, event: &LogEvent) -> Result<u64> {
    Ok(
        append_batch(etcd, keys, origin, std::slice::from_ref(event))
            .await?
            .first,
    )
}

/// Append `events` as consecutive entries, in their order, in one
/// transaction: one compare-and-swap on the head for all of them, so a
/// burst of reports costs one raft proposal instead of one each. The same
/// guarantees as [`append`]: the entries land together or not at all,
/// exactly once, and nothing another writer appends falls between them.
///
/// The caller keeps a batch within [`BATCH_ENTRIES`] and [`BATCH_BYTES`];
/// a batch beyond them is refused before anything is sent (etcd would
/// refuse it whole).
pub async fn append_batch(
    etcd: &Etcd,
    keys: &Keys,
    origin: &str,
    events: &[LogEvent],
) -> Result<Appended> {
    if events.is_empty() {
        bail!("an append of no events");
    }
    if events.len() > BATCH_ENTRIES {
        bail!(
            "an append of {} events; at most {BATCH_ENTRIES} go in one transaction",
            events.len()
        );
    }
    match append_unless(etcd, keys, origin, events, None).await? {
        Some(appended) => Ok(appended),
        None => bail!("etcd refused an unconditional append"),
    }
}

/// Append `event` only while `key` does not exist, checked in the append's
/// own transaction; `None` when it exists (nothing appended).
///
/// For a `NodeDown` seen from outside: a node whose member key went may
/// have registered again (a new lease, the key back) and appended its
/// `NodeUp` before the observer's append lands. A `NodeDown` behind that
/// `NodeUp` would mark the new incarnation down while it holds a live lease
/// — it would stop everything and never rejoin, and the cluster would wait
/// on its ownership keys for good. Appended only while the key is absent,
/// a `NodeDown` always comes before the node's next `NodeUp`, which it can
/// only append once its key is back.
pub async fn append_while_absent(
    etcd: &Etcd,
    keys: &Keys,
    origin: &str,
    event: &LogEvent,
    key: String,
) -> Result<Option<u64>> {
    Ok(
        append_unless(etcd, keys, origin, std::slice::from_ref(event), Some(key))
            .await?
            .map(|appended| appended.first),
    )
}

async fn append_unless(
    etcd: &Etcd,
    keys: &Keys,
    origin: &str,
    events: &[LogEvent],
    present: Option<String>,
) -> Result<Option<Appended>> {
    // One id per entry; the batch lands whole, so finding the first finds
    // them all.
    let ids: Vec<String> = events.iter().map(|_| append_id()).collect();
    let count = events.len() as u64;
    let mut races = 0;
    // The head seen by the first attempt whose outcome is unknown.
    let mut uncertain_after: Option<u64> = None;
    let mut head = read_head(etcd, keys).await?;
    for _ in 0..APPEND_RACES {
        if let Some(after) = uncertain_after
            && head.last > after
        {
            let (written, _) = read_from(etcd, keys, after + 1).await?;
            if let Some(entry) = written.iter().find(|e| e.id == ids[0]) {
                return Ok(Some(Appended {
                    first: entry.seq,
                    last: entry.seq + count - 1,
                    races,
                }));
            }
        }
        let at = now();
        let mut writes = vec![TxnOp::put(
            keys.log_head(),
            (head.last + count).to_string(),
            None,
        )];
        for (k, (event, id)) in events.iter().zip(&ids).enumerate() {
            let entry = LogEntry {
                seq: head.last + 1 + k as u64,
                at,
                origin: origin.to_string(),
                id: id.clone(),
                event: event.clone(),
            };
            let body = serde_json::to_vec(&entry).context("encoding a log entry")?;
            writes.push(TxnOp::put(keys.entry(entry.seq), body, None));
        }
        let mut when = vec![head.unchanged(keys)];
        let mut otherwise = vec![TxnOp::get(keys.log_head(), None)];
        if let Some(key) = &present {
            when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
            otherwise.push(TxnOp::get(key.clone(), None));
        }
        let txn = Txn::new().when(when).and_then(writes).or_else(otherwise);
        let (index, mut client) = etcd.preferred();
        match tokio::time::timeout(super::etcd::ATTEMPT, client.txn(txn)).await {
            Ok(Ok(answer)) if answer.succeeded() => {
                return Ok(Some(Appended {
                    first: head.last + 1,
                    last: head.last + count,
                    races,
                }));
            }
            Ok(Ok(answer)) => {
                // The condition did not hold: the key is there (nothing
                // to append), or someone else appended first (its answer
                // holds the head that won).
                let (won, key_present) = refused_answer(keys, &answer)?;
                if key_present {
                    return Ok(None);
                }
                races += 1;
                head = won;
            }
            Ok(Err(err)) => {
                tracing::debug!("appending to the log: {err}");
                etcd.failed(index);
                uncertain_after.get_or_insert(head.last);
                head = read_head(etcd, keys).await?;
            }
            Err(_) => {
                etcd.failed(index);
                uncertain_after.get_or_insert(head.last);
                head = read_head(etcd, keys).await?;
            }
        }
    }
    bail!("lost the race for the log head {APPEND_RACES} times in a row")
}

/// The log's head as an append saw it: the last sequence number, and the
/// head key's revision (0: no head yet, an empty log).
#[derive(Debug, Clone, Copy)]
struct Head {
    last: u64,
    mod_revision: i64,
}

impl Head {
    fn of(keys: &Keys, kv: Option<&etcd_client::KeyValue>) -> Result<Head> {
        let Some(kv) = kv else {
            return Ok(Head {
                last: 0,
                mod_revision: 0,
            });
        };
        let last: u64 = kv
            .value_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{} is not a sequence number", keys.log_head()))?;
        Ok(Head {
            last,
            mod_revision: kv.mod_revision(),
        })
    }

    /// The condition of an append on this head: the head key unchanged
    /// (or, on an empty log, still absent).
    fn unchanged(&self, keys: &Keys) -> Compare {
        if self.mod_revision == 0 {
            Compare::create_revision(keys.log_head(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(keys.log_head(), CompareOp::Equal, self.mod_revision)
        }
    }
}

async fn read_head(etcd: &Etcd, keys: &Keys) -> Result<Head> {
    let answer = etcd
        .request("reading the log head", |mut client| {
            let key = keys.log_head();
            async move { client.get(key, None).await }
        })
        .await?;
    Head::of(keys, answer.kvs().first())
}

/// What the `else` answer of a refused append holds: the head that won,
/// and whether the key that had to be absent is there.
fn refused_answer(keys: &Keys, answer: &etcd_client::TxnResponse) -> Result<(Head, bool)> {
    let mut gets = answer.op_responses().into_iter().filter_map(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => Some(get),
        _ => None,
    });
    let Some(head) = gets.next() else {
        bail!("etcd answered a refused append without the log head");
    };
    let key_present = gets.next().is_some_and(|get| !get.kvs().is_empty());
    Ok((Head::of(keys, head.kvs().first())?, key_present))
}

/// Entries from `from` on, in order, and the etcd revision they were read
/// at (to watch for what follows). Read in pages of [`PAGE`], every page at
/// the first one's revision, so the whole is one consistent reading.
pub async fn read_from(etcd: &Etcd, keys: &Keys, from: u64) -> Result<(Vec<LogEntry>, i64)> {
    read_at(etcd, keys, from, 0).await
}

/// Entries from `from` on, as they were at etcd `revision` (0: now), and
/// the revision read at. Every page is read at that one revision; if etcd
/// compacts its history past it meanwhile the read fails (see
/// [`is_compacted`]) and must start again.
pub(crate) async fn read_at(
    etcd: &Etcd,
    keys: &Keys,
    from: u64,
    mut revision: i64,
) -> Result<(Vec<LogEntry>, i64)> {
    let mut entries = Vec::new();
    let mut next = from;
    loop {
        let options = GetOptions::new()
            .with_range(keys.log_end())
            .with_limit(PAGE)
            .with_revision(revision);
        let response = etcd
            .request("reading the log", |mut client| {
                let (key, options) = (keys.entry(next), options.clone());
                async move { client.get(key, Some(options)).await }
            })
            .await?;
        if revision == 0 {
            revision = response.header().map(|h| h.revision()).unwrap_or(0);
        }
        for kv in response.kvs() {
            let entry = decode(kv.value())
                .with_context(|| format!("log entry {}", String::from_utf8_lossy(kv.key())))?;
            next = entry.seq + 1;
            entries.push(entry);
        }
        if !response.more() || response.kvs().is_empty() {
            return Ok((entries, revision));
        }
    }
}

/// Whether `err` says that etcd no longer has the revision asked for (its
/// history was compacted past it): the reading must start again, at a
/// newer revision. ([`Etcd::request`] keeps etcd's words, not its error.)
pub(crate) fn is_compacted(err: &anyhow::Error) -> bool {
    format!("{err:#}").contains("required revision has been compacted")
}

/// Decode one entry.
pub fn decode(bytes: &[u8]) -> Result<LogEntry> {
    serde_json::from_slice(bytes).context("not a log entry this agent understands")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_encoding() {
        let entry = LogEntry {
            seq: 7,
            at: Millis(1234),
            origin: "n1".to_string(),
            id: "1.2.3".to_string(),
            event: LogEvent::Policy(PolicyEvent::NodeUp("n1".to_string())),
        };
        let bytes = serde_json::to_vec(&entry).expect("encodes");
        assert_eq!(decode(&bytes).expect("decodes"), entry);
        assert!(decode(b"{\"seq\":1}").is_err());
    }

    #[test]
    fn an_entry_written_before_ids_existed_still_decodes() {
        let old = br#"{"seq":3,"at":5,"origin":"n2","event":{"policy":{"node-up":"n2"}}}"#;
        let entry = decode(old).expect("decodes");
        assert_eq!(entry.id, "");
        assert_eq!(entry.origin, "n2");
    }

    #[test]
    fn append_ids_are_unique_within_a_process() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| append_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
