//! Carrying out the node loop's requests in order: appends, ownership
//! keys claimed and released, snapshots written and the log compacted,
//! and leaving.

use std::sync::atomic::Ordering;

use anyhow::Result;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::mpsc;
use tokio::time::sleep;
use warden_policy::Event as PolicyEvent;

use super::lease::revoke;
use super::progress::slowest_reader;
use super::{LinkMessage, RETRY, Request, Shared};
use crate::cluster::compact::{self, KEEP_BEHIND};
use crate::cluster::etcd::Etcd;
use crate::cluster::fence;
use crate::cluster::log::{self, LogEvent};
use crate::cluster::snapshot::{self, LogSnapshot, Written};

/// Carry out the node's requests, one at a time and in order.
pub(super) async fn serve(
    etcd: Etcd,
    shared: Shared,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(request) = requests.recv().await {
        match request {
            Request::Append(event) => loop {
                if shared.lease().is_none() {
                    tracing::debug!("fenced: dropped {event:?}");
                    break;
                }
                match log::append(&etcd, &shared.keys, &shared.me, &event).await {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!("appending to the log: {err:#}");
                        sleep(RETRY).await;
                    }
                }
            },
            Request::AppendTold(event, reply) => {
                if reply.is_closed() {
                    // Its asker gave up waiting and said it was not taken.
                    continue;
                }
                let told = if shared.lease().is_none() {
                    Err("this node is fenced (cut off from etcd)".to_string())
                } else {
                    log::append(&etcd, &shared.keys, &shared.me, &event)
                        .await
                        .map_err(|err| format!("{err:#}"))
                };
                let _ = reply.send(told);
            }
            Request::Claim(group) => {
                tokio::spawn(claim(etcd.clone(), shared.clone(), group));
            }
            Request::Release(group) => {
                if let Err(err) = release(&etcd, &shared, &group).await {
                    tracing::warn!(group, "releasing the ownership key: {err:#}");
                }
            }
            Request::Snapshot(snapshot) => {
                if !shared.compacting.swap(true, Ordering::AcqRel) {
                    tokio::spawn(snapshot_and_compact(etcd.clone(), shared.clone(), snapshot));
                }
            }
            Request::Leave(reply) => {
                if let Some(id) = shared.lease() {
                    // With fence devices, the others would power a node off
                    // whose key went while the log believes it up: say it
                    // is down first, and they have nothing to fence.
                    if fence::enabled(&shared) {
                        let down = LogEvent::Policy(PolicyEvent::NodeDown(shared.me.clone()));
                        if let Err(err) = log::append(&etcd, &shared.keys, &shared.me, &down).await
                        {
                            tracing::warn!(
                                "appending this node's NodeDown before leaving: {err:#}"
                            );
                        }
                    }
                    let _ = etcd
                        .request("revoking the lease", |mut client| async move {
                            revoke(&mut client, id).await
                        })
                        .await;
                }
                let _ = reply.send(());
            }
        }
    }
}

/// Write `snapshot`, then compact the log to `KEEP_BEHIND` entries before
/// it. Failures are logged: the next interval's snapshot tries again.
async fn snapshot_and_compact(etcd: Etcd, shared: Shared, snapshot: Box<LogSnapshot>) {
    /// Lets the next snapshot through however this one ends (a panic too).
    struct Done<'a>(&'a Shared);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.compacting.store(false, Ordering::Release);
        }
    }
    let _done = Done(&shared);
    let seq = snapshot.seq;
    match snapshot::write_snapshot(&etcd, &shared.keys, &snapshot).await {
        Ok(Written::Written) => tracing::info!(seq, "wrote the log's snapshot"),
        Ok(Written::Kept { there }) => tracing::debug!(seq, there, "a newer snapshot is there"),
        Err(err) => {
            // Nothing is compacted on the strength of a snapshot not written.
            tracing::warn!(seq, "writing the log's snapshot: {err:#}");
            return;
        }
    }
    // Never an entry a live agent has yet to read: it could not follow.
    let before = match slowest_reader(&etcd, &shared.keys).await {
        Ok(slowest) => seq
            .saturating_sub(KEEP_BEHIND)
            .min(slowest.unwrap_or(u64::MAX)),
        Err(err) => {
            tracing::warn!(seq, "not compacting the log: {err:#}");
            return;
        }
    };
    if before > 0 {
        match compact::compact(&etcd, &shared.keys, before).await {
            Ok(done) => tracing::info!(
                before,
                deleted = done.deleted,
                revision = done.revision,
                "compacted the log"
            ),
            Err(err) => tracing::warn!(before, "compacting the log: {err:#}"),
        }
    }
}

/// Take `owners/GROUP` once it is free. A key left by this node's earlier
/// incarnation (its lease not yet expired) is taken over by revoking that
/// lease: that agent is gone, and its services died with it.
///
/// Retried on another member after a failure: a create whose answer was
/// lost is recognised by its holder and lease.
async fn claim(etcd: Etcd, shared: Shared, group: String) {
    let key = shared.keys.owner(&group);
    let mut waited_on = None;
    loop {
        let Some(lease) = shared.lease() else { return };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                shared.me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let answer = etcd
            .request("claiming the ownership key", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await;
        match answer {
            Ok(answer) if answer.succeeded() => {
                let _ = shared.tx.send(LinkMessage::Claimed(group));
                return;
            }
            Ok(answer) => {
                let holder = answer.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(get) => get
                        .kvs()
                        .first()
                        .map(|kv| (kv.value_str().unwrap_or("").to_string(), kv.lease())),
                    _ => None,
                });
                match holder {
                    Some((node, held_by)) if node == shared.me && held_by == lease => {
                        let _ = shared.tx.send(LinkMessage::Claimed(group));
                        return;
                    }
                    Some((node, held_by)) if node == shared.me => {
                        tracing::warn!(
                            group,
                            "taking over the key of this node's earlier incarnation"
                        );
                        let _ = etcd
                            .request(
                                "revoking an earlier incarnation's lease",
                                |mut client| async move { revoke(&mut client, held_by).await },
                            )
                            .await;
                    }
                    Some((node, _)) if waited_on.as_deref() != Some(node.as_str()) => {
                        tracing::info!(group, holder = %node, "waiting for the ownership key");
                        waited_on = Some(node);
                    }
                    Some(_) => {}
                    None => {}
                }
            }
            Err(err) => tracing::debug!(group, "claiming: {err:#}"),
        }
        if shared.tx.is_closed() {
            return;
        }
        sleep(RETRY).await;
    }
}

async fn release(etcd: &Etcd, shared: &Shared, group: &str) -> Result<()> {
    let Some(lease) = shared.lease() else {
        return Ok(());
    };
    let key = shared.keys.owner(group);
    let txn = Txn::new()
        .when([
            Compare::value(key.clone(), CompareOp::Equal, shared.me.clone()),
            Compare::lease(key.clone(), CompareOp::Equal, lease),
        ])
        .and_then([TxnOp::delete(key, None)]);
    etcd.request("deleting the ownership key", |mut client| {
        let txn = txn.clone();
        async move { client.txn(txn).await }
    })
    .await?;
    Ok(())
}
