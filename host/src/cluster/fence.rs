//! Fencing other nodes through fence devices (`crate::fencing`), when the
//! configuration names a device for them.
//!
//! Without a device a node whose member key goes is marked down at once
//! (`link::mark_down`). With one, nothing of it moves until the device
//! has confirmed it off:
//!
//! - [`fence_node`] powers the node off (off, then status until off,
//!   bounded; retried with backoff for as long as the node is the one the
//!   log believes up), then appends `NodeDown` and revokes the node's lease
//!   (its member and ownership keys go). A failure is logged and recorded
//!   as an event (`fencing failed`), and nothing moves meanwhile.
//! - [`watch_leases`] makes that happen sooner than the lease's expiry: it
//!   asks etcd every second how long each fenced-by-device peer's lease
//!   has left, and fences a peer with less than half its TTL left — past
//!   the point where the peer, if it could, has fenced itself
//!   (`LeaseTiming::fence_after`).
//!
//! Every surviving node does this: off is idempotent, a duplicate
//! `NodeDown` changes nothing, a lease revoked twice is gone once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::GetOptions;
use tokio::time::{Instant, sleep};
use warden_policy::Event as PolicyEvent;

use super::etcd::Etcd;
use super::link::{LinkMessage, Shared, revoke};
use super::log::{self, LogEvent};

/// How often the peers' leases are asked about.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// The first pause after a failed attempt; doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a fence waits for this node to have read the log up to its
/// head before deciding whether the node is still believed up.
const CATCH_UP: Duration = Duration::from_secs(3);

/// Start fencing `node` unless a fence of it is under way here. `why` is
/// what was seen (member key gone, lease lapsing).
pub(super) fn start(etcd: &Etcd, shared: &Shared, node: &str, why: &str) {
    let Some(incarnation) = shared.up_since(node) else {
        return;
    };
    let Ok(mut fencing) = shared.fencing_now.lock() else {
        return;
    };
    if !fencing.insert(node.to_string()) {
        return;
    }
    tracing::warn!(
        node,
        "{why}: fencing it through its fence device before its groups move"
    );
    let (etcd, shared, node) = (etcd.clone(), shared.clone(), node.to_string());
    tokio::spawn(async move {
        fence_node(&etcd, &shared, &node, incarnation).await;
        if let Ok(mut fencing) = shared.fencing_now.lock() {
            fencing.remove(&node);
        }
    });
}

