//! Cluster configuration and its validation.
//!
//! Validation turns a [`ClusterConfig`] into a [`Model`]: names resolved to
//! indices, resources of each group in dependency (topological) order. It runs
//! before any state is touched, so a rejected configuration changes nothing.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    #[serde(default = "default_failover_period")]
    pub failover_period: Millis,
    #[serde(default)]
    pub failback: Failback,
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
    Window { start_hour: u8, end_hour: u8 },
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
    pub name: ResourceId,
    /// The resource type (the plugin) it is an instance of.
    pub type_name: String,
    /// Resources of the same group that must be online before this one.
    #[serde(default)]
    pub depends_on: Vec<ResourceId>,
    #[serde(default)]
    pub restart: RestartPolicy,
}

impl ResourceConfig {
    /// A resource with the default restart policy and no dependencies.
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> Self {
        ResourceConfig {
            name: name.into(),
            type_name: type_name.into(),
            depends_on: Vec::new(),
            restart: RestartPolicy::default(),
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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    /// Reconfiguration only: the change would orphan something that is running.
    #[error("cannot apply configuration: {0}")]
    Conflicts(String),
}

/// The validated configuration, resolved to indices.
#[derive(Debug)]
pub(crate) struct Model {
    pub config: ClusterConfig,
    pub nodes: Vec<NodeId>,
    pub node_ix: HashMap<NodeId, usize>,
    pub groups: Vec<GroupModel>,
    pub group_ix: HashMap<GroupId, usize>,
    pub res: Vec<ResModel>,
    pub res_ix: HashMap<ResourceId, usize>,
}

#[derive(Debug)]
pub(crate) struct GroupModel {
    pub name: GroupId,
    /// Resource indices in dependency order (dependencies first); ties keep
    /// configuration order so the engine's output is deterministic.
    pub resources: Vec<usize>,
    /// Preferred owners (indices), most preferred first, possible ones only.
    pub preferred: Vec<usize>,
    /// Placement order: the preferred owners, then the other possible owners
    /// in cluster order.
    pub candidates: Vec<usize>,
    pub failover_threshold: u32,
    pub failover_period: Millis,
    pub failback: Failback,
    /// Longest retry period of its resources: how long a group left Failed with
    /// no owner waits before trying again where it is.
    pub retry_period: Millis,
}

#[derive(Debug)]
pub(crate) struct ResModel {
    pub name: ResourceId,
    pub group: usize,
    pub type_name: String,
    pub deps: Vec<usize>,
    pub dependents: Vec<usize>,
    /// Other resources of the same cluster-singleton type (empty if the type is
    /// not a singleton).
    pub singleton_peers: Vec<usize>,
    pub singleton: bool,
    pub restart: RestartPolicy,
}

/// Validates `config` and resolves it. The first problem found is returned.
pub(crate) fn compile(config: &ClusterConfig) -> Result<Model, ConfigError> {
    let mut node_ix = HashMap::new();
    for (i, n) in config.nodes.iter().enumerate() {
        if node_ix.insert(n.clone(), i).is_some() {
            return Err(ConfigError::DuplicateNode(n.clone()));
        }
    }
    let mut group_ix = HashMap::new();
    let mut res_ix = HashMap::new();
    let mut res_group = Vec::new();
    for (gi, g) in config.groups.iter().enumerate() {
        if group_ix.insert(g.name.clone(), gi).is_some() {
            return Err(ConfigError::DuplicateGroup(g.name.clone()));
        }
        for r in &g.resources {
            if res_ix.insert(r.name.clone(), res_group.len()).is_some() {
                return Err(ConfigError::DuplicateResource(r.name.clone()));
            }
            res_group.push(gi);
        }
    }

    let mut groups = Vec::new();
    for g in &config.groups {
        let node = |n: &NodeId| {
            node_ix
                .get(n)
                .copied()
                .ok_or_else(|| ConfigError::UnknownNode {
                    group: g.name.clone(),
                    node: n.clone(),
                })
        };
        let mut possible = vec![g.possible_owners.is_none(); config.nodes.len()];
        for n in g.possible_owners.iter().flatten() {
            possible[node(n)?] = true;
        }
        let mut preferred = Vec::new();
        for n in &g.preferred_owners {
            let i = node(n)?;
            if possible[i] && !preferred.contains(&i) {
                preferred.push(i);
            }
        }
        let mut candidates = preferred.clone();
        candidates
            .extend((0..config.nodes.len()).filter(|i| possible[*i] && !preferred.contains(i)));
        if candidates.is_empty() {
            return Err(ConfigError::NoPossibleOwner(g.name.clone()));
        }
        if let Failback::Window {
            start_hour,
            end_hour,
        } = g.failback
            && (start_hour > 23 || end_hour > 23 || start_hour == end_hour)
        {
            return Err(ConfigError::InvalidFailbackWindow {
                group: g.name.clone(),
                start: start_hour,
                end: end_hour,
            });
        }
        groups.push(GroupModel {
            name: g.name.clone(),
            resources: Vec::new(),
            preferred,
            candidates,
            failover_threshold: g.failover_threshold,
            failover_period: g.failover_period,
            failback: g.failback,
            retry_period: g
                .resources
                .iter()
                .map(|r| r.restart.retry_period)
                .max()
                .unwrap_or(Millis::from_hours(1)),
        });
    }

    // Resources, with dependencies checked for dangling and cross-group edges.
    let mut res: Vec<ResModel> = Vec::new();
    for (gi, g) in config.groups.iter().enumerate() {
        for r in &g.resources {
            let mut deps = Vec::new();
            for d in &r.depends_on {
                let Some(&di) = res_ix.get(d) else {
                    return Err(ConfigError::DanglingDependency {
                        group: g.name.clone(),
                        resource: r.name.clone(),
                        dependency: d.clone(),
                    });
                };
                if res_group[di] != gi {
                    return Err(ConfigError::CrossGroupDependency {
                        group: g.name.clone(),
                        resource: r.name.clone(),
                        dependency: d.clone(),
                        other_group: config.groups[res_group[di]].name.clone(),
                    });
                }
                if !deps.contains(&di) {
                    deps.push(di);
                }
            }
            res.push(ResModel {
                name: r.name.clone(),
                group: gi,
                type_name: r.type_name.clone(),
                deps,
                dependents: Vec::new(),
                singleton_peers: Vec::new(),
                singleton: config.singleton_types.contains(&r.type_name),
                restart: r.restart,
            });
        }
    }
    for i in 0..res.len() {
        for d in res[i].deps.clone() {
            res[d].dependents.push(i);
        }
    }
    for i in 0..res.len() {
        if res[i].singleton {
            let peers = (0..res.len())
                .filter(|&j| j != i && res[j].type_name == res[i].type_name)
                .collect();
            res[i].singleton_peers = peers;
        }
    }

    // Cycles, then the dependency order of each group.
    for (gi, g) in groups.iter_mut().enumerate() {
        let members: Vec<usize> = (0..res.len()).filter(|&i| res[i].group == gi).collect();
        if let Some(cycle) = find_cycle(&members, &res) {
            return Err(ConfigError::Cycle {
                group: g.name.clone(),
                cycle,
            });
        }
        let mut order = Vec::with_capacity(members.len());
        while order.len() < members.len() {
            // No cycle, so some member always has all its dependencies placed.
            let next = members
                .iter()
                .copied()
                .find(|m| !order.contains(m) && res[*m].deps.iter().all(|d| order.contains(d)));
            match next {
                Some(m) => order.push(m),
                None => break,
            }
        }
        g.resources = order;
    }

    Ok(Model {
        config: config.clone(),
        nodes: config.nodes.clone(),
        node_ix,
        groups,
        group_ix,
        res,
        res_ix,
    })
}

/// Depth-first search along `depends_on` edges, starting from each member in
/// configuration order; returns the first cycle as `a -> b -> c -> a`.
fn find_cycle(members: &[usize], res: &[ResModel]) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit(
        i: usize,
        res: &[ResModel],
        mark: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<String> {
        mark[i] = Mark::OnStack;
        stack.push(i);
        for &d in &res[i].deps {
            match mark[d] {
                Mark::OnStack => {
                    let start = stack.iter().position(|&s| s == d).unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&s| res[s].name.as_str())
                        .collect();
                    names.push(res[d].name.as_str());
                    return Some(names.join(" -> "));
                }
                Mark::New => {
                    if let Some(c) = visit(d, res, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark[i] = Mark::Done;
        None
    }
    // Indexed by resource; only this group's members are ever visited, since
    // dependencies were checked to stay inside the group.
    let mut mark = vec![Mark::New; res.len()];
    let mut stack = Vec::new();
    for &m in members {
        if mark[m] == Mark::New
            && let Some(c) = visit(m, res, &mut mark, &mut stack)
        {
            return Some(c);
        }
    }
    None
}
