//! Following the log: every entry handed to the node's loop once, in
//! order, from a read and then a watch that is rebuilt (after another
//! read) when it fails or idles.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};
use tokio::time::{sleep, timeout};
use warden_policy::Event as PolicyEvent;

use super::shared::track;
use super::{LinkMessage, RETRY, Shared};
use crate::cluster::etcd::Etcd;
use crate::cluster::log::{self, LogEntry, LogEvent};

/// A watch that said nothing for this long is re-established (after a
/// read of what it may have missed): a watch on a dead connection can
/// hang without an error.
const WATCH_IDLE: Duration = Duration::from_secs(3);

/// Deliver the log in order, from `next` on, for as long as the node runs.
pub(super) async fn follow(etcd: Etcd, shared: Shared, mut next: u64) {
    loop {
        let (member, mut client) = etcd.preferred();
        match follow_once(&etcd, &mut client, &shared, &mut next).await {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!("following the log from {next}: {err:#}");
                if is_transport(&err) {
                    etcd.failed(member);
                }
                sleep(RETRY).await;
            }
        }
    }
}

/// Entries from `next` to `first - 1` were compacted away before this node
/// read them: its engine can no longer follow the cluster's. Stop
/// everything here now and stay out (the lease keeper revokes the lease
/// and never rejoins): a restarted agent joins from the snapshot.
pub(super) fn fell_behind(shared: &Shared, next: u64, first: u64) {
    let reason = format!(
        "this node fell behind the log's compaction: it needs entry {next}, the log now starts \
         at entry {first}; restart the agent to join again from the log's snapshot"
    );
    if shared.behind.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::error!(node = %shared.me, "fenced: {reason}; stopping every resource");
    let _ = shared.tx.send(LinkMessage::Fenced(reason));
}

/// Whether `err` came from etcd or the way to it (not from what it said).
pub(super) fn is_transport(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<etcd_client::Error>().is_some())
}

/// Read what is there, then watch for more (on `client`) until the watch
/// fails or idles. `Ok` only when the node's loop is gone.
async fn follow_once(
    etcd: &Etcd,
    client: &mut Client,
    shared: &Shared,
    next: &mut u64,
) -> Result<()> {
    let (entries, revision) = log::read_from(etcd, &shared.keys, *next).await?;
    if let Some(first) = entries.first().filter(|e| e.seq > *next) {
        fell_behind(shared, *next, first.seq);
        return Ok(());
    }
    for entry in entries {
        if !deliver(shared, next, entry)? {
            return Ok(());
        }
    }
    let mut watch = PrefixWatch::start(client, shared.keys.log_prefix(), revision).await?;
    loop {
        let Some(response) = watch.next().await? else {
            bail!("the log's watch idled or ended; reading again");
        };
        for event in response.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            let Some(kv) = event.kv() else { continue };
            if !deliver(shared, next, log::decode(kv.value())?)? {
                return Ok(());
            }
        }
    }
}

/// A watch of every key under a prefix, from just after a read.
pub(super) struct PrefixWatch {
    prefix: String,
    stream: WatchStream,
}

impl PrefixWatch {
    /// Watch what changes under `prefix` after `revision` (that of the read
    /// the caller just made), so that nothing falls between the two.
    pub(super) async fn start(
        client: &mut Client,
        prefix: String,
        revision: i64,
    ) -> Result<PrefixWatch> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = client
            .watch(prefix.clone(), Some(options))
            .await
            .with_context(|| format!("watching {prefix}"))?;
        Ok(PrefixWatch { prefix, stream })
    }

    /// The next answer; `None` once the watch idled (`WATCH_IDLE`), ended
    /// or was cancelled: the caller reads again and watches anew.
    pub(super) async fn next(&mut self) -> Result<Option<WatchResponse>> {
        let Ok(message) = timeout(WATCH_IDLE, self.stream.message()).await else {
            return Ok(None);
        };
        let response = message.with_context(|| format!("watching {}", self.prefix))?;
        Ok(response.filter(|r| !r.canceled()))
    }
}

/// Hand `entry` to the node if it is the next one. `Ok(false)` when the
/// node's loop is gone; an error on a gap (read again from `next`).
fn deliver(shared: &Shared, next: &mut u64, entry: LogEntry) -> Result<bool> {
    if entry.seq < *next {
        return Ok(true);
    }
    if entry.seq > *next {
        bail!("entry {} arrived before {}", entry.seq, next);
    }
    if let LogEvent::Policy(PolicyEvent::NodeDown(node)) = &entry.event
        && *node == shared.me
        && entry.origin != shared.me
    {
        shared.marked_down.fetch_max(entry.seq, Ordering::AcqRel);
    }
    track(&shared.up, &entry);
    *next += 1;
    shared.read.store(entry.seq, Ordering::Relaxed);
    Ok(shared.tx.send(LinkMessage::Entry(entry)).is_ok())
}
