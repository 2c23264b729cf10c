//! The node as an operator sees it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::monitor::{LastCheck, ResourceState};

use super::driver::Driver;
use super::node_states::NodeStatusView;

/// The node as an operator sees it (the crm_mon view).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Whether this node takes no new groups.
    pub paused: bool,
    /// Whether automatic restarts and failovers are on.
    pub recovery_actions: bool,
    /// Every node of the cluster with its state (alone: this node).
    pub nodes: Vec<NodeStatusView>,
    /// Every group.
    pub groups: Vec<GroupStatus>,
}

/// One group, as `warden status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// Its state.
    pub state: warden_policy::GroupState,
    /// The node it runs on, if any.
    pub owner: Option<String>,
    /// Failovers counted against its threshold.
    pub failovers_in_period: u32,
    /// Why it is in its state, when it failed.
    pub reason: Option<String>,
    /// Its resources, in dependency order.
    pub resources: Vec<ResourceStatusView>,
}

/// One resource, as `warden status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatusView {
    /// The resource's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its state.
    pub state: ResourceState,
    /// Why it is in its state, when it failed.
    pub reason: Option<String>,
    /// Failures counted against its restart threshold.
    pub failures_in_period: u32,
    /// Health checks run.
    pub checks: u64,
    /// Instances made of it (a new one after every cut-off or trap).
    pub instances: u64,
    /// The version of its type the resource runs on.
    pub version: String,
    /// Where `state` and `reason` come from: this node's monitor (left
    /// out of the JSON, which carries one per resource), or the owner's
    /// reports as the cluster's log carries them.
    #[serde(skip_serializing_if = "StateSource::is_this_node")]
    pub state_from: StateSource,
    /// The state this node's monitor holds, whoever owns the group: what
    /// `/metrics` exposes, so that its gauges stay this node's and summing
    /// them over the nodes counts each resource once (not in the JSON).
    #[serde(skip)]
    pub on_this_node: ResourceState,
    /// The last health check run on this node (none on a node that does
    /// not run the resource: the cluster's log does not carry checks).
    pub last_check: Option<LastCheck>,
    /// The generation of its last activation (resources with copies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Its copies, one per copy node (resources with copies only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyStatusView>,
}

/// Where a resource's state in the status comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateSource {
    /// This node's monitor: the resource runs here, or runs nowhere else.
    ThisNode,
    /// The owner's reports, as the cluster's log carries them to every
    /// node's engine (another node owns its group). Checks, instances and
    /// the version running there are not carried.
    OwnerReports,
}

impl StateSource {
    fn is_this_node(&self) -> bool {
        *self == StateSource::ThisNode
    }
}

/// One copy of a resource's data, as `warden status` shows it: where it
/// is, what runs there, and how far behind it is (Exchange's copy and
/// replay queue lengths).
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatusView {
    /// The node it is on.
    pub node: String,
    /// What of it runs there: none, starting-passive, passive,
    /// stopping-passive, activating, active, deactivating, failed.
    pub state: warden_policy::CopyState,
    /// The node of the active copy it follows, while passive.
    pub source: Option<String>,
    /// The generation of its last status.
    pub generation: Option<u64>,
    /// The last log position it holds (its last status).
    pub copied: Option<u64>,
    /// The last log position it applied (its last status).
    pub replayed: Option<u64>,
    /// The active copy's position minus what this one copied.
    pub copy_queue_length: Option<u64>,
    /// What it copied minus what it replayed.
    pub replay_queue_length: Option<u64>,
    /// How far it lags, as failover counts it.
    pub lag: Option<u64>,
    /// `healthy`, `failed` (its last status, or the copy failing) or
    /// `diverged` (its log went past or away from the active copy's: it is
    /// reseeded). An active copy that refuses writes for now (sync with no
    /// passive copy connected) is `healthy`, with the reason and
    /// `writes_refused`.
    pub health: Option<String>,
    /// Why it failed, is unhealthy, or refuses writes.
    pub reason: Option<String>,
    /// The active copy only: it serves, but refuses writes for now, and
    /// why (writes are answered 451 until a passive copy connects or
    /// catches up). Not a failure: nothing is restarted or moved for it.
    pub writes_refused: Option<String>,
    /// Why it was last reseeded (dropped and copied again from the active
    /// copy), if it ever was.
    pub reseeded: Option<String>,
    /// Why it may not be activated now without the operator's word.
    pub activation_blocked: Option<String>,
}

