//! What the engine knows about each node, group and resource: the states the
//! public API shows, and the records behind them.

use crate::event::{CopyStatus, MoveKind};
use crate::index::NodeIx;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// Not in the cluster (every node starts here).
    Down,
    /// In the cluster, taking groups.
    Up,
    /// Keeps its groups, takes no new ones.
    Paused,
    /// Takes no new groups and moves its groups away.
    Draining,
}

/// A resource's state as far as the engine knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceState {
    /// Not running anywhere.
    Offline,
    /// `BringOnline` was requested and not yet confirmed.
    OnlinePending,
    /// Confirmed online.
    Online,
    /// `TakeOffline` was requested and not yet confirmed.
    OfflinePending,
    /// Failed: waiting for a restart, for its retry period, or for the group
    /// to be placed again.
    Failed,
}

impl ResourceState {
    /// Online or on its way up or down: something runs (or may run) on its
    /// node, so its group cannot move and its dependencies must stay up.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ResourceState::OnlinePending | ResourceState::Online | ResourceState::OfflinePending
        )
    }
}

/// A group's state, derived from its goal and its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupState {
    /// Every resource offline.
    Offline,
    /// Coming online, going offline, restarting something or moving.
    Pending,
    /// Every resource online.
    Online,
    /// Wanted online and settled, but not every resource is online (one stays
    /// failed, or a cluster-singleton was refused).
    PartialOnline,
    /// Wanted online but cannot be placed or stays failed (the reason is in
    /// the event history).
    Failed,
}

macro_rules! kebab_display {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let s = format!("{self:?}");
                let mut out = String::new();
                for (i, c) in s.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        out.push('-');
                    }
                    out.push(c.to_ascii_lowercase());
                }
                f.write_str(&out)
            }
        }
    )*};
}
/// What runs of one copy of a resource with copies, on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyState {
    /// Nothing runs (its data, if any, stays on the node's disk).
    None,
    /// `StartPassiveCopy` was requested (to start it, or to re-point it to
    /// a new source) and not yet confirmed.
    StartingPassive,
    /// Runs as a passive copy, following its source if it has one.
    Passive,
    /// `StopPassiveCopy` was requested and not yet confirmed.
    StoppingPassive,
    /// `ActivateCopy` was requested and not yet confirmed: the resource is
    /// pending online on this node.
    Activating,
    /// The active copy: the resource is online on this node.
    Active,
    /// `DeactivateCopy` was requested and not yet confirmed: the resource
    /// is pending offline on this node.
    Deactivating,
    /// The copy failed (the reason is in its view); it is started again
    /// after the resource's retry period.
    Failed,
}

impl CopyState {
    /// Something of the copy runs (or may run) on its node: a status report
    /// about it is believed, and a copy request to it may be outstanding.
    pub fn runs(self) -> bool {
        !matches!(self, CopyState::None | CopyState::Failed)
    }
}

kebab_display!(NodeStatus, ResourceState, GroupState, CopyState);

/// What the engine records about a node.
#[derive(Clone, Debug)]
pub(super) struct NodeRecord {
    pub status: NodeStatus,
    /// Whether recovery actions (restarts, failovers) are enabled there.
    pub recovery: bool,
}

impl NodeRecord {
    /// A node not seen yet: down, recovery actions enabled.
    pub(super) fn new() -> Self {
        NodeRecord {
            status: NodeStatus::Down,
            recovery: true,
        }
    }
}

/// What the engine is trying to do with a group.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Goal {
    Offline,
    Online,
    /// Take everything offline on the owner, then place it on `to`.
    Moving {
        to: NodeIx,
        kind: MoveKind,
    },
    /// Take everything offline and stay so; with `retry_at`, place it again
    /// then, or earlier on a node other than `avoid` as soon as one is up.
    Failed {
        reason: String,
        retry_at: Option<Millis>,
        avoid: Option<NodeIx>,
    },
}

/// What the engine records about a group.
#[derive(Clone, Debug)]
pub(super) struct GroupRecord {
    pub owner: Option<NodeIx>,
    pub goal: Goal,
    /// When each failover counted against the threshold happened.
    pub failovers: Vec<Millis>,
    /// The last placement was a failover: failback applies.
    pub failed_over: bool,
    /// "Cannot drain" was already recorded; don't repeat it on every event.
    pub drain_noted: bool,
    /// The operator accepted data loss for the group's next placement (and,
    /// once placed, for the activations of that placement).
    pub loss_accepted: Option<AcceptedLoss>,
}

