//! Cluster configuration: what the operator writes, and why it can be
//! refused. Validation (`model.rs`) turns it into the engine's model.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// A node's name, as the cluster store knows it.
pub type NodeId = String;
/// A group's (virtual server's) name.
pub type GroupId = String;
/// A resource's name; unique in the whole cluster, because events name
/// resources without their group.
pub type ResourceId = String;

/// Everything the policy needs to know about the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Every node that may ever join, in the order used to break ties when a
    /// group has no preference.
    pub nodes: Vec<NodeId>,
    /// Resource types of which at most one resource may be online in the whole
    /// cluster (the MTA). A type-level property: the host learns it from the
    /// plugin's description.
    #[serde(default)]
    pub singleton_types: Vec<String>,
    /// The groups (virtual servers).
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// A group: resources that move together, and where they may run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// The group's name, unique in the cluster.
    pub name: GroupId,
    /// Preferred owners, most preferred first. Failover goes to the next one in
    /// this list; failback to the first one that is up.
    #[serde(default)]
    pub preferred_owners: Vec<NodeId>,
    /// Nodes the group may run on at all; `None` means every node.
    #[serde(default)]
    pub possible_owners: Option<Vec<NodeId>>,
    /// At most this many failovers within `failover_period`; past it the group
    /// stays Failed.
    #[serde(default = "default_failover_threshold")]
    pub failover_threshold: u32,
    /// The period `failover_threshold` counts in (6 hours by default).
    #[serde(default = "default_failover_period")]
    pub failover_period: Millis,
    /// Whether and when the group goes back to its most preferred owner.
    #[serde(default)]
    pub failback: Failback,
    /// The group's resources, in any order (dependencies order them).
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
}

fn default_failover_threshold() -> u32 {
    10
}

fn default_failover_period() -> Millis {
    Millis::from_hours(6)
}

impl GroupConfig {
    /// A group with the default policy (10 failovers in 6 h, no failback).
    pub fn new(name: impl Into<String>) -> Self {
        GroupConfig {
            name: name.into(),
            preferred_owners: Vec::new(),
            possible_owners: None,
            failover_threshold: default_failover_threshold(),
            failover_period: default_failover_period(),
            failback: Failback::Off,
            resources: Vec::new(),
        }
    }
}

/// When a group that failed over goes back to its most preferred owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failback {
    /// Stay where failover put it (the default, as in Windows clustering).
    #[default]
    Off,
    /// As soon as a more preferred owner is up and the group is settled.
    Immediate,
    /// Only while the hour of day is in `start_hour..end_hour`; the window may
    /// wrap midnight (22..6).
    Window {
        /// The first hour of the window (0..=23).
        start_hour: u8,
        /// The hour the window closes (0..=23, not `start_hour`).
        end_hour: u8,
    },
}

impl Failback {
    /// Whether a failback may start at `now`.
    pub fn allows(self, now: Millis) -> bool {
        match self {
            Failback::Off => false,
            Failback::Immediate => true,
            Failback::Window {
                start_hour,
                end_hour,
            } => {
                let h = now.hour_of_day();
                if start_hour <= end_hour {
                    (start_hour..end_hour).contains(&h)
                } else {
                    h >= start_hour || h < end_hour
                }
            }
        }
    }
}

/// One resource of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConfig {
    /// The resource's name, unique in the cluster.
    pub name: ResourceId,
    /// The resource type (the plugin) it is an instance of.
    pub type_name: String,
    /// Resources of the same group that must be online before this one.
    #[serde(default)]
    pub depends_on: Vec<ResourceId>,
    /// What happens when it fails.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Where the resource keeps copies of its data (Exchange's active and
    /// passive copies, Pacemaker's promotable clone with one promoted
    /// instance): `None`, the resource has none and runs as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<CopyNodes>,
    /// How many log positions a copy may lag behind the active one and still
    /// be activated without the operator's word (`None`:
    /// [`DEFAULT_MAX_LAG_ON_FAILOVER`]). Only for a resource with copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_on_failover: Option<u64>,
}

/// The lag limit of a resource with copies that does not set one: 100 log
/// positions.
///
/// Why not 0: an asynchronous copy is almost never exactly caught up when its
/// active dies, since it learns the active's position only as often as it
/// reports, so 0 would leave the group Failed at nearly every failover.
/// Why 100: the spirit of Exchange's AutoDatabaseMountDial "good
/// availability" (mount automatically with up to 6 transaction logs of 1 MB
/// missing) and of Patroni's `maximum_lag_on_failover` (1 MiB): a small,
/// bounded loss. A position of the mail store is one message; at tens of KB
/// a message, 100 of them is a few MB, a few seconds of a busy server's
/// mail. A copy further behind than that has stopped copying, and its
/// activation waits for the operator.
pub const DEFAULT_MAX_LAG_ON_FAILOVER: u64 = 100;

/// The nodes that hold copies of a resource's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyNodes {
    /// Every possible owner of the resource's group (`copies = "all"`).
    All,
    /// These nodes, each a possible owner of the group
    /// (`copies = ["n1", "n2"]`).
    Listed(Vec<NodeId>),
}

