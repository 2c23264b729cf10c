//! The one seam between a node alone and a node of a cluster.
//!
//! The driver has one path for everything the engine hears and decides;
//! what differs is asked of [`Sequencing`]:
//! - **where an event goes** ([`Sequencing::sequence`]): alone, into the
//!   engine at once, at the wall clock; in a cluster, onto the cluster's
//!   log, to come back in the log's order to every node's engine (the
//!   driver applies it then, in `cluster.rs`);
//! - **whether this node may act** ([`Sequencing::reports`],
//!   [`Sequencing::may_bring_online`]): alone, always; in a cluster only
//!   once its own `NodeUp` is in the log, not while fenced, and an online
//!   only under the group's ownership key;
//! - **how time passes** ([`Sequencing::deadline`]): alone, a `Tick` at the
//!   engine's deadline; in a cluster, one `Tick` appended per deadline, by
//!   the cluster's timekeeper (the first node up, in the cluster's order),
//!   the others only if its `Tick` has not come [`TICK_GRACE`] later.

use std::time::Duration;

use anyhow::Result;
use warden_policy::{Engine, Event as PolicyEvent, Millis};

use crate::cluster::{ClusterLink, LinkMessage};

use super::cluster::ClusterState;
use super::conflict;
use super::driver::now;

/// How long a node other than the timekeeper waits past a deadline for
/// the timekeeper's `Tick` before it appends one itself: a frozen or cut
/// off timekeeper delays the cluster's deadlines by this much, not by its
/// lease, and a live one is not echoed by every node.
pub(super) const TICK_GRACE: Duration = Duration::from_secs(1);

pub(super) enum Sequencing {
    Alone,
    Cluster(Box<ClusterState>),
}

impl Sequencing {
    pub(super) fn cluster(&self) -> Option<&ClusterState> {
        match self {
            Sequencing::Alone => None,
            Sequencing::Cluster(cluster) => Some(cluster),
        }
    }

    pub(super) fn cluster_mut(&mut self) -> Option<&mut ClusterState> {
        match self {
            Sequencing::Alone => None,
            Sequencing::Cluster(cluster) => Some(cluster),
        }
    }

    /// The event to hand the engine now, and at what time; `None` when it
    /// went onto the cluster's log instead (it comes back as an entry).
    pub(super) fn sequence(&self, event: PolicyEvent) -> Option<(PolicyEvent, Millis)> {
        match self {
            Sequencing::Alone => Some((event, now())),
            Sequencing::Cluster(cluster) => {
                cluster.link.append(event);
                None
            }
        }
    }

    /// Whether what happens to the resources here is news for the engine.
    /// A node of a cluster that has not joined (or is fenced) runs nothing
    /// that is the cluster's.
    pub(super) fn reports(&self) -> bool {
        self.cluster().is_none_or(ClusterState::joined)
    }

    /// Refuse an operator's request while this node cannot reach the
    /// cluster's log: it could not be sequenced.
    pub(super) fn refuse_if_fenced(&self, request: &str) -> Result<()> {
        match self.cluster().and_then(|c| c.fenced.as_ref()) {
            Some(reason) => Err(conflict(format!(
                "{request}: refused, this node is fenced ({reason}) and cannot reach the \
                 cluster's log; ask another node, or again once this one has rejoined"
            ))),
            None => Ok(()),
        }
    }

    /// The engine's next deadline, the loop's to wait for: in a cluster not
    /// once its `Tick` is asked for (the entry will come), and
    /// [`TICK_GRACE`] later on a node that is not the timekeeper.
    pub(super) fn wait_for(
        &self,
        next: Option<Millis>,
        me: &str,
        engine: &Engine,
    ) -> Option<Millis> {
        match self.cluster() {
            None => next,
            Some(cluster) => next
                .filter(|at| cluster.tick_asked_for != Some(*at))
                .map(|at| {
                    if timekeeper(engine).as_deref() == Some(me) {
                        at
                    } else {
                        Millis(at.0 + TICK_GRACE.as_millis() as u64)
                    }
                }),
        }
    }

    /// The engine's deadline `next` came: the `Tick` to sequence, if any.
    /// In a cluster every node that sees the deadline asks once (the
    /// engine takes a second `Tick` as a no-op); one not joined asks none.
    pub(super) fn deadline(&mut self, next: Option<Millis>) -> Option<PolicyEvent> {
        match self {
            Sequencing::Alone => Some(PolicyEvent::Tick),
            Sequencing::Cluster(cluster) => {
                cluster.tick_asked_for = next;
                cluster.joined().then_some(PolicyEvent::Tick)
            }
        }
    }

    /// Whether `resource` of `group` may come online here now (`activate`:
    /// as its active copy, with that generation). In a cluster only under
    /// the group's ownership key: until it is held the resource waits, and
    /// comes online (or its copy is activated) when the key is claimed.
    pub(super) fn may_bring_online(
        &mut self,
        group: &str,
        resource: &str,
        activate: Option<u64>,
    ) -> bool {
        match self {
            Sequencing::Alone => true,
            Sequencing::Cluster(cluster) => {
                if cluster.held.contains(group) {
                    return true;
                }
                cluster
                    .waiting
                    .entry(group.to_string())
                    .or_default()
                    .push((resource.to_string(), activate));
                false
            }
        }
    }

    /// The engine placed `group` (`here`: on this node). In a cluster this
    /// node claims its ownership key, or lets it go once placed elsewhere.
    pub(super) fn placed(&mut self, group: &str, here: bool) {
        let Some(cluster) = self.cluster_mut() else {
            return;
        };
        if here {
            if !cluster.held.contains(group) {
                cluster.link.claim(group);
            }
        } else if cluster.held.remove(group) {
            // Offline here already: the engine places a group only once
            // it is.
            crate::fence_guard::owns(cluster.held.len());
            cluster.link.release(group);
        }
    }

    /// What the engine hears when the node is asked to stop: alone, every
    /// group offline (in dependency order); in a cluster, this node
    /// draining, so the cluster moves its groups to the others.
    pub(super) fn to_stop(&self, me: &str, engine: &Engine) -> Vec<PolicyEvent> {
        match self {
            Sequencing::Alone => engine
                .groups()
                .into_iter()
                .map(|g| PolicyEvent::GroupOfflineRequested(g.name))
                .collect(),
            Sequencing::Cluster(_) => vec![PolicyEvent::NodeDraining(me.to_string())],
        }
    }

    /// The cluster's link, when this node is one of a cluster.
    pub(super) fn link(&self) -> Option<&ClusterLink> {
        self.cluster().map(|c| &c.link)
    }

    /// Whether decisions taken on entries applied now are carried out.
    pub(super) fn carries_out(&self) -> bool {
        self.cluster().is_none_or(ClusterState::joined)
    }
}

/// The node that appends the cluster's `Tick`s: the first node the engine
/// counts as up (whatever its status but Down), in the cluster's order.
/// Every replica names the same one, as every engine is alike.
fn timekeeper(engine: &Engine) -> Option<String> {
    engine
        .nodes()
        .into_iter()
        .find(|n| n.status != warden_policy::NodeStatus::Down)
        .map(|n| n.name)
}

/// The next message from the cluster's link; never, for a node alone.
pub(super) async fn link_message(sequencing: &mut Sequencing) -> Option<LinkMessage> {
    match sequencing.cluster_mut() {
        Some(cluster) => cluster.messages.recv().await,
        None => std::future::pending().await,
    }
}
