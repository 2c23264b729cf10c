//! Compaction: the log's entries that a snapshot covers are deleted, and
//! etcd is asked to forget its history up to then, so that neither the log
//! nor etcd's database grows with the cluster's age.
//!
//! Safety: entries are deleted only up to an entry that the snapshot in
//! etcd covers, each batch in a transaction that holds only while that
//! snapshot is the one read (a newer one is read again and may allow
//! more); the log head and every entry after `before` are never touched,
//! so an append running meanwhile lands as ever.
//!
//! etcd's compaction is of the whole etcd (every cluster sharing it): it
//! drops the history of values before the revision, not any value in
//! force. A watch or a paged read still at an older revision is cancelled
//! or refused and starts again from a new reading (`link::follow`,
//! `start::read_start`). etcd's database file keeps its size after a
//! compaction (the space is reused, not returned); `etcdctl defrag` returns
//! it, and is left to the operator because it blocks the member meanwhile.

use anyhow::{Context, Result, bail};
use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};

use super::Keys;
use super::etcd::Etcd;
use super::snapshot;

/// How many entries one delete transaction covers: each is one raft entry
/// of bounded size, so a compaction of a long log never stalls etcd.
const BATCH: u64 = 1000;

/// How many entries before the newest snapshot a node's own compaction
/// keeps ([`super::link::ClusterLink::offer_snapshot`] compacts up to
/// `seq - KEEP_BEHIND`): a running node that follows the log less than
/// this far behind never finds the entries it needs gone, and a joiner
/// still replays at most `KEEP_BEHIND` entries fewer than it could.
pub const KEEP_BEHIND: u64 = super::snapshot::SNAPSHOT_EVERY;

/// How many times a batch is tried again after a newer snapshot landed
/// under it.
const SNAPSHOT_RACES: usize = 100;

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Log entries deleted.
    pub deleted: u64,
    /// The etcd revision its history was compacted to (0: not asked, as
    /// nothing was deleted).
    pub revision: i64,
}

/// Delete every log entry at or before `before` and compact etcd's history
/// to the last deletion. Refused unless a snapshot in etcd covers
/// `before` (its entry is `before` or later).
pub async fn compact(etcd: &Etcd, keys: &Keys, before: u64) -> Result<Compacted> {
    let key = keys.snapshot();
    let mut covered_by = covering(etcd, keys, before).await?;
    let Some(mut next) = first_entry(etcd, keys).await? else {
        return Ok(Compacted {
            deleted: 0,
            revision: 0,
        });
    };
    let mut deleted = 0;
    let mut revision = 0;
    let mut races = 0;
    while next <= before {
        let last = (next + BATCH - 1).min(before);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                covered_by,
            )])
            .and_then([TxnOp::delete(
                keys.entry(next),
                Some(DeleteOptions::new().with_range(keys.entry(last + 1))),
            )]);
        let answer = etcd
            .request("deleting compacted log entries", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .with_context(|| format!("compacting log entries {next}..={last}"))?;
        if !answer.succeeded() {
            races += 1;
            if races > SNAPSHOT_RACES {
                bail!("{key} changed under the compaction {SNAPSHOT_RACES} times in a row");
            }
            covered_by = covering(etcd, keys, before).await?;
            continue;
        }
        deleted += answer
            .op_responses()
            .into_iter()
            .map(|op| match op {
                etcd_client::TxnOpResponse::Delete(d) => d.deleted().max(0) as u64,
                _ => 0,
            })
            .sum::<u64>();
        revision = answer.header().map(|h| h.revision()).unwrap_or(0);
        next = last + 1;
    }
    if revision > 0 {
        compact_history(etcd, revision).await?;
    }
    Ok(Compacted { deleted, revision })
}

/// The revision that stored the snapshot, if it covers `before`.
async fn covering(etcd: &Etcd, keys: &Keys, before: u64) -> Result<i64> {
    match snapshot::current(etcd, keys).await? {
        (Some(seq), revision) if seq >= before => Ok(revision),
        (Some(seq), _) => bail!(
            "the snapshot at {} covers entries up to {seq} only: entries up to {before} must \
             stay",
            keys.snapshot()
        ),
        (None, _) => bail!(
            "there is no usable snapshot at {}: no entry may be compacted",
            keys.snapshot()
        ),
    }
}

/// The number of the first entry still in the log.
pub(crate) async fn first_entry(etcd: &Etcd, keys: &Keys) -> Result<Option<u64>> {
    let response = etcd
        .request("reading the log's first entry", |mut client| {
            let options = GetOptions::new()
                .with_range(keys.log_end())
                .with_limit(1)
                .with_keys_only();
            let key = keys.log_prefix();
            async move { client.get(key, Some(options)).await }
        })
        .await?;
    let Some(kv) = response.kvs().first() else {
        return Ok(None);
    };
    let key = kv.key_str().unwrap_or_default();
    key.strip_prefix(&keys.log_prefix())
        .and_then(|seq| seq.parse().ok())
        .map(Some)
        .with_context(|| format!("{key} is not a log entry's key"))
}

/// Ask etcd to drop its history before `revision`. Not waited for to the
/// end (not `physical`): etcd frees the space in batches in the
/// background, which for a long history takes longer than one request may
/// ([`super::etcd::ATTEMPT`]). A compaction already past it is no failure.
async fn compact_history(etcd: &Etcd, revision: i64) -> Result<()> {
    let outcome = etcd
        .request("compacting etcd's history", |mut client| async move {
            client.compact(revision, None).await
        })
        .await;
    match outcome {
        Err(err) if super::log::is_compacted(&err) => Ok(()),
        outcome => outcome
            .map(drop)
            .with_context(|| format!("compacting etcd's history to revision {revision}")),
    }
}