impl CopyStatusView {
    fn from_view(copy: warden_policy::CopyView) -> CopyStatusView {
        let status = copy.status.as_ref();
        let (unhealthy, diverged) = match status.map(|s| &s.health) {
            Some(warden_policy::CopyHealth::Failed(reason)) => (Some(reason.clone()), false),
            Some(warden_policy::CopyHealth::Diverged(reason)) => (Some(reason.clone()), true),
            Some(warden_policy::CopyHealth::Healthy | warden_policy::CopyHealth::Refusing(_))
            | None => (None, false),
        };
        // Only while the copy is the active one: a refusal reported before
        // it stepped down says nothing now.
        let writes_refused = status
            .filter(|_| copy.state == warden_policy::CopyState::Active)
            .and_then(|s| match &s.health {
                warden_policy::CopyHealth::Refusing(reason) => Some(reason.clone()),
                _ => None,
            });
        let health = if copy.failed_reason.is_some() {
            Some("failed")
        } else if unhealthy.is_some() {
            Some(if diverged { "diverged" } else { "failed" })
        } else {
            status.map(|_| "healthy")
        };
        CopyStatusView {
            health: health.map(str::to_string),
            reason: copy
                .failed_reason
                .or(unhealthy)
                .or_else(|| writes_refused.clone()),
            writes_refused,
            reseeded: copy.reseeded,
            node: copy.node,
            state: copy.state,
            source: copy.source,
            generation: status.map(|s| s.generation),
            copied: status.map(|s| s.copied),
            replayed: status.map(|s| s.replayed),
            copy_queue_length: copy.copy_queue_length,
            replay_queue_length: copy.replay_queue_length,
            lag: copy.lag,
            activation_blocked: copy.activation_blocked,
        }
    }
}

impl Driver {
    /// The whole status. Linear in the resources: each resource's type and
    /// group are looked up by name, not by scanning every resource for
    /// every group (quadratic: 1.1 s at 10 000 resources).
    pub(super) fn status(&self) -> Status {
        let me = self.settings.name.as_str();
        let node = self.engine.node(me);
        let types: HashMap<&str, &str> = self
            .desired
            .resources
            .iter()
            .map(|c| (c.name.as_str(), c.type_name.as_str()))
            .collect();
        let groups = self.engine.groups();
        // Groups another node owns: their resources' states are that
        // node's reports, which every engine replica holds (the monitor
        // here only knows that it runs none of them).
        let owned_elsewhere: HashSet<&str> = if self.sequencing.cluster().is_some() {
            groups
                .iter()
                .filter(|g| g.owner.as_deref().is_some_and(|owner| owner != me))
                .map(|g| g.name.as_str())
                .collect()
        } else {
            HashSet::new()
        };
        let mut by_group: HashMap<String, Vec<ResourceStatusView>> = HashMap::new();
        for r in self.engine.resources() {
            let live = self.monitor.get(&r.name).map(|h| h.status());
            let copies = self.engine.copies(&r.name);
            let elsewhere = owned_elsewhere.contains(r.group.as_str());
            let on_this_node = live
                .as_ref()
                .map(|s| s.state)
                .unwrap_or(ResourceState::Offline);
            let (state, reason, state_from) = if elsewhere {
                (r.state.into(), r.failed_reason, StateSource::OwnerReports)
            } else {
                (
                    on_this_node,
                    live.as_ref()
                        .and_then(|s| s.reason.clone())
                        .or(r.failed_reason),
                    StateSource::ThisNode,
                )
            };
            let view = ResourceStatusView {
                type_name: types
                    .get(r.name.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_string(),
                state,
                reason,
                state_from,
                on_this_node,
                failures_in_period: r.failures_in_period,
                checks: live.as_ref().map(|s| s.checks).unwrap_or(0),
                instances: live.as_ref().map(|s| s.instances).unwrap_or(0),
                last_check: live.as_ref().and_then(|s| s.last_check),
                version: live.map(|s| s.version).unwrap_or_default(),
                generation: copies.as_ref().map(|c| c.generation),
                copies: copies
                    .map(|c| {
                        c.copies
                            .into_iter()
                            .map(CopyStatusView::from_view)
                            .collect()
                    })
                    .unwrap_or_default(),
                name: r.name,
            };
            by_group.entry(r.group).or_default().push(view);
        }
        let groups = groups
            .into_iter()
            .map(|g| GroupStatus {
                resources: by_group.remove(&g.name).unwrap_or_default(),
                name: g.name,
                state: g.state,
                owner: g.owner,
                failovers_in_period: g.failovers_in_period,
                reason: g.failed_reason,
            })
            .collect();
        Status {
            node: self.settings.name.clone(),
            paused: node
                .as_ref()
                .is_some_and(|n| !matches!(n.status, warden_policy::NodeStatus::Up)),
            recovery_actions: node.as_ref().is_none_or(|n| n.recovery_enabled),
            nodes: self.node_states(),
            groups,
        }
    }
}

/// How many groups a summary lists by name at most: the ones a person has
/// to look at (not Online), the rest counted.
pub const SUMMARY_LISTED: usize = 100;

/// The node summarised for a person at thousands of groups
/// (`GET /v1/status/summary`, `warden status` on a large node): counts per
/// state, and the groups that are not Online with their resources that
/// are not Online. A few hundred bytes where the whole status is
/// megabytes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// This node's name.
    pub node: String,
    /// Whether this node takes no new groups.
    pub paused: bool,
    /// Whether automatic restarts and failovers are on.
    pub recovery_actions: bool,
    /// Every node of the cluster with its state (alone: this node).
    pub nodes: Vec<NodeStatusView>,
    /// Groups: how many, and how many in each state.
    pub groups: Counts,
    /// Resources: how many, and how many in each state.
    pub resources: Counts,
    /// The groups not Online, in configuration order, at most
    /// [`SUMMARY_LISTED`], each with only its resources that are not Online.
    pub not_online: Vec<GroupStatus>,
    /// Groups not Online beyond those listed.
    pub not_online_unlisted: usize,
}

