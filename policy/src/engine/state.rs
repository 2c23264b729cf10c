//! What the engine knows about each node, group and resource: the states the
//! public API shows, and the records behind them.

use crate::event::MoveKind;
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
kebab_display!(NodeStatus, ResourceState, GroupState);

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