impl Serialize for CopyNodes {
    /// `"all"`, or the list of node names: what the operator writes.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CopyNodes::All => serializer.serialize_str("all"),
            CopyNodes::Listed(nodes) => nodes.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for CopyNodes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CopyNodesVisitor;
        impl<'de> serde::de::Visitor<'de> for CopyNodesVisitor {
            type Value = CopyNodes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"all\" or a list of node names")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<CopyNodes, E> {
                if value == "all" {
                    Ok(CopyNodes::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(value), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CopyNodes, A::Error> {
                let mut nodes = Vec::new();
                while let Some(node) = seq.next_element::<NodeId>()? {
                    nodes.push(node);
                }
                Ok(CopyNodes::Listed(nodes))
            }
        }
        deserializer.deserialize_any(CopyNodesVisitor)
    }
}

impl ResourceConfig {
    /// A resource with the default restart policy, no dependencies and no
    /// copies.
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> Self {
        ResourceConfig {
            name: name.into(),
            type_name: type_name.into(),
            depends_on: Vec::new(),
            restart: RestartPolicy::default(),
            copies: None,
            max_lag_on_failover: None,
        }
    }
}

/// What to do when a resource fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartAction {
    /// Leave it Failed (until the retry period brings it back).
    DoNotRestart,
    /// Restart it; past the threshold it stays Failed but the group stays.
    RestartNoAffectGroup,
    /// Restart it; past the threshold fail the whole group over (the default).
    #[default]
    RestartAffectGroup,
}

/// Restart behaviour of one resource (Windows: RestartAction, RestartThreshold,
/// RestartPeriod, RestartDelay, RetryPeriodOnFailure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// Restart, and whether failing past the threshold fails the group over.
    pub action: RestartAction,
    /// Failures allowed within `period`: the failure that makes the count in
    /// the period reach this is final (3: two restarts, the third failure
    /// fails the group over, as in the seeds). 0 and 1 both mean no restart.
    pub threshold: u32,
    /// Failures older than this are forgotten (a failure exactly `period` ago
    /// no longer counts).
    pub period: Millis,
    /// Wait this long after a failure before restarting.
    pub delay: Millis,
    /// A resource left Failed is tried again after this long.
    pub retry_period: Millis,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            action: RestartAction::RestartAffectGroup,
            threshold: 3,
            period: Millis::from_secs(900),
            delay: Millis::ZERO,
            retry_period: Millis::from_hours(1),
        }
    }
}

/// Why a configuration was rejected. Nothing changed in the engine.
///
/// Each variant's message (its `#[error]`) is its documentation, and its
/// fields are the names the message shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum ConfigError {
    #[error("duplicate node {0}")]
    DuplicateNode(NodeId),
    #[error("duplicate group {0}")]
    DuplicateGroup(GroupId),
    #[error("duplicate resource {0} (resource names are unique in the cluster)")]
    DuplicateResource(ResourceId),
    #[error("group {group} names unknown node {node}")]
    UnknownNode { group: GroupId, node: NodeId },
    #[error("group {0} has no possible owner")]
    NoPossibleOwner(GroupId),
    #[error(
        "failback window {start}..{end} of group {group} is invalid (hours 0..=23, start != end)"
    )]
    InvalidFailbackWindow { group: GroupId, start: u8, end: u8 },
    #[error("dependency cycle in group {group}: {cycle}")]
    Cycle { group: GroupId, cycle: String },
    #[error("resource {resource} in group {group} depends on unknown resource {dependency}")]
    DanglingDependency {
        group: GroupId,
        resource: ResourceId,
        dependency: ResourceId,
    },
    #[error(
        "resource {resource} in group {group} depends on {dependency}, which is in group {other_group} (dependencies stay inside a group)"
    )]
    CrossGroupDependency {
        group: GroupId,
        resource: ResourceId,
        dependency: ResourceId,
        other_group: GroupId,
    },
    #[error(
        "resource {resource} in group {group}: copies names {node}, which is not a possible owner of {group}"
    )]
    CopyNodeNotPossibleOwner {
        group: GroupId,
        resource: ResourceId,
        node: NodeId,
    },
    #[error("resource {resource} in group {group}: copies names {node} twice")]
    DuplicateCopyNode {
        group: GroupId,
        resource: ResourceId,
        node: NodeId,
    },
    #[error(
        "resource {resource} in group {group}: copies is an empty list (say \"all\", name nodes, or leave copies out)"
    )]
    NoCopyNodes {
        group: GroupId,
        resource: ResourceId,
    },
    #[error(
        "resource {resource} in group {group} sets max_lag_on_failover but has no copies (set copies too, or leave max_lag_on_failover out)"
    )]
    MaxLagWithoutCopies {
        group: GroupId,
        resource: ResourceId,
    },
    /// Reconfiguration only: the change would orphan something that is running.
    #[error("cannot apply configuration: {0}")]
    Conflicts(String),
}
