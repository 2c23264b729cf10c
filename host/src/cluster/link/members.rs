//! The other nodes' member keys: a node whose key goes while the log
//! thinks it up is marked down (or, with a fence device, fenced first),
//! and this node's own announcement when it (re)joins.

use std::collections::BTreeSet;

use anyhow::Result;
use etcd_client::{Client, EventType, GetOptions};
use tokio::time::sleep;
use warden_policy::Event as PolicyEvent;

use super::follow::{PrefixWatch, is_transport};
use super::{RETRY, Shared};
use crate::cluster::Keys;
use crate::cluster::etcd::Etcd;
use crate::cluster::fence;
use crate::cluster::log::{self, LogEvent};

/// Mark down the nodes the log thinks up that hold no member key, and this
/// node's earlier incarnation, then announce this node up; the entry of
/// its `NodeUp`.
pub(super) async fn announce(etcd: &Etcd, shared: &Shared) -> Result<u64> {
    let (members, _) = live_members(etcd, &shared.keys).await?;
    for node in shared.believed_up() {
        if node == shared.me {
            let down = LogEvent::Policy(PolicyEvent::NodeDown(node));
            log::append(etcd, &shared.keys, &shared.me, &down).await?;
        } else if !members.contains(&node) {
            append_down_while_keyless(etcd, shared, &node, "no member key at this node's rejoin")
                .await?;
        }
    }
    let up = LogEvent::Policy(PolicyEvent::NodeUp(shared.me.clone()));
    log::append(etcd, &shared.keys, &shared.me, &up).await
}

/// The nodes holding a member key, and the etcd revision of that reading.
async fn live_members(etcd: &Etcd, keys: &Keys) -> Result<(BTreeSet<String>, i64)> {
    let response = etcd
        .request("listing the members", |mut client| {
            let prefix = keys.members_prefix();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or(0);
    let members = response
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .filter_map(|key| keys.member_of(key).map(str::to_string))
        .collect();
    Ok((members, revision))
}

/// Append `NodeDown` for every node whose member key goes (its lease
/// expired or was revoked) while the log thinks it up.
pub(super) async fn watch(etcd: Etcd, shared: Shared) {
    loop {
        let (member, mut client) = etcd.preferred();
        if let Err(err) = watch_members_once(&etcd, &mut client, &shared).await {
            tracing::debug!("watching the members: {err:#}");
            if is_transport(&err) {
                etcd.failed(member);
            }
        }
        if shared.tx.is_closed() {
            return;
        }
        sleep(RETRY).await;
    }
}

async fn watch_members_once(etcd: &Etcd, client: &mut Client, shared: &Shared) -> Result<()> {
    let (members, revision) = live_members(etcd, &shared.keys).await?;
    for node in shared.believed_up() {
        if !members.contains(&node) {
            mark_down(etcd, shared, &node).await?;
        }
    }
    let mut watch = PrefixWatch::start(client, shared.keys.members_prefix(), revision).await?;
    loop {
        let Some(response) = watch.next().await? else {
            return Ok(());
        };
        for event in response.events() {
            if event.event_type() != EventType::Delete {
                continue;
            }
            let Some(node) = event
                .kv()
                .and_then(|kv| kv.key_str().ok())
                .and_then(|key| shared.keys.member_of(key))
            else {
                continue;
            };
            let node = node.to_string();
            let believed_up = shared.up_since(&node).is_some();
            if believed_up {
                mark_down(etcd, shared, &node).await?;
            }
        }
    }
}

async fn mark_down(etcd: &Etcd, shared: &Shared, node: &str) -> Result<()> {
    if node == shared.me || shared.lease().is_none() {
        // Our own key: our lease is gone, and the fence deals with it.
        return Ok(());
    }
    if shared.fencing.device_for(node).is_some() {
        fence::start(etcd, shared, node, "member key gone");
        return Ok(());
    }
    append_down_while_keyless(etcd, shared, node, "member key gone").await
}

/// Append `NodeDown` for `node` only while its member key is absent: a node
/// that registered again since must not be marked down behind its own
/// `NodeUp` (`log::append_while_absent`).
async fn append_down_while_keyless(
    etcd: &Etcd,
    shared: &Shared,
    node: &str,
    why: &str,
) -> Result<()> {
    let down = LogEvent::Policy(PolicyEvent::NodeDown(node.to_string()));
    let member = shared.keys.member(node);
    match log::append_while_absent(etcd, &shared.keys, &shared.me, &down, member).await? {
        Some(_) => tracing::warn!(node, "{why}: the node is down"),
        None => tracing::info!(
            node,
            "{why}, but the node registered again since: not marked down"
        ),
    }
    Ok(())
}
