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
    /// A copy of a resource with copies said how far it is (the host relays
    /// the plugin's report, periodically and whenever it changes much).
    CopyStatusReported {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node the copy is on.
        node: NodeId,
        /// What the copy said.
        status: CopyStatus,
    },
    /// An `ActivateCopy` finished: the copy serves as the active one, so the
    /// resource is online (the same as `ResourceOnline`, which the host may
    /// send instead).
    CopyActivated {
        /// The resource now online.
        resource: ResourceId,
        /// Where its copy is now active.
        node: NodeId,
    },
    /// A `DeactivateCopy` finished: the copy no longer serves and runs on as
    /// a passive copy, so the resource is offline there (the same as
    /// `ResourceOffline`, which the host may send instead).
    CopyDeactivated {
        /// The resource now offline.
        resource: ResourceId,
        /// Where its copy is now passive.
        node: NodeId,
    },
    /// A `StartPassiveCopy` finished: the copy runs and follows the source
    /// it was given.
    PassiveCopyStarted {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node the copy runs on.
        node: NodeId,
    },
    /// A `StopPassiveCopy` finished (or, unexpectedly, the copy stopped).
    PassiveCopyStopped {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node it no longer runs on.
        node: NodeId,
    },
    /// A copy failed and the host threw it away: a passive copy that
    /// crashed or could not start, or, on the owner, an activation or a
    /// deactivation that failed (there the same as `ResourceFailed`).
    CopyFailed {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node the copy was on.
        node: NodeId,
        /// What the host saw, for the operator.
        reason: String,
    },
    /// The operator's word (Exchange's `Move-ActiveMailboxDatabase
    /// -SkipLagChecks`, Patroni's manual failover): bring the group online,
    /// or move it, on `node` (`None`: the node whose copies lag least),
    /// accepting that its copies there may lack what their lag says. Once:
    /// the next placement of the group only.
    AcceptDataLoss {
        /// The group, or a resource with copies (meaning its group).
        group_or_resource: String,
        /// Where to activate; `None`: the copy with least lag.
        node: Option<NodeId>,
    },
}

/// What a copy of a resource reported about itself: how much of the active
/// copy's log it holds and has applied, and whether it can be used.
///
/// Positions count the resource's log (for the mail store, one message is
/// one position) and compare only within one `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStatus {
    /// The generation of the log the copy holds: the active copy's own, or
    /// the generation of the active copy a passive one follows. A status of
    /// an older generation than the resource's last activation says
    /// nothing about the current log, and counts for nothing.
    pub generation: u64,
    /// The last log position the copy holds durably (the active copy: the
    /// last it wrote).
    pub copied: u64,
    /// The last log position the copy has applied to its data.
    pub replayed: u64,
    /// How far the copy is behind the active copy, as the copy last learned
    /// the active's position (0 for the active copy itself).
    pub lag: u64,
    /// Whether the copy's data can be used.
    pub health: CopyHealth,
}