/// Power `node` off through its device and mark it down, retrying until
/// that is done, or until the incarnation of `node` that was up when the
/// fence began is no longer (marked down by someone else, or rejoined).
async fn fence_node(etcd: &Etcd, shared: &Shared, node: &str, incarnation: u64) {
    let Some((device, target, within)) = shared.fencing.device_for(node) else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        if shared.tx.is_closed() {
            return;
        }
        if shared.lease().is_some() {
            catch_up(etcd, shared).await;
            if shared.up_since(node) != Some(incarnation) {
                tracing::info!(node, "no longer up in the log: not fenced from here");
                return;
            }
            let outcome = match device.power_off_confirmed(target, within).await {
                Ok(took) => mark_fenced(etcd, shared, node, device.name.as_str(), target, took)
                    .await
                    .map_err(|err| format!("{err:#}")),
                Err(reason) => Err(reason),
            };
            match outcome {
                Ok(()) => return,
                Err(reason) => {
                    tracing::error!(
                        node,
                        "fencing {node} failed: {reason}; its groups stay until it is confirmed off"
                    );
                    let _ = shared.tx.send(LinkMessage::Fencing {
                        node: node.to_string(),
                        action: "fencing failed",
                        reason,
                    });
                }
            }
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The device confirmed `node` off: append `NodeDown`, then revoke its
/// lease so that its ownership keys are free for the groups' next owners.
async fn mark_fenced(
    etcd: &Etcd,
    shared: &Shared,
    node: &str,
    device: &str,
    target: &str,
    took: Duration,
) -> Result<()> {
    let lease = member_lease(etcd, shared, node).await.unwrap_or_default();
    let down = LogEvent::Policy(PolicyEvent::NodeDown(node.to_string()));
    log::append(etcd, &shared.keys, &shared.me, &down)
        .await
        .context("appending NodeDown after the fence")?;
    let reason = format!(
        "powered off through fence device {device} ({target}), confirmed off after {:.1} s",
        took.as_secs_f64()
    );
    tracing::warn!(node, "{reason}; marked down");
    let _ = shared.tx.send(LinkMessage::Fencing {
        node: node.to_string(),
        action: "fenced",
        reason,
    });
    if let Some(lease) = lease {
        let revoked = etcd
            .request("revoking a fenced node's lease", |mut client| async move {
                revoke(&mut client, lease).await
            })
            .await;
        if let Err(err) = revoked {
            // Its keys then go when the lease expires.
            tracing::warn!(node, "{err:#}");
        }
    }
    Ok(())
}

/// The lease that holds `node`'s member key, if the key is there.
async fn member_lease(etcd: &Etcd, shared: &Shared, node: &str) -> Result<Option<i64>> {
    let answer = etcd
        .request("reading a member key", |mut client| {
            let key = shared.keys.member(node);
            async move { client.get(key, None).await }
        })
        .await?;
    Ok(answer
        .kvs()
        .first()
        .and_then(|kv| kv.value_str().ok())
        .and_then(|hex| i64::from_str_radix(hex, 16).ok()))
}

/// Wait (at most `CATCH_UP`) until this node has read the log up to the
/// head it has now: a node that left cleanly appended its own `NodeDown`
/// before its key went, and the two watches (log, members) do not come in
/// one order.
async fn catch_up(etcd: &Etcd, shared: &Shared) {
    let head = etcd
        .request("reading the log head", |mut client| {
            let key = shared.keys.log_head();
            async move { client.get(key, None).await }
        })
        .await
        .ok()
        .and_then(|answer| {
            answer
                .kvs()
                .first()
                .and_then(|kv| kv.value_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        });
    let Some(head) = head else { return };
    let give_up = Instant::now() + CATCH_UP;
    while shared.read_up_to() < head && Instant::now() < give_up {
        sleep(Duration::from_millis(20)).await;
    }
}

/// Fence, before their leases expire, the peers whose leases have less than
/// half their TTL left. Runs only when a fence device is configured.
pub(super) async fn watch_leases(etcd: Etcd, shared: Shared) {
    loop {
        sleep(LEASE_POLL).await;
        if shared.tx.is_closed() {
            return;
        }
        if shared.lease().is_none() {
            continue;
        }
        if let Err(err) = check_leases(&etcd, &shared).await {
            tracing::debug!("asking about the peers' leases: {err:#}");
        }
    }
}

async fn check_leases(etcd: &Etcd, shared: &Shared) -> Result<()> {
    let answer = etcd
        .request("listing the members", |mut client| {
            let prefix = shared.keys.members_prefix();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    for kv in answer.kvs() {
        let Some(node) = kv.key_str().ok().and_then(|k| shared.keys.member_of(k)) else {
            continue;
        };
        if node == shared.me
            || shared.up_since(node).is_none()
            || shared.fencing.device_for(node).is_none()
            || kv.lease() == 0
        {
            continue;
        }
        let lease = kv.lease();
        let ttl = etcd
            .request("asking a lease's time to live", |mut client| async move {
                client.lease_time_to_live(lease, None).await
            })
            .await?;
        // -1: expired meanwhile (the member watch sees its key go).
        let (left, granted) = (ttl.ttl(), ttl.granted_ttl());
        if left >= 0 && granted > 0 && left * 2 < granted {
            start(
                etcd,
                shared,
                node,
                &format!("its lease was not renewed: {left} s of {granted} s left"),
            );
        }
    }
    Ok(())
}

/// Whether any device is configured (the lease watch runs only then).
pub(super) fn enabled(shared: &Shared) -> bool {
    !shared.fencing.is_empty()
}

/// A shared handle on the configured devices.
pub(super) type Devices = Arc<crate::fencing::Fencing>;