/// The operator's word that copies may be activated past their lag limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct AcceptedLoss {
    /// On this node only; `None`: wherever the copies lag least.
    pub node: Option<NodeIx>,
}

impl AcceptedLoss {
    /// Whether the word covers an activation on `node`.
    pub(super) fn covers(self, node: NodeIx) -> bool {
        self.node.is_none_or(|named| named == node)
    }
}

impl GroupRecord {
    /// A group never placed: offline, no owner, no failovers.
    pub(super) fn new() -> Self {
        GroupRecord {
            owner: None,
            goal: Goal::Offline,
            failovers: Vec::new(),
            failed_over: false,
            drain_noted: false,
            loss_accepted: None,
        }
    }
}

/// A pending recovery of a Failed resource.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Recovery {
    None,
    /// Restart (due at this time, and once its dependents are offline).
    RestartAt(Millis),
    /// Failed for good until this time (the retry period on failure).
    RetryAt(Millis),
}

/// What the engine records about a resource.
#[derive(Clone, Debug)]
pub(super) struct ResourceRecord {
    pub state: ResourceState,
    pub recovery: Recovery,
    /// When each failure counted against the restart threshold happened.
    pub failures: Vec<Millis>,
    /// A singleton refusal was already reported for the current attempt.
    pub refused: bool,
    pub failed_reason: Option<String>,
}

impl ResourceRecord {
    /// A resource as a new placement starts it: offline, nothing counted.
    pub(super) fn new() -> Self {
        ResourceRecord {
            state: ResourceState::Offline,
            recovery: Recovery::None,
            failures: Vec::new(),
            refused: false,
            failed_reason: None,
        }
    }
}

/// What the engine records about one copy of a resource, on one node.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CopyRecord {
    pub state: CopyState,
    /// The node of the active copy it follows (or was last told to follow),
    /// while it runs as a passive copy.
    pub source: Option<NodeIx>,
    /// The copy's last report, kept while it is stopped or its node is
    /// down: the data on disk does not change meanwhile.
    pub status: Option<CopyStatus>,
    /// Why it failed, while Failed.
    pub failed_reason: Option<String>,
    /// When a Failed copy is started again.
    pub retry_at: Option<Millis>,
    /// Why the copy was last reseeded (its data dropped and copied again
    /// from the active copy), if it ever was: kept for status views.
    pub reseeded: Option<String>,
}

impl CopyRecord {
    /// A copy never started, never heard of.
    pub(super) fn new() -> Self {
        CopyRecord {
            state: CopyState::None,
            source: None,
            status: None,
            failed_reason: None,
            retry_at: None,
            reseeded: None,
        }
    }

    /// Nothing runs any more (stopped, thrown away, or its node died); what
    /// it reported stays.
    pub(super) fn stopped(&mut self) {
        self.state = CopyState::None;
        self.source = None;
        self.failed_reason = None;
        self.retry_at = None;
    }
}

/// The copies of one resource (empty for a resource without copies).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CopySet {
    /// The generation of the last activation (0: never activated). Strictly
    /// increasing: every `ActivateCopy` takes the next one.
    pub generation: u64,
    /// The node the last `ActivateCopy` went to: its copy holds the newest
    /// data the engine knows of.
    pub last_active: Option<NodeIx>,
    /// One per copy node, in the order of the model's copy nodes.
    pub copies: Vec<CopyRecord>,
}

impl CopySet {
    /// `nodes` copies, none started, never activated.
    pub(super) fn new(nodes: usize) -> Self {
        CopySet {
            generation: 0,
            last_active: None,
            copies: vec![CopyRecord::new(); nodes],
        }
    }
}

/// "once", "2 times": counts in reasons read by people.
pub(super) fn times(n: usize) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}

/// Entries of `times` that are less than `period` old at `now`.
pub(super) fn within(times: &[Millis], now: Millis, period: Millis) -> usize {
    times
        .iter()
        .filter(|t| now.saturating_sub(**t) < period)
        .count()
}