/// Whether a copy's data can be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyHealth {
    /// It copies (or waits for an active copy to copy from) and its data is
    /// sound. A passive copy that cannot reach its source is still healthy:
    /// it holds what it copied.
    Healthy,
    /// Its data cannot be used (a disk error, a refused peer...): never
    /// activated, even with the operator's word.
    Failed(String),
    /// The active copy serves and its data is the newest there is, but it
    /// refuses writes for now, for the reason given (synchronous with no
    /// passive copy connected, asynchronous at its lag limit). Not a
    /// failure: nothing is restarted or failed over for it, and the copy may
    /// be activated again; writes pass again once a passive copy connects
    /// or catches up.
    Refusing(String),
    /// Its log has gone past or away from the active copy's (a deposed
    /// active that took writes no other copy saw): never activated, and a
    /// passive copy in this state is reseeded from the active copy (its
    /// data dropped and copied again), since it cannot follow otherwise.
    Diverged(String),
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
    /// Run a passive copy of `resource` on `node` that follows the active
    /// copy on `source` (`None`: there is no active copy now; hold the data
    /// and wait). Sent again, with a new source, to a passive copy that
    /// runs, when the active copy moves: the host re-points it without
    /// starting it again. Answered by `PassiveCopyStarted` or `CopyFailed`.
    StartPassiveCopy {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node that carries it out.
        node: NodeId,
        /// The node of the active copy it follows.
        source: Option<NodeId>,
    },
    /// Stop the passive copy of `resource` on `node` (its data stays on
    /// disk). Answered by `PassiveCopyStopped` or `CopyFailed`.
    StopPassiveCopy {
        /// The resource the copy is of.
        resource: ResourceId,
        /// The node that carries it out.
        node: NodeId,
    },
    /// Bring `resource` online on `node` as its active copy, with
    /// `generation`: where a resource without copies would get
    /// `BringOnline`, in the same dependency order. The host promotes the
    /// passive copy running there (or, if none runs, starts the resource on
    /// the data the node holds), after the copy has applied everything it
    /// holds and pulled what its source can still give; it fences with
    /// `generation` (strictly increasing per resource: take it in the
    /// cluster store, refuse to serve if a newer one is there, and a copy
    /// of an older generation is refused by the others). Answered by
    /// `CopyActivated` (or `ResourceOnline`) or `CopyFailed` (or
    /// `ResourceFailed`).
    ActivateCopy {
        /// The resource to bring online.
        resource: ResourceId,
        /// The node that carries it out (the group's owner).
        node: NodeId,
        /// The generation this activation takes.
        generation: u64,
    },
    /// Take `resource` offline on `node` by making its active copy passive:
    /// where a resource without copies would get `TakeOffline`. The host
    /// stops serving and writing, and the copy runs on as a passive one
    /// (with no source until the engine names one). Answered by
    /// `CopyDeactivated` (or `ResourceOffline`) or `CopyFailed` (or
    /// `ResourceFailed`).
    DeactivateCopy {
        /// The resource to take offline.
        resource: ResourceId,
        /// The node that carries it out (the group's owner).
        node: NodeId,
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
            Action::StartPassiveCopy {
                resource,
                node,
                source,
            } => {
                let source = source.as_deref().unwrap_or("-");
                write!(f, "start-passive-copy {resource} on {node} from {source}")
            }
            Action::StopPassiveCopy { resource, node } => {
                write!(f, "stop-passive-copy {resource} on {node}")
            }
            Action::ActivateCopy {
                resource,
                node,
                generation,
            } => write!(
                f,
                "activate-copy {resource} on {node} generation {generation}"
            ),
            Action::DeactivateCopy { resource, node } => {
                write!(f, "deactivate-copy {resource} on {node}")
            }
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
            Event::CopyStatusReported {
                resource,
                node,
                status,
            } => write!(f, "copy-status {resource} {node} {status}"),
            Event::CopyActivated { resource, node } => {
                write!(f, "copy-activated {resource} {node}")
            }
            Event::CopyDeactivated { resource, node } => {
                write!(f, "copy-deactivated {resource} {node}")
            }
            Event::PassiveCopyStarted { resource, node } => {
                write!(f, "passive-started {resource} {node}")
            }
            Event::PassiveCopyStopped { resource, node } => {
                write!(f, "passive-stopped {resource} {node}")
            }
            Event::CopyFailed {
                resource,
                node,
                reason,
            } => write!(f, "copy-failed {resource} {node} {reason}"),
            Event::AcceptDataLoss {
                group_or_resource,
                node,
            } => match node {
                Some(node) => write!(f, "accept-data-loss {group_or_resource} {node}"),
                None => write!(f, "accept-data-loss {group_or_resource}"),
            },
        }
    }
}

impl fmt::Display for CopyStatus {
    /// `generation=2 copied=120 replayed=118 lag=3 healthy` (or
    /// `failed: REASON`, `diverged: REASON`): the form scenario files use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "generation={} copied={} replayed={} lag={} ",
            self.generation, self.copied, self.replayed, self.lag
        )?;
        match &self.health {
            CopyHealth::Healthy => f.write_str("healthy"),
            CopyHealth::Failed(reason) => write!(f, "failed: {reason}"),
            CopyHealth::Refusing(reason) => write!(f, "healthy, refusing writes: {reason}"),
            CopyHealth::Diverged(reason) => write!(f, "diverged: {reason}"),
        }
    }
}
