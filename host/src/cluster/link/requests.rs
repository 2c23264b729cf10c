//! Carrying out the node loop's requests in order: appends, ownership
//! keys claimed and released, snapshots written and the log compacted,
//! and leaving.

use std::sync::atomic::Ordering;

use anyhow::Result;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot};
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

/// Carry out the node's requests, one at a time and in order. Appends
/// queued one behind the other go into the log together ([`append_queued`]).
pub(super) async fn serve(
    etcd: Etcd,
    shared: Shared,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    // A request taken off the queue while gathering a batch, not an append:
    // the next one to carry out.
    let mut held: Option<Request> = None;
    loop {
        let request = match held.take() {
            Some(request) => request,
            None => match requests.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        match request {
            Request::Append(event) => {
                let batch = gather(Queued::Plain(event), &mut requests, &mut held);
                append_queued(&etcd, &shared, batch).await;
            }
            Request::AppendTold(event, reply) => {
                let batch = gather(Queued::Told(event, reply), &mut requests, &mut held);
                append_queued(&etcd, &shared, batch).await;
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

/// An append waiting in the queue: the node's own report, appended until
/// it lands (or the node is fenced), or a request whose asker waits to be
/// told where it landed.
enum Queued {
    Plain(LogEvent),
    Told(LogEvent, oneshot::Sender<Result<u64, String>>),
}

impl Queued {
    fn event(&self) -> &LogEvent {
        match self {
            Queued::Plain(event) | Queued::Told(event, _) => event,
        }
    }
}

/// `first` and the appends queued right behind it, as many as one
/// transaction takes ([`log::BATCH_ENTRIES`], [`log::BATCH_BYTES`]): a
/// burst of reports (a mass failover, a large configuration coming
/// online) costs one compare-and-swap on the log's head per batch, not one
/// per event. Only what is already queued is taken, so a lone append waits
/// for nothing. The first request that is not an append, or does not fit,
/// is left in `held`, to be carried out next: the queue's order is kept.
fn gather(
    first: Queued,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    held: &mut Option<Request>,
) -> Vec<Queued> {
    let mut bytes = encoded_len(first.event());
    let mut batch = vec![first];
    while batch.len() < log::BATCH_ENTRIES {
        let Ok(next) = requests.try_recv() else { break };
        let queued = match next {
            Request::Append(event) => Queued::Plain(event),
            Request::AppendTold(event, reply) => Queued::Told(event, reply),
            other => {
                *held = Some(other);
                break;
            }
        };
        let size = encoded_len(queued.event());
        if bytes + size > log::BATCH_BYTES {
            *held = Some(match queued {
                Queued::Plain(event) => Request::Append(event),
                Queued::Told(event, reply) => Request::AppendTold(event, reply),
            });
            break;
        }
        bytes += size;
        batch.push(queued);
    }
    batch
}

/// The size of `event` in an entry, near enough to keep a batch within
/// etcd's request limit.
fn encoded_len(event: &LogEvent) -> usize {
    serde_json::to_vec(event).map_or(log::BATCH_BYTES, |bytes| bytes.len())
}

/// Append `batch` in one transaction, in order. Each asker is told where
/// its entry landed. If the append fails, the askers are told why (as a
/// lone append's asker was: nothing of theirs is retried behind their
/// back) and the node's own reports are tried again, until they land or
/// the node is fenced (a fenced node's reports are dropped: it rejoins
/// with a `NodeUp`, and its engine is rebuilt from the log).
async fn append_queued(etcd: &Etcd, shared: &Shared, mut batch: Vec<Queued>) {
    // Askers that gave up waiting were told theirs was not taken.
    batch.retain(|queued| !matches!(queued, Queued::Told(_, reply) if reply.is_closed()));
    while !batch.is_empty() {
        if shared.lease().is_none() {
            for queued in batch {
                match queued {
                    Queued::Plain(event) => tracing::debug!("fenced: dropped {event:?}"),
                    Queued::Told(_, reply) => {
                        let _ = reply.send(Err("this node is fenced (cut off from etcd)".into()));
                    }
                }
            }
            return;
        }
        let events: Vec<LogEvent> = batch.iter().map(|q| q.event().clone()).collect();
        match log::append_batch(etcd, &shared.keys, &shared.me, &events).await {
            Ok(appended) => {
                if appended.races > 0 {
                    tracing::debug!(
                        entries = events.len(),
                        races = appended.races,
                        "appended after losing the race for the log's head"
                    );
                }
                for (seq, queued) in (appended.first..).zip(batch) {
                    if let Queued::Told(_, reply) = queued {
                        let _ = reply.send(Ok(seq));
                    }
                }
                return;
            }
            Err(err) => {
                let reason = format!("{err:#}");
                tracing::warn!(entries = events.len(), "appending to the log: {reason}");
                let mut own = Vec::new();
                for queued in batch {
                    match queued {
                        Queued::Plain(event) => own.push(Queued::Plain(event)),
                        Queued::Told(_, reply) => {
                            let _ = reply.send(Err(reason.clone()));
                        }
                    }
                }
                batch = own;
                sleep(RETRY).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: usize) -> LogEvent {
        LogEvent::Policy(PolicyEvent::ResourceOnline {
            resource: format!("r{n}"),
            node: "n1".to_string(),
        })
    }

    fn events(batch: &[Queued]) -> Vec<LogEvent> {
        batch.iter().map(|q| q.event().clone()).collect()
    }

    #[test]
    fn a_batch_takes_the_queued_appends_and_stops_at_anything_else() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (reply, _told) = oneshot::channel();
        tx.send(Request::AppendTold(report(1), reply))
            .expect("queued");
        tx.send(Request::Claim("g".to_string())).expect("queued");
        tx.send(Request::Append(report(2))).expect("queued");
        let mut held = None;
        let batch = gather(Queued::Plain(report(0)), &mut rx, &mut held);
        assert_eq!(events(&batch), vec![report(0), report(1)]);
        assert!(matches!(held, Some(Request::Claim(ref g)) if g == "g"));
        // What follows the claim is the next batch, in order.
        let Ok(Request::Append(next)) = rx.try_recv() else {
            panic!("the append behind the claim is still queued");
        };
        assert_eq!(next, report(2));
    }

    #[test]
    fn a_batch_stops_at_its_limits_and_keeps_the_rest_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 1..=log::BATCH_ENTRIES + 5 {
            tx.send(Request::Append(report(n))).expect("queued");
        }
        let mut held = None;
        let batch = gather(Queued::Plain(report(0)), &mut rx, &mut held);
        assert_eq!(batch.len(), log::BATCH_ENTRIES);
        assert_eq!(
            events(&batch),
            (0..log::BATCH_ENTRIES).map(report).collect::<Vec<_>>()
        );
        assert!(held.is_none(), "nothing taken that does not go");
        let Ok(Request::Append(next)) = rx.try_recv() else {
            panic!("the rest is still queued");
        };
        assert_eq!(next, report(log::BATCH_ENTRIES));

        // Bytes: an event that would pass the limit waits for the next
        // batch (held, in its place); one larger than the limit goes alone.
        let big = |n: usize| {
            LogEvent::Policy(PolicyEvent::ResourceFailed {
                resource: format!("r{n}"),
                node: "n1".to_string(),
                reason: "x".repeat(log::BATCH_BYTES / 2),
            })
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(Request::Append(big(1))).expect("queued");
        tx.send(Request::Append(big(2))).expect("queued");
        let mut held = None;
        let batch = gather(Queued::Plain(big(0)), &mut rx, &mut held);
        assert_eq!(events(&batch), vec![big(0)]);
        assert!(matches!(held, Some(Request::Append(ref e)) if *e == big(1)));
        let huge = LogEvent::Policy(PolicyEvent::ResourceFailed {
            resource: "r".to_string(),
            node: "n1".to_string(),
            reason: "x".repeat(log::BATCH_BYTES * 2),
        });
        let mut held = None;
        let batch = gather(Queued::Plain(huge.clone()), &mut rx, &mut held);
        assert_eq!(events(&batch), vec![huge]);
        assert!(matches!(held, Some(Request::Append(ref e)) if *e == big(2)));
    }
}