/// A total and its split by state (the state's name as in the status).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// How many in all.
    pub total: usize,
    /// How many in each state; states with none are left out.
    pub by_state: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, state: impl Serialize) {
        self.total += 1;
        *self.by_state.entry(state_name(state)).or_default() += 1;
    }
}

/// A state as the status spells it (its JSON string).
fn state_name(state: impl Serialize) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

impl Summary {
    /// Summarise `status`.
    pub fn of(status: Status) -> Summary {
        let mut groups = Counts::default();
        let mut resources = Counts::default();
        let mut not_online = Vec::new();
        let mut not_online_unlisted = 0;
        for mut group in status.groups {
            groups.add(group.state);
            for r in &group.resources {
                resources.add(r.state);
            }
            if matches!(group.state, warden_policy::GroupState::Online) {
                continue;
            }
            if not_online.len() == SUMMARY_LISTED {
                not_online_unlisted += 1;
                continue;
            }
            group.resources.retain(|r| r.state != ResourceState::Online);
            not_online.push(group);
        }
        Summary {
            node: status.node,
            paused: status.paused,
            recovery_actions: status.recovery_actions,
            nodes: status.nodes,
            groups,
            resources,
            not_online,
            not_online_unlisted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(
        name: &str,
        state: warden_policy::GroupState,
        states: &[ResourceState],
    ) -> GroupStatus {
        GroupStatus {
            name: name.to_string(),
            state,
            owner: None,
            failovers_in_period: 0,
            reason: None,
            resources: states
                .iter()
                .enumerate()
                .map(|(i, &state)| ResourceStatusView {
                    name: format!("{name}-{i}"),
                    type_name: "chaos".to_string(),
                    state,
                    reason: None,
                    failures_in_period: 0,
                    checks: 0,
                    instances: 0,
                    version: String::new(),
                    state_from: StateSource::ThisNode,
                    on_this_node: state,
                    last_check: None,
                    generation: None,
                    copies: Vec::new(),
                })
                .collect(),
        }
    }

    fn status(groups: Vec<GroupStatus>) -> Status {
        Status {
            node: "n".to_string(),
            paused: false,
            recovery_actions: true,
            nodes: Vec::new(),
            groups,
        }
    }

    #[test]
    fn counts_every_state_and_lists_only_what_is_not_online() {
        use warden_policy::GroupState::{Failed, Online, PartialOnline};
        let summary = Summary::of(status(vec![
            group("a", Online, &[ResourceState::Online, ResourceState::Online]),
            group(
                "b",
                PartialOnline,
                &[ResourceState::Online, ResourceState::Failed],
            ),
            group("c", Failed, &[ResourceState::Failed]),
        ]));
        assert_eq!(summary.groups.total, 3);
        assert_eq!(summary.resources.total, 5);
        assert_eq!(summary.resources.by_state.get("Online"), Some(&3));
        assert_eq!(summary.resources.by_state.get("Failed"), Some(&2));
        let listed: Vec<&str> = summary.not_online.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(listed, ["b", "c"]);
        // Only the resources to look at: b's Online one is left out.
        assert_eq!(summary.not_online[0].resources.len(), 1);
        assert_eq!(summary.not_online[0].resources[0].name, "b-1");
        assert_eq!(summary.not_online_unlisted, 0);
    }

    #[test]
    fn lists_at_most_its_limit_and_counts_the_rest() {
        let groups = (0..SUMMARY_LISTED + 7)
            .map(|i| {
                group(
                    &format!("g{i}"),
                    warden_policy::GroupState::Failed,
                    &[ResourceState::Failed],
                )
            })
            .collect();
        let summary = Summary::of(status(groups));
        assert_eq!(summary.not_online.len(), SUMMARY_LISTED);
        assert_eq!(summary.not_online_unlisted, 7);
        assert_eq!(
            summary.groups.by_state.get("failed"),
            Some(&(SUMMARY_LISTED + 7))
        );
    }
}
