//! What goes into the engine ([`Event`]) and what comes out ([`Action`]).

use crate::config::{GroupId, NodeId, ResourceId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Something that happened, reported by the driver (the monitor, the cluster
/// membership layer, or the operator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// The node joined (or rejoined) the cluster. Nodes start Down.
    NodeUp(NodeId),
    /// The node is gone: whatever ran on it is considered offline at once.
    NodeDown(NodeId),
    /// The node keeps what it runs but takes no new groups.
    NodePaused(NodeId),
    /// A paused or draining node is back to normal.
    NodeResumed(NodeId),
    /// The node takes no new groups and moves its groups away.
    NodeDraining(NodeId),
    /// Turns automatic recovery (restarts, failovers, retries) on or off for
    /// decisions about resources and groups on this node.
    RecoveryActions {
        /// The node whose decisions this governs.
        node: NodeId,
        /// On (the default) or off.
        enabled: bool,
    },
    /// The operator wants the group online (also clears its failure history).
    GroupOnlineRequested(GroupId),
    /// The operator wants the group offline.
    GroupOfflineRequested(GroupId),
    /// Planned move to a named node, or to the best other node.
    MoveRequested {
        /// The group to move.
        group: GroupId,
        /// Where to; `None`: the best other node.
        to: Option<NodeId>,
    },
    /// A `BringOnline` finished.
    ResourceOnline {
        /// The resource now online.
        resource: ResourceId,
        /// Where it came online.
        node: NodeId,
    },
    /// A `TakeOffline` finished (or, unexpectedly, the resource stopped).
    ResourceOffline {
        /// The resource now offline.
        resource: ResourceId,
        /// Where it went offline.
        node: NodeId,
    },
    /// A failed health check, a failed or timed-out online, a process exit...
    ResourceFailed {
        /// The resource that failed.
        resource: ResourceId,
        /// Where it failed.
        node: NodeId,
        /// What the monitor saw, for the operator.
        reason: String,
    },
    /// Time passed: restart delays, retry periods and failback windows fire.
    Tick,
}

/// How a group comes to change owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveKind {
    /// Unplanned: a resource passed its threshold or the owner went down.
    /// Counts against the failover threshold.
    Failover,
    /// Asked for by the operator.
    Planned,
    /// The owner is draining.
    Drain,
    /// Back to the most preferred owner after a failover.
    Failback,
}

impl fmt::Display for MoveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoveKind::Failover => "failover",
            MoveKind::Planned => "planned",
            MoveKind::Drain => "drain",
            MoveKind::Failback => "failback",
        })
    }
}

/// What the engine wants done or wants known.
///
/// `BringOnline` and `TakeOffline` are requests: the driver carries them out and
/// reports back with `ResourceOnline` / `ResourceOffline` / `ResourceFailed`.
/// `Terminate` is fire-and-forget (no report expected). The others record
/// decisions and carry a human-readable reason for the event history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Bring `resource` online on `node`; answered by `ResourceOnline` or
    /// `ResourceFailed`.
    BringOnline {
        /// The resource to bring online.
        resource: ResourceId,
        /// The node that carries it out.
        node: NodeId,
    },
    /// Take `resource` offline on `node`; answered by `ResourceOffline` or
    /// `ResourceFailed`.
    TakeOffline {
        /// The resource to take offline.
        resource: ResourceId,
        /// The node that carries it out.
        node: NodeId,
    },
    /// Throw away a failed instance (or one whose offline failed) without
    /// asking it anything.
    Terminate {
        /// The resource to throw away.
        resource: ResourceId,
        /// The node that carries it out.
        node: NodeId,
    },
    /// A group will change owner once all of it is offline where it is.
    MoveGroup {
        /// The group that moves.
        group: GroupId,
        /// Its owner now, if any.
        from: Option<NodeId>,
        /// Its next owner.
        to: NodeId,
        /// Why it moves, as a kind (failover counts against the threshold).
        kind: MoveKind,
        /// Why it moves, for the operator.
        reason: String,
    },
    /// The group now belongs to `node`: take its lease before carrying out the
    /// `BringOnline` requests that follow.
    Placed {
        /// The group placed.
        group: GroupId,
        /// Its owner from now on.
        node: NodeId,
    },
    /// The group stays Failed until something changes (see the reason).
    GroupFailed {
        /// The group that stays Failed.
        group: GroupId,
        /// Why, for the operator.
        reason: String,
    },
    /// The resource stays Failed (until its retry period, if any).
    ResourceFailedPermanently {
        /// The resource that stays Failed.
        resource: ResourceId,
        /// Why, for the operator.
        reason: String,
    },
    /// A request or a placement that the engine will not carry out.
    Refused {
        /// The request or placement refused.
        what: String,
        /// Why, for the operator.
        reason: String,
    },
    /// A report that does not match what the engine expects (late, duplicate,
    /// from the wrong node); nothing changed.
    Ignored {
        /// The report ignored.
        what: String,
        /// Why it did not match.
        reason: String,
    },
    /// A decision worth recording in the event history.
    Decision {
        /// The group, resource or node the decision is about.
        subject: String,
        /// The decision, for the operator.
        reason: String,
    },
}

impl fmt::Display for Action {
    /// One line per action: the form scenario files use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::BringOnline { resource, node } => {
                write!(f, "bring-online {resource} on {node}")
            }
            Action::TakeOffline { resource, node } => {
                write!(f, "take-offline {resource} on {node}")
            }
            Action::Terminate { resource, node } => write!(f, "terminate {resource} on {node}"),
            Action::MoveGroup {
                group,
                from,
                to,
                kind,
                reason,
            } => {
                let from = from.as_deref().unwrap_or("-");
                write!(f, "move-group {group} {from} -> {to} ({kind}): {reason}")
            }
            Action::Placed { group, node } => write!(f, "placed {group} on {node}"),
            Action::GroupFailed { group, reason } => write!(f, "group-failed {group}: {reason}"),
            Action::ResourceFailedPermanently { resource, reason } => {
                write!(f, "resource-failed {resource}: {reason}")
            }
            Action::Refused { what, reason } => write!(f, "refused {what}: {reason}"),
            Action::Ignored { what, reason } => write!(f, "ignored {what}: {reason}"),
            Action::Decision { subject, reason } => write!(f, "decision {subject}: {reason}"),
        }
    }
}

impl fmt::Display for Event {
    /// The form scenario files use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NodeUp(n) => write!(f, "node-up {n}"),
            Event::NodeDown(n) => write!(f, "node-down {n}"),
            Event::NodePaused(n) => write!(f, "node-paused {n}"),
            Event::NodeResumed(n) => write!(f, "node-resumed {n}"),
            Event::NodeDraining(n) => write!(f, "node-draining {n}"),
            Event::RecoveryActions { node, enabled } => {
                write!(f, "recovery {node} {}", if *enabled { "on" } else { "off" })
            }
            Event::GroupOnlineRequested(g) => write!(f, "group-online {g}"),
            Event::GroupOfflineRequested(g) => write!(f, "group-offline {g}"),
            Event::MoveRequested { group, to } => match to {
                Some(n) => write!(f, "move {group} {n}"),
                None => write!(f, "move {group}"),
            },
            Event::ResourceOnline { resource, node } => write!(f, "online {resource} {node}"),
            Event::ResourceOffline { resource, node } => write!(f, "offline {resource} {node}"),
            Event::ResourceFailed {
                resource,
                node,
                reason,
            } => write!(f, "failed {resource} {node} {reason}"),
            Event::Tick => write!(f, "tick"),
        }
    }
}
