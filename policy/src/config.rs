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
/// RestartPeriod, RestartDelay, RetryPeriodOnFailure; the back-off is
/// systemd's `RestartSteps`/`RestartMaxDelaySec` and Kubernetes'
/// CrashLoopBackOff in spirit).
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
    /// Wait at least this long after any failure before restarting
    /// (Windows' RestartDelay): the floor under every restart, the first
    /// one included. 0 by default, so a service killed once is back at once.
    pub delay: Millis,
    /// The back-off's first step: the wait after the second failure within
    /// `period`, doubled at each further failure in the period (1 s, 2 s,
    /// 4 s, ...) up to `max_backoff`. The first failure in the period never
    /// waits for it. 0 turns the back-off off (every restart after `delay`).
    ///
    /// Why 1 s by default: a service that fails again soon after a restart
    /// fails for a reason that rarely clears within milliseconds (a port
    /// still held, a dependency down, a bad configuration); restarting it
    /// at once again only burns CPU and floods the logs, as systemd's
    /// 100 ms `RestartSec` does in a crash loop. One second is what a
    /// second failure costs on top of its restart, short enough that a
    /// genuinely transient second failure is barely noticed.
    pub backoff: Millis,
    /// The longest back-off wait (`delay` may still be longer).
    ///
    /// Why 5 min by default: Kubernetes' cap for a crash-looping container;
    /// a third of the default 15 min period, so a service whose threshold
    /// lets it loop is still tried a few times per period, and one whose
    /// cause went away (a dependency back) serves again within 5 min
    /// without an operator.
    pub max_backoff: Millis,
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
            backoff: DEFAULT_RESTART_BACKOFF,
            max_backoff: DEFAULT_MAX_RESTART_BACKOFF,
            retry_period: Millis::from_hours(1),
        }
    }
}

/// The default first back-off step (see [`RestartPolicy::backoff`] for why).
pub const DEFAULT_RESTART_BACKOFF: Millis = Millis::from_secs(1);

/// The default back-off cap (see [`RestartPolicy::max_backoff`] for why).
pub const DEFAULT_MAX_RESTART_BACKOFF: Millis = Millis::from_mins(5);

/// How long a restart waits, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartWait {
    /// The wait from the failure to the restart.
    pub wait: Millis,
    /// The back-off set it (it is longer than `delay`), not the delay.
    pub backoff: bool,
}

impl RestartPolicy {
    /// The wait before restarting after the `count`th failure within the
    /// period (this one included, so 1 for the first): the longer of
    /// `delay` and the back-off, which is nothing for the first failure and
    /// `backoff * 2^(count - 2)`, at most `max_backoff`, for the later ones.
    /// Derived from the failures still in the period only, so the wait
    /// shrinks again as they age out, and the first failure after a quiet
    /// period restarts at once.
    pub fn wait_after(&self, count: usize) -> RestartWait {
        let backoff = match count.checked_sub(2) {
            None => Millis::ZERO,
            Some(_) if self.backoff == Millis::ZERO => Millis::ZERO,
            Some(doublings) => {
                let factor = u32::try_from(doublings)
                    .ok()
                    .and_then(|d| 1u64.checked_shl(d));
                match factor.and_then(|f| self.backoff.0.checked_mul(f)) {
                    Some(ms) => Millis(ms.min(self.max_backoff.0)),
                    None => self.max_backoff,
                }
            }
        };
        if backoff > self.delay {
            RestartWait {
                wait: backoff,
                backoff: true,
            }
        } else {
            RestartWait {
                wait: self.delay,
                backoff: false,
            }
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
        "resource {resource} in group {group}: restart max_backoff {max_backoff} is below its backoff step {backoff} (raise max_backoff, or set backoff 0 to turn the back-off off)"
    )]
    BackoffCapBelowStep {
        group: GroupId,
        resource: ResourceId,
        backoff: Millis,
        max_backoff: Millis,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(policy: RestartPolicy, counts: std::ops::RangeInclusive<usize>) -> Vec<(u64, bool)> {
        counts
            .map(|n| {
                let w = policy.wait_after(n);
                (w.wait.0, w.backoff)
            })
            .collect()
    }

    #[test]
    fn the_default_back_off_doubles_from_1_s_to_5_min_after_an_immediate_first_restart() {
        let got = waits(RestartPolicy::default(), 1..=12);
        let s = |secs: u64| (secs * 1000, true);
        assert_eq!(
            got,
            vec![
                (0, false),
                s(1),
                s(2),
                s(4),
                s(8),
                s(16),
                s(32),
                s(64),
                s(128),
                s(256),
                s(300),
                s(300)
            ]
        );
    }

    #[test]
    fn the_delay_is_a_floor_and_the_cap_a_ceiling() {
        let policy = RestartPolicy {
            delay: Millis::from_secs(3),
            backoff: Millis::from_secs(2),
            max_backoff: Millis::from_secs(5),
            ..RestartPolicy::default()
        };
        assert_eq!(
            waits(policy, 1..=5),
            vec![
                (3000, false),
                (3000, false),
                (4000, true),
                (5000, true),
                (5000, true)
            ]
        );
        let longer_delay = RestartPolicy {
            delay: Millis::from_mins(10),
            ..RestartPolicy::default()
        };
        assert!(
            waits(longer_delay, 1..=20)
                .iter()
                .all(|&w| w == (600_000, false))
        );
    }

    #[test]
    fn no_back_off_is_the_delay_every_time() {
        let policy = RestartPolicy {
            delay: Millis(250),
            backoff: Millis::ZERO,
            ..RestartPolicy::default()
        };
        assert!(waits(policy, 1..=70).iter().all(|&w| w == (250, false)));
    }

    #[test]
    fn huge_counts_and_steps_stop_at_the_cap_without_overflowing() {
        let policy = RestartPolicy {
            backoff: Millis(u64::MAX / 2),
            max_backoff: Millis(u64::MAX),
            ..RestartPolicy::default()
        };
        assert_eq!(policy.wait_after(3).wait, Millis(u64::MAX - 1));
        assert_eq!(policy.wait_after(4).wait, Millis(u64::MAX));
        let default = RestartPolicy::default();
        for n in [63, 64, 65, 66, 1_000, usize::MAX] {
            assert_eq!(default.wait_after(n).wait, Millis::from_mins(5), "{n}");
        }
    }

    #[test]
    fn a_policy_written_before_the_back_off_reads_with_the_default_back_off() {
        let old = r#"{"action":"restart-affect-group","threshold":3,"period":900000,"delay":0,"retry_period":3600000}"#;
        let policy: RestartPolicy = serde_json::from_str(old).expect("reads");
        assert_eq!(policy, RestartPolicy::default());
    }
}
