//! The engine: the state of every node, group and resource, and the rules that
//! turn events into actions.
//!
//! Every event is handled in two steps. `apply` records what the event says
//! (a resource is online, a node is gone) and takes the decisions that only
//! that event can trigger (count a failure, pick a failover target). Then
//! `reconcile` compares, group by group, what is with what is wanted and emits
//! the requests that move one towards the other: dependency order on the way
//! up, reverse order on the way down, a change of owner once a group is
//! entirely offline. Because all follow-up work is derived from state rather
//! than remembered as a to-do list, a lost branch of logic cannot leave a
//! group stuck, and what-if is just a clone.

use crate::config::{
    ClusterConfig, ConfigError, Failback, Model, NodeId, ResourceId, RestartAction, compile,
};
use crate::event::{Action, Event, MoveKind};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A node's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Down,
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
    Offline,
    /// `BringOnline` was requested and not yet confirmed.
    OnlinePending,
    Online,
    /// `TakeOffline` was requested and not yet confirmed.
    OfflinePending,
    /// Failed: waiting for a restart, for its retry period, or for the group
    /// to be placed again.
    Failed,
}

/// A group's state, derived from its goal and its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupState {
    Offline,
    /// Coming online, going offline, restarting something or moving.
    Pending,
    Online,
    /// Wanted online and settled, but not every resource is online (one stays
    /// failed, or a cluster-singleton was refused).
    PartialOnline,
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

/// Read-only view of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub name: NodeId,
    pub status: NodeStatus,
    pub recovery_enabled: bool,
}

/// Read-only view of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub name: String,
    pub state: GroupState,
    /// Where its resources run or are to run (the last owner while offline).
    pub owner: Option<NodeId>,
    /// Where it goes once it is offline on its owner, during a move.
    pub moving_to: Option<NodeId>,
    /// Failovers counted against the threshold right now.
    pub failovers_in_period: u32,
    /// Why it is Failed, if it is.
    pub failed_reason: Option<String>,
}

/// Read-only view of a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceView {
    pub name: ResourceId,
    pub group: String,
    pub state: ResourceState,
    /// The node it runs (or is pending) on, when it runs anywhere.
    pub node: Option<NodeId>,
    /// Failures counted against the restart threshold right now.
    pub failures_in_period: u32,
    /// When a decided restart happens (once its dependents are offline).
    pub restart_at: Option<Millis>,
    /// When a resource left Failed is tried again.
    pub retry_at: Option<Millis>,
    pub failed_reason: Option<String>,
}

#[derive(Clone, Debug)]
struct NodeRt {
    status: NodeStatus,
    recovery: bool,
}

/// What the engine is trying to do with a group.
#[derive(Clone, Debug, PartialEq)]
enum Goal {
    Offline,
    Online,
    /// Take everything offline on the owner, then place it on `to`.
    Moving {
        to: usize,
        kind: MoveKind,
    },
    /// Take everything offline and stay so; with `retry_at`, place it again
    /// then, or earlier on a node other than `avoid` as soon as one is up.
    Failed {
        reason: String,
        retry_at: Option<Millis>,
        avoid: Option<usize>,
    },
}

#[derive(Clone, Debug)]
struct GroupRt {
    owner: Option<usize>,
    goal: Goal,
    /// When each failover counted against the threshold happened.
    failovers: Vec<Millis>,
    /// The last placement was a failover: failback applies.
    failed_over: bool,
    /// "Cannot drain" was already recorded; don't repeat it on every event.
    drain_noted: bool,
}

/// A pending recovery of a Failed resource.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Recovery {
    None,
    /// Restart (due at this time, and once its dependents are offline).
    RestartAt(Millis),
    /// Failed for good until this time (the retry period on failure).
    RetryAt(Millis),
}

#[derive(Clone, Debug)]
struct ResRt {
    state: ResourceState,
    recovery: Recovery,
    /// When each failure counted against the restart threshold happened.
    failures: Vec<Millis>,
    /// A singleton refusal was already reported for the current attempt.
    refused: bool,
    failed_reason: Option<String>,
}

impl ResRt {
    fn new() -> Self {
        ResRt {
            state: ResourceState::Offline,
            recovery: Recovery::None,
            failures: Vec::new(),
            refused: false,
            failed_reason: None,
        }
    }
}

/// "once", "2 times": counts in reasons read by people.
fn times(n: usize) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}

fn active(s: ResourceState) -> bool {
    matches!(
        s,
        ResourceState::OnlinePending | ResourceState::Online | ResourceState::OfflinePending
    )
}

/// Entries of `times` that are less than `period` old at `now`.
fn within(times: &[Millis], now: Millis, period: Millis) -> usize {
    times
        .iter()
        .filter(|t| now.saturating_sub(**t) < period)
        .count()
}

/// The group policy engine. Cheap to clone (the configuration is shared), which
/// is how [`Engine::what_if`] works.
#[derive(Clone, Debug)]
pub struct Engine {
    m: Arc<Model>,
    nodes: Vec<NodeRt>,
    groups: Vec<GroupRt>,
    res: Vec<ResRt>,
    now: Millis,
}

impl Engine {
    /// Validates `config` and starts with every node Down and every group
    /// Offline.
    pub fn new(config: ClusterConfig) -> Result<Engine, ConfigError> {
        let m = compile(&config)?;
        Ok(Engine {
            nodes: vec![
                NodeRt {
                    status: NodeStatus::Down,
                    recovery: true,
                };
                m.nodes.len()
            ],
            groups: vec![
                GroupRt {
                    owner: None,
                    goal: Goal::Offline,
                    failovers: Vec::new(),
                    failed_over: false,
                    drain_noted: false,
                };
                m.groups.len()
            ],
            res: vec![ResRt::new(); m.res.len()],
            m: Arc::new(m),
            now: Millis::ZERO,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.m.config
    }

    /// The latest time the engine was given.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Handles one event at `now` and returns what to do, in order.
    ///
    /// Time never goes backwards: an earlier `now` is taken as the latest one
    /// seen.
    pub fn handle(&mut self, event: Event, now: Millis) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        self.apply(event, &mut out);
        self.reconcile(&mut out);
        out
    }

    /// The actions `event` at `now` would cause, without changing anything
    /// (like `crm_simulate`).
    pub fn what_if(&self, event: Event, now: Millis) -> Vec<Action> {
        self.clone().handle(event, now)
    }

    /// When the driver should send the next [`Event::Tick`]: the earliest
    /// restart delay, retry period, group retry or failback window still ahead.
    /// Work that waits for a report instead (a restart waiting for dependents
    /// to go offline) happens when that report arrives.
    pub fn next_deadline(&self) -> Option<Millis> {
        let now = self.now;
        let mut best: Option<Millis> = None;
        let mut consider = |t: Millis| {
            if t > now && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        for (g, gr) in self.groups.iter().enumerate() {
            let gm = &self.m.groups[g];
            match &gr.goal {
                Goal::Online => {
                    for &r in &gm.resources {
                        match self.res[r].recovery {
                            Recovery::RestartAt(t) | Recovery::RetryAt(t) => consider(t),
                            Recovery::None => {}
                        }
                    }
                    if let (Failback::Window { start_hour, .. }, Some(owner)) =
                        (gm.failback, gr.owner)
                        && gr.failed_over
                        && self.settled(g)
                        && self.failback_target(g, owner).is_some()
                        && !gm.failback.allows(now)
                    {
                        consider(now.next_hour_start(start_hour));
                    }
                }
                Goal::Failed {
                    retry_at: Some(t), ..
                } => consider(*t),
                _ => {}
            }
        }
        best
    }

    /// Replaces the configuration. Nodes, groups and resources keep their state
    /// by name; new ones start Down / Offline. Refused, with nothing changed,
    /// when the change would orphan something running: removing a group that
    /// is not offline, a running resource, a node that owns an active group,
    /// changing the dependencies of a running resource (as Windows requires), or
    /// making a type a singleton while two of its resources run.
    pub fn reconfigure(
        &mut self,
        config: ClusterConfig,
        now: Millis,
    ) -> Result<Vec<Action>, ConfigError> {
        let m = compile(&config)?;
        let old = &self.m;
        let conflict = |s: String| Err(ConfigError::Conflicts(s));
        for (g, gr) in self.groups.iter().enumerate() {
            let name = &old.groups[g].name;
            let busy = !matches!(gr.goal, Goal::Offline | Goal::Failed { .. });
            if busy && !m.group_ix.contains_key(name) {
                return conflict(format!("group {name} is not offline"));
            }
            let owner = gr.owner.map(|o| &old.nodes[o]);
            let to = match gr.goal {
                Goal::Moving { to, .. } => Some(&old.nodes[to]),
                _ => None,
            };
            for n in owner.into_iter().chain(to) {
                if busy && !m.node_ix.contains_key(n) {
                    return conflict(format!("node {n} is in use by group {name}"));
                }
            }
        }
        for (r, rr) in self.res.iter().enumerate() {
            if !active(rr.state) {
                continue;
            }
            let om = &old.res[r];
            let same = m.res_ix.get(&om.name).is_some_and(|&nr| {
                let nm = &m.res[nr];
                let mut a: Vec<&str> = om.deps.iter().map(|d| old.res[*d].name.as_str()).collect();
                let mut b: Vec<&str> = nm.deps.iter().map(|d| m.res[*d].name.as_str()).collect();
                a.sort_unstable();
                b.sort_unstable();
                m.groups[nm.group].name == old.groups[om.group].name && a == b
            });
            if !same {
                return conflict(format!(
                    "resource {} is running: take it offline before removing it, moving it to another group or changing its dependencies",
                    om.name
                ));
            }
        }
        for t in &config.singleton_types {
            let running: Vec<&str> = self
                .res
                .iter()
                .enumerate()
                .filter(|(r, rr)| active(rr.state) && old.res[*r].type_name == *t)
                .map(|(r, _)| old.res[r].name.as_str())
                .collect();
            if running.len() > 1 {
                return conflict(format!(
                    "type {t} cannot become a cluster singleton while {} run",
                    running.join(", ")
                ));
            }
        }

        // Checks passed: carry the state over by name.
        let map_node = |i: usize| m.node_ix.get(&old.nodes[i]).copied();
        let nodes = m
            .nodes
            .iter()
            .map(|n| match old.node_ix.get(n) {
                Some(&i) => self.nodes[i].clone(),
                None => NodeRt {
                    status: NodeStatus::Down,
                    recovery: true,
                },
            })
            .collect();
        let groups = m
            .groups
            .iter()
            .map(|gm| match old.group_ix.get(&gm.name) {
                Some(&i) => {
                    let mut gr = self.groups[i].clone();
                    gr.owner = gr.owner.and_then(map_node);
                    gr.goal = match gr.goal {
                        Goal::Moving { to, kind } => match map_node(to) {
                            Some(to) => Goal::Moving { to, kind },
                            None => Goal::Offline,
                        },
                        Goal::Failed {
                            reason,
                            retry_at,
                            avoid,
                        } => Goal::Failed {
                            reason,
                            retry_at,
                            avoid: avoid.and_then(map_node),
                        },
                        g => g,
                    };
                    gr
                }
                None => GroupRt {
                    owner: None,
                    goal: Goal::Offline,
                    failovers: Vec::new(),
                    failed_over: false,
                    drain_noted: false,
                },
            })
            .collect();
        let res = m
            .res
            .iter()
            .map(|rm| match old.res_ix.get(&rm.name) {
                Some(&i) if old.groups[old.res[i].group].name == m.groups[rm.group].name => {
                    self.res[i].clone()
                }
                _ => ResRt::new(),
            })
            .collect();
        self.m = Arc::new(m);
        self.nodes = nodes;
        self.groups = groups;
        self.res = res;
        self.now = self.now.max(now);
        let mut out = Vec::new();
        self.reconcile(&mut out);
        Ok(out)
    }

    // ----- views -----------------------------------------------------------

    /// Every node, in configuration order.
    pub fn nodes(&self) -> Vec<NodeView> {
        (0..self.nodes.len()).map(|i| self.node_view(i)).collect()
    }

    pub fn node(&self, name: &str) -> Option<NodeView> {
        self.m.node_ix.get(name).map(|&i| self.node_view(i))
    }

    /// Every group, in configuration order.
    pub fn groups(&self) -> Vec<GroupView> {
        (0..self.groups.len()).map(|g| self.group_view(g)).collect()
    }

    pub fn group(&self, name: &str) -> Option<GroupView> {
        self.m.group_ix.get(name).map(|&g| self.group_view(g))
    }

    /// Every resource, in configuration order.
    pub fn resources(&self) -> Vec<ResourceView> {
        (0..self.res.len()).map(|r| self.resource_view(r)).collect()
    }

    pub fn resource(&self, name: &str) -> Option<ResourceView> {
        self.m.res_ix.get(name).map(|&r| self.resource_view(r))
    }

    /// Every resource's state and node, in configuration order, without
    /// allocating: for drivers and checkers that look after every event.
    pub fn resource_states(&self) -> impl Iterator<Item = (&str, ResourceState, Option<&str>)> {
        self.res.iter().enumerate().map(|(r, rr)| {
            let rm = &self.m.res[r];
            let node = if active(rr.state) {
                self.groups[rm.group]
                    .owner
                    .map(|o| self.m.nodes[o].as_str())
            } else {
                None
            };
            (rm.name.as_str(), rr.state, node)
        })
    }

    fn node_view(&self, i: usize) -> NodeView {
        NodeView {
            name: self.m.nodes[i].clone(),
            status: self.nodes[i].status,
            recovery_enabled: self.nodes[i].recovery,
        }
    }

    fn group_view(&self, g: usize) -> GroupView {
        let gr = &self.groups[g];
        let gm = &self.m.groups[g];
        GroupView {
            name: gm.name.clone(),
            state: self.group_state(g),
            owner: gr.owner.map(|o| self.m.nodes[o].clone()),
            moving_to: match gr.goal {
                Goal::Moving { to, .. } => Some(self.m.nodes[to].clone()),
                _ => None,
            },
            failovers_in_period: within(&gr.failovers, self.now, gm.failover_period) as u32,
            failed_reason: match &gr.goal {
                Goal::Failed { reason, .. } => Some(reason.clone()),
                _ => None,
            },
        }
    }

    fn resource_view(&self, r: usize) -> ResourceView {
        let rr = &self.res[r];
        let rm = &self.m.res[r];
        ResourceView {
            name: rm.name.clone(),
            group: self.m.groups[rm.group].name.clone(),
            state: rr.state,
            node: if active(rr.state) {
                self.groups[rm.group].owner.map(|o| self.m.nodes[o].clone())
            } else {
                None
            },
            failures_in_period: within(&rr.failures, self.now, rm.restart.period) as u32,
            restart_at: match rr.recovery {
                Recovery::RestartAt(t) => Some(t),
                _ => None,
            },
            retry_at: match rr.recovery {
                Recovery::RetryAt(t) => Some(t),
                _ => None,
            },
            failed_reason: if rr.state == ResourceState::Failed {
                rr.failed_reason.clone()
            } else {
                None
            },
        }
    }

    fn group_state(&self, g: usize) -> GroupState {
        match self.groups[g].goal {
            Goal::Failed { .. } => GroupState::Failed,
            Goal::Moving { .. } => GroupState::Pending,
            Goal::Offline if self.all_down(g) => GroupState::Offline,
            Goal::Offline => GroupState::Pending,
            Goal::Online => {
                let rs = &self.m.groups[g].resources;
                if rs
                    .iter()
                    .all(|&r| self.res[r].state == ResourceState::Online)
                {
                    GroupState::Online
                } else if self.settled(g) {
                    GroupState::PartialOnline
                } else {
                    GroupState::Pending
                }
            }
        }
    }

    // ----- helpers ---------------------------------------------------------

    /// Nothing in flight: no request unanswered, no restart waiting.
    fn settled(&self, g: usize) -> bool {
        self.m.groups[g].resources.iter().all(|&r| {
            let rr = &self.res[r];
            !matches!(
                rr.state,
                ResourceState::OnlinePending | ResourceState::OfflinePending
            ) && !matches!(rr.recovery, Recovery::RestartAt(_))
        })
    }

    /// Every resource of the group is Offline or Failed.
    fn all_down(&self, g: usize) -> bool {
        self.m.groups[g]
            .resources
            .iter()
            .all(|&r| !active(self.res[r].state))
    }

    fn any_dependent_active(&self, r: usize) -> bool {
        self.m.res[r]
            .dependents
            .iter()
            .any(|&d| active(self.res[d].state))
    }

    /// Whether node `n` may take group `g` now (a new placement).
    fn accepts(&self, g: usize, n: usize) -> bool {
        self.nodes[n].status == NodeStatus::Up && self.m.groups[g].candidates.contains(&n)
    }

    /// The best node for `g` other than `exclude`: the first candidate (the
    /// preferred owners in order, then the other possible owners) that is up.
    fn best_node(&self, g: usize, exclude: Option<usize>) -> Option<usize> {
        self.m.groups[g]
            .candidates
            .iter()
            .copied()
            .find(|&n| Some(n) != exclude && self.nodes[n].status == NodeStatus::Up)
    }

    /// Failover target: the next candidate after `from`, wrapping around, that
    /// is up (so A -> B -> C -> A along the preferred owners list).
    fn failover_target(&self, g: usize, from: usize) -> Option<usize> {
        let c = &self.m.groups[g].candidates;
        let start = c.iter().position(|&n| n == from).map_or(0, |p| p + 1);
        (0..c.len())
            .map(|k| c[(start + k) % c.len()])
            .find(|&n| n != from && self.nodes[n].status == NodeStatus::Up)
    }

    /// Where failback would take `g`: the most preferred owner that is up, if
    /// that is not where it is.
    fn failback_target(&self, g: usize, owner: usize) -> Option<usize> {
        self.m.groups[g]
            .preferred
            .iter()
            .copied()
            .find(|&n| self.nodes[n].status == NodeStatus::Up)
            .filter(|&p| p != owner)
    }

    fn gname(&self, g: usize) -> String {
        self.m.groups[g].name.clone()
    }

    fn rname(&self, r: usize) -> String {
        self.m.res[r].name.clone()
    }

    fn nname(&self, n: usize) -> String {
        self.m.nodes[n].clone()
    }

    fn decision(out: &mut Vec<Action>, subject: String, reason: String) {
        out.push(Action::Decision { subject, reason });
    }

    // ----- applying events -------------------------------------------------

    fn apply(&mut self, event: Event, out: &mut Vec<Action>) {
        // Rendered only when an action quotes it: most events need no text.
        let what = &event;
        match &event {
            Event::NodeUp(n) => {
                if let Some(i) = self.lookup_node(n, what, out)
                    && self.nodes[i].status == NodeStatus::Down
                {
                    self.nodes[i].status = NodeStatus::Up;
                }
            }
            Event::NodeDown(n) => {
                if let Some(i) = self.lookup_node(n, what, out) {
                    self.node_down(i, out);
                }
            }
            Event::NodePaused(n) => self.set_status(n, what, NodeStatus::Paused, out),
            Event::NodeResumed(n) => self.set_status(n, what, NodeStatus::Up, out),
            Event::NodeDraining(n) => self.set_status(n, what, NodeStatus::Draining, out),
            Event::RecoveryActions { node, enabled } => {
                if let Some(i) = self.lookup_node(node, what, out)
                    && self.nodes[i].recovery != *enabled
                {
                    self.nodes[i].recovery = *enabled;
                    let state = if *enabled { "enabled" } else { "disabled" };
                    Self::decision(out, node.clone(), format!("recovery actions {state}"));
                }
            }
            Event::GroupOnlineRequested(g) => {
                if let Some(g) = self.lookup_group(g, what, out) {
                    self.online_requested(g, what, out);
                }
            }
            Event::GroupOfflineRequested(g) => {
                if let Some(g) = self.lookup_group(g, what, out) {
                    if self.groups[g].goal == Goal::Offline {
                        out.push(Action::Refused {
                            what: what.to_string(),
                            reason: format!("{} is already offline", self.gname(g)),
                        });
                    } else {
                        self.groups[g].goal = Goal::Offline;
                        self.groups[g].failed_over = false;
                        for &r in &self.m.groups[g].resources {
                            self.res[r].recovery = Recovery::None;
                        }
                    }
                }
            }
            Event::MoveRequested { group, to } => {
                if let Some(g) = self.lookup_group(group, what, out) {
                    self.move_requested(g, to.clone(), what, out);
                }
            }
            Event::ResourceOnline { resource, node } => {
                if let Some((r, _)) = self.lookup_report(resource, node, what, out) {
                    if self.res[r].state == ResourceState::OnlinePending {
                        self.res[r].state = ResourceState::Online;
                    } else {
                        let reason =
                            format!("{resource} is {}, not pending online", self.res[r].state);
                        out.push(Action::Ignored {
                            what: what.to_string(),
                            reason,
                        });
                    }
                }
            }
            Event::ResourceOffline { resource, node } => {
                if let Some((r, n)) = self.lookup_report(resource, node, what, out) {
                    match self.res[r].state {
                        ResourceState::OfflinePending => self.res[r].state = ResourceState::Offline,
                        ResourceState::Online | ResourceState::OnlinePending => {
                            out.push(Action::Terminate {
                                resource: resource.clone(),
                                node: node.clone(),
                            });
                            self.resource_failed(r, n, "went offline unexpectedly", out);
                        }
                        s => {
                            let reason = format!("{resource} is {s}, not pending offline");
                            out.push(Action::Ignored {
                                what: what.to_string(),
                                reason,
                            });
                        }
                    }
                }
            }
            Event::ResourceFailed {
                resource,
                node,
                reason,
            } => {
                if let Some((r, n)) = self.lookup_report(resource, node, what, out) {
                    match self.res[r].state {
                        ResourceState::OfflinePending => {
                            out.push(Action::Terminate {
                                resource: resource.clone(),
                                node: node.clone(),
                            });
                            self.res[r].state = ResourceState::Offline;
                            Self::decision(
                                out,
                                resource.clone(),
                                format!("offline failed ({reason}): terminated, now offline"),
                            );
                        }
                        ResourceState::Online | ResourceState::OnlinePending => {
                            out.push(Action::Terminate {
                                resource: resource.clone(),
                                node: node.clone(),
                            });
                            self.resource_failed(r, n, reason, out);
                        }
                        s => {
                            let reason = format!("{resource} is {s}");
                            out.push(Action::Ignored {
                                what: what.to_string(),
                                reason,
                            });
                        }
                    }
                }
            }
            Event::Tick => {}
        }
    }

    fn lookup_node(&self, n: &str, what: &Event, out: &mut Vec<Action>) -> Option<usize> {
        let i = self.m.node_ix.get(n).copied();
        if i.is_none() {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason: format!("unknown node {n}"),
            });
        }
        i
    }

    fn lookup_group(&self, g: &str, what: &Event, out: &mut Vec<Action>) -> Option<usize> {
        let i = self.m.group_ix.get(g).copied();
        if i.is_none() {
            out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("unknown group {g}"),
            });
        }
        i
    }

    /// Resolves a report about `resource` on `node`; `None` (and an `Ignored`
    /// action) when it is not where the engine has it (late report after a
    /// node went down or a move, unknown names).
    fn lookup_report(
        &self,
        resource: &str,
        node: &str,
        what: &Event,
        out: &mut Vec<Action>,
    ) -> Option<(usize, usize)> {
        let ignore = |out: &mut Vec<Action>, reason: String| {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason,
            });
            None
        };
        let Some(&r) = self.m.res_ix.get(resource) else {
            return ignore(out, format!("unknown resource {resource}"));
        };
        let Some(&n) = self.m.node_ix.get(node) else {
            return ignore(out, format!("unknown node {node}"));
        };
        let owner = self.groups[self.m.res[r].group].owner;
        if owner != Some(n) || self.nodes[n].status == NodeStatus::Down {
            return ignore(out, format!("{resource} is not expected on {node}"));
        }
        Some((r, n))
    }

    fn set_status(&mut self, n: &str, what: &Event, status: NodeStatus, out: &mut Vec<Action>) {
        if let Some(i) = self.lookup_node(n, what, out) {
            if self.nodes[i].status == NodeStatus::Down {
                out.push(Action::Ignored {
                    what: what.to_string(),
                    reason: format!("{n} is down"),
                });
            } else {
                self.nodes[i].status = status;
            }
        }
    }

    /// A dead node runs nothing: its groups' resources are offline at once
    /// (no offline requests to a dead node) and its online groups fail over.
    fn node_down(&mut self, n: usize, out: &mut Vec<Action>) {
        if self.nodes[n].status == NodeStatus::Down {
            return;
        }
        self.nodes[n].status = NodeStatus::Down;
        let name = self.nname(n);
        for g in 0..self.groups.len() {
            if self.groups[g].owner != Some(n) {
                continue;
            }
            let mut any = false;
            for &r in &self.m.groups[g].resources {
                let rr = &mut self.res[r];
                if active(rr.state) {
                    any = true;
                    rr.state = ResourceState::Offline;
                }
                rr.recovery = Recovery::None;
                rr.refused = false;
            }
            if any {
                Self::decision(
                    out,
                    self.gname(g),
                    format!("{name} is down: its resources there are considered offline"),
                );
            }
            if self.groups[g].goal == Goal::Online {
                if self.nodes[n].recovery {
                    self.failover(g, n, format!("{name} is down"), false, out);
                } else {
                    let reason =
                        format!("{name} is down and recovery actions are disabled on {name}");
                    self.fail_group(g, reason, None, None, out);
                }
            }
        }
    }

    fn online_requested(&mut self, g: usize, what: &Event, out: &mut Vec<Action>) {
        let gr = &self.groups[g];
        let busy = match gr.goal {
            Goal::Online => gr
                .owner
                .map(|o| format!("is already online on {}", self.nname(o))),
            Goal::Moving { to, .. } => Some(format!("is moving to {}", self.nname(to))),
            _ => None,
        };
        if let Some(busy) = busy {
            out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("{} {busy}", self.gname(g)),
            });
            return;
        }
        if !self.all_down(g) {
            // Still going offline: wanting it online again is simply the
            // Online goal on the same owner.
            self.groups[g].goal = Goal::Online;
            return;
        }
        let target = gr
            .owner
            .filter(|&o| self.accepts(g, o))
            .or_else(|| self.best_node(g, None));
        match target {
            None => out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("no possible owner of {} is up", self.gname(g)),
            }),
            Some(n) => {
                // An operator's online is a fresh start: forget past failures.
                self.groups[g].failovers.clear();
                self.place(g, n, out);
            }
        }
    }

    fn move_requested(
        &mut self,
        g: usize,
        to: Option<NodeId>,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        let gname = self.gname(g);
        let owner = self.groups[g].owner;
        let refuse = |out: &mut Vec<Action>, reason: String| {
            out.push(Action::Refused {
                what: what.to_string(),
                reason,
            })
        };
        if let Goal::Moving { to, .. } = self.groups[g].goal {
            return refuse(
                out,
                format!("{gname} is already moving to {}", self.nname(to)),
            );
        }
        let target = match to {
            Some(name) => {
                let Some(&n) = self.m.node_ix.get(&name) else {
                    return refuse(out, format!("unknown node {name}"));
                };
                if Some(n) == owner && self.groups[g].goal == Goal::Online {
                    return refuse(out, format!("{gname} is already on {name}"));
                }
                if !self.m.groups[g].candidates.contains(&n) {
                    return refuse(out, format!("{name} is not a possible owner of {gname}"));
                }
                if self.nodes[n].status != NodeStatus::Up {
                    let s = self.nodes[n].status;
                    return refuse(out, format!("{name} is {s} and takes no new groups"));
                }
                n
            }
            None => match self.best_node(g, owner) {
                Some(n) => n,
                None => return refuse(out, "no other possible owner is up".to_string()),
            },
        };
        let from = owner.map(|o| self.nname(o));
        let move_group = |out: &mut Vec<Action>| {
            out.push(Action::MoveGroup {
                group: gname.clone(),
                from: from.clone(),
                to: self.nname(target),
                kind: MoveKind::Planned,
                reason: "requested by the operator".to_string(),
            })
        };
        match self.groups[g].goal {
            Goal::Online => {
                move_group(out);
                self.groups[g].goal = Goal::Moving {
                    to: target,
                    kind: MoveKind::Planned,
                };
            }
            Goal::Failed { .. } => {
                move_group(out);
                self.groups[g].failovers.clear();
                self.groups[g].goal = Goal::Moving {
                    to: target,
                    kind: MoveKind::Planned,
                };
            }
            Goal::Offline | Goal::Moving { .. } if !self.all_down(g) => {
                // Changing the owner now would leave resources running on a
                // node the group no longer belongs to.
                refuse(
                    out,
                    format!("{gname} is still going offline; move it once it is offline"),
                );
            }
            Goal::Offline | Goal::Moving { .. } => {
                self.groups[g].owner = Some(target);
                let reason = format!(
                    "is offline: it will come online on {} when requested",
                    self.nname(target)
                );
                Self::decision(out, gname, reason);
            }
        }
    }

    /// A resource that was online or pending online failed on node `n`:
    /// restart it, leave it failed, or fail the group over.
    fn resource_failed(&mut self, r: usize, n: usize, reason: &str, out: &mut Vec<Action>) {
        let m = Arc::clone(&self.m);
        let rm = &m.res[r];
        let g = rm.group;
        let name = rm.name.clone();
        let now = self.now;
        let policy = rm.restart;
        let rr = &mut self.res[r];
        rr.state = ResourceState::Failed;
        rr.failed_reason = Some(reason.to_string());
        rr.refused = false;
        rr.recovery = Recovery::None;
        if self.groups[g].goal != Goal::Online {
            let why = format!(
                "failed ({reason}); not restarted: {} is going offline",
                m.groups[g].name
            );
            return Self::decision(out, name, why);
        }
        if !self.nodes[n].recovery {
            rr.recovery = Recovery::RetryAt(now + policy.retry_period);
            let why = format!(
                "failed ({reason}); recovery actions are disabled on {}: stays failed",
                m.nodes[n]
            );
            return out.push(Action::ResourceFailedPermanently {
                resource: name,
                reason: why,
            });
        }
        if policy.action == RestartAction::DoNotRestart {
            rr.recovery = Recovery::RetryAt(now + policy.retry_period);
            let why = format!(
                "failed ({reason}); restart action is do-not-restart: retry in {}",
                policy.retry_period
            );
            return out.push(Action::ResourceFailedPermanently {
                resource: name,
                reason: why,
            });
        }
        rr.failures
            .retain(|t| now.saturating_sub(*t) < policy.period);
        rr.failures.push(now);
        let count = rr.failures.len();
        let (thr, period) = (policy.threshold, policy.period);
        // The failure that reaches the threshold is final (the seeds: "has
        // failed 3 times within 900 seconds" takes the group offline; the
        // resource monitor "tries to restart the resource two additional
        // times"). The failures before it are restarted.
        if (count as u64) < u64::from(thr) {
            rr.recovery = Recovery::RestartAt(now + policy.delay);
            let delay = if policy.delay > Millis::ZERO {
                format!(" after {}", policy.delay)
            } else {
                String::new()
            };
            let why = format!(
                "failed ({reason}): failure {count} of {thr} within {period}, restarting{delay}"
            );
            return Self::decision(out, name, why);
        }
        if policy.action == RestartAction::RestartNoAffectGroup {
            rr.recovery = Recovery::RetryAt(now + policy.retry_period);
            let why = format!(
                "failed ({reason}) {} within {period}, threshold {thr} reached; does not affect the group: stays failed, retry in {}",
                times(count),
                policy.retry_period
            );
            return out.push(Action::ResourceFailedPermanently {
                resource: name,
                reason: why,
            });
        }
        let why = format!(
            "failed ({reason}) {} within {period}, threshold {thr} reached: failing group {} over",
            times(count),
            m.groups[g].name
        );
        Self::decision(out, name.clone(), why);
        let cause = format!("{name} failed {} within {period}", times(count));
        self.failover(g, n, cause, true, out);
    }

    /// Decides an unplanned failover of `g` away from `from`. When no other
    /// owner is up the group is left Failed; if a resource failing on `from`
    /// caused it (`avoid_from`), only another node or the retry period brings
    /// it back there, while a group whose node died takes the first node that
    /// comes up, that one included.
    fn failover(
        &mut self,
        g: usize,
        from: usize,
        cause: String,
        avoid_from: bool,
        out: &mut Vec<Action>,
    ) {
        let gm = &self.m.groups[g];
        let (thr, period) = (gm.failover_threshold, gm.failover_period);
        let retry = gm.retry_period;
        let now = self.now;
        let gr = &mut self.groups[g];
        gr.failovers.retain(|t| now.saturating_sub(*t) < period);
        let done = gr.failovers.len();
        if done as u64 >= u64::from(thr) {
            let reason = format!(
                "failover threshold passed: {done} failovers within {period} (threshold {thr}); {cause}"
            );
            return self.fail_group(g, reason, None, None, out);
        }
        let Some(to) = self.failover_target(g, from) else {
            Self::decision(out, self.gname(g), format!("{cause}: cannot fail over"));
            let reason = "no other possible owner is up".to_string();
            let avoid = if avoid_from { Some(from) } else { None };
            return self.fail_group(g, reason, Some(now + retry), avoid, out);
        };
        let gr = &mut self.groups[g];
        gr.failovers.push(now);
        gr.goal = Goal::Moving {
            to,
            kind: MoveKind::Failover,
        };
        out.push(Action::MoveGroup {
            group: self.gname(g),
            from: Some(self.nname(from)),
            to: self.nname(to),
            kind: MoveKind::Failover,
            reason: format!("{cause}; failover {} of {thr} within {period}", done + 1),
        });
    }

    fn fail_group(
        &mut self,
        g: usize,
        reason: String,
        retry_at: Option<Millis>,
        avoid: Option<usize>,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::GroupFailed {
            group: self.gname(g),
            reason: reason.clone(),
        });
        let gr = &mut self.groups[g];
        gr.goal = Goal::Failed {
            reason,
            retry_at,
            avoid,
        };
        gr.failed_over = false;
        for &r in &self.m.groups[g].resources {
            self.res[r].recovery = Recovery::None;
        }
    }

    /// Gives `g` to node `n` and wants it online there. Only called when no
    /// resource of `g` is active. A new placement starts with clean restart
    /// counts.
    fn place(&mut self, g: usize, n: usize, out: &mut Vec<Action>) {
        for &r in &self.m.groups[g].resources {
            self.res[r] = ResRt::new();
        }
        let gr = &mut self.groups[g];
        gr.owner = Some(n);
        gr.goal = Goal::Online;
        gr.failed_over = false;
        gr.drain_noted = false;
        out.push(Action::Placed {
            group: self.gname(g),
            node: self.nname(n),
        });
    }

    // ----- reconciling -----------------------------------------------------

    /// Emits what follows from the current state, until nothing changes.
    /// Groups interact only through singletons (one going offline lets another
    /// come online), hence the loop over all groups.
    fn reconcile(&mut self, out: &mut Vec<Action>) {
        // Each pass that changes something moves a resource or a group one
        // step forward; a handful of passes always suffices. The bound only
        // guards against a bug turning into a hang.
        for _ in 0..64 {
            let mut changed = false;
            for g in 0..self.groups.len() {
                changed |= self.reconcile_group(g, out);
            }
            if !changed {
                return;
            }
        }
    }

    fn reconcile_group(&mut self, g: usize, out: &mut Vec<Action>) -> bool {
        let m = Arc::clone(&self.m);
        let gm = &m.groups[g];
        let now = self.now;
        let mut changed = false;
        let online = self.groups[g].goal == Goal::Online;
        let owner = self.groups[g].owner;

        if online && let Some(owner) = owner {
            // Timers: decided restarts, retry periods.
            for &r in &gm.resources {
                match self.res[r].recovery {
                    Recovery::RestartAt(t) if t <= now && !self.any_dependent_active(r) => {
                        let rr = &mut self.res[r];
                        rr.state = ResourceState::Offline;
                        rr.recovery = Recovery::None;
                        changed = true;
                        Self::decision(out, self.rname(r), "restarting".to_string());
                    }
                    Recovery::RetryAt(t) if t <= now && self.nodes[owner].recovery => {
                        let rr = &mut self.res[r];
                        rr.state = ResourceState::Offline;
                        rr.recovery = Recovery::None;
                        rr.failures.clear();
                        changed = true;
                        let why = format!(
                            "retry period {} elapsed: trying again",
                            m.res[r].restart.retry_period
                        );
                        Self::decision(out, self.rname(r), why);
                    }
                    _ => {}
                }
            }
        }

        // Wanted online: the group is, the resource has not failed, and
        // neither has anything it depends on (transitively).
        let mut wanted = Vec::with_capacity(gm.resources.len());
        for &r in &gm.resources {
            let ok = online
                && self.res[r].state != ResourceState::Failed
                && m.res[r].deps.iter().all(|d| {
                    let pos = gm.resources.iter().position(|x| x == d);
                    pos.is_some_and(|p| wanted[p])
                });
            wanted.push(ok);
        }

        let Some(owner) = owner else {
            return changed;
        };
        let node = &m.nodes[owner];

        // Down, in reverse dependency order: only once nothing above is up.
        for (i, &r) in gm.resources.iter().enumerate().rev() {
            if self.res[r].state == ResourceState::Online
                && !wanted[i]
                && !self.any_dependent_active(r)
            {
                self.res[r].state = ResourceState::OfflinePending;
                out.push(Action::TakeOffline {
                    resource: self.rname(r),
                    node: node.clone(),
                });
                changed = true;
            }
        }

        if online {
            // Up, in dependency order: everything whose dependencies are all
            // online, all at once (independent branches in parallel).
            for (i, &r) in gm.resources.iter().enumerate() {
                if self.res[r].state != ResourceState::Offline
                    || !wanted[i]
                    || !m.res[r]
                        .deps
                        .iter()
                        .all(|&d| self.res[d].state == ResourceState::Online)
                {
                    continue;
                }
                if let Some(&p) = m.res[r]
                    .singleton_peers
                    .iter()
                    .find(|&&p| active(self.res[p].state))
                {
                    if !self.res[r].refused {
                        self.res[r].refused = true;
                        let pnode = self.groups[m.res[p].group]
                            .owner
                            .map(|o| self.nname(o))
                            .unwrap_or_default();
                        out.push(Action::Refused {
                            what: format!("bring-online {} on {node}", m.res[r].name),
                            reason: format!(
                                "cluster-singleton type {} is already online: {} on {pnode}",
                                m.res[r].type_name, m.res[p].name
                            ),
                        });
                    }
                    continue;
                }
                self.res[r].state = ResourceState::OnlinePending;
                self.res[r].refused = false;
                out.push(Action::BringOnline {
                    resource: self.rname(r),
                    node: node.clone(),
                });
                changed = true;
            }
            if !changed && self.settled(g) {
                changed |= self.maybe_relocate(g, owner, out);
            }
            return changed;
        }

        if !self.all_down(g) {
            return changed;
        }
        match self.groups[g].goal.clone() {
            Goal::Moving { to, kind } => {
                let target = if self.accepts(g, to) {
                    Some(to)
                } else {
                    self.best_node(g, Some(owner)).or_else(|| {
                        // A planned move whose target is gone goes back where
                        // it was; a failover does not.
                        (kind != MoveKind::Failover && self.accepts(g, owner)).then_some(owner)
                    })
                };
                match target {
                    None => {
                        let why = format!(
                            "{} is not available and no other possible owner is up",
                            self.nname(to)
                        );
                        Self::decision(out, self.gname(g), why);
                        let reason = "no other possible owner is up".to_string();
                        let retry = Some(now + gm.retry_period);
                        self.fail_group(g, reason, retry, Some(owner), out);
                    }
                    Some(t) => {
                        if t != to {
                            let why = format!(
                                "{} is not available: going to {} instead",
                                self.nname(to),
                                self.nname(t)
                            );
                            Self::decision(out, self.gname(g), why);
                        }
                        self.place(g, t, out);
                        // A failback to an owner that is not the most preferred
                        // one keeps failback armed for when that one returns.
                        self.groups[g].failed_over =
                            matches!(kind, MoveKind::Failover | MoveKind::Failback);
                    }
                }
                changed = true;
            }
            Goal::Failed {
                retry_at: Some(at),
                avoid,
                ..
            } => {
                let due = at <= now;
                let target = if due {
                    self.best_node(g, None)
                } else {
                    self.best_node(g, avoid)
                };
                if let Some(t) = target {
                    let why = if due {
                        format!("retry period elapsed: trying again on {}", self.nname(t))
                    } else {
                        format!(
                            "{} is up: bringing the failed group online there",
                            self.nname(t)
                        )
                    };
                    Self::decision(out, self.gname(g), why);
                    self.place(g, t, out);
                    changed = true;
                }
            }
            _ => {}
        }
        changed
    }

    /// A settled online group may have to leave its owner: the owner is
    /// draining, or failback wants it back on its most preferred owner.
    fn maybe_relocate(&mut self, g: usize, owner: usize, out: &mut Vec<Action>) -> bool {
        let mut go = |this: &mut Self, to: usize, kind: MoveKind, reason: String| {
            out.push(Action::MoveGroup {
                group: this.gname(g),
                from: Some(this.nname(owner)),
                to: this.nname(to),
                kind,
                reason,
            });
            this.groups[g].goal = Goal::Moving { to, kind };
            true
        };
        if self.nodes[owner].status == NodeStatus::Draining {
            if let Some(to) = self.best_node(g, Some(owner)) {
                let reason = format!("{} is draining", self.nname(owner));
                return go(self, to, MoveKind::Drain, reason);
            }
            if !self.groups[g].drain_noted {
                self.groups[g].drain_noted = true;
                let why = format!(
                    "cannot move off draining {}: no other possible owner is up",
                    self.nname(owner)
                );
                Self::decision(out, self.gname(g), why);
            }
            return false;
        }
        let failback = self.m.groups[g].failback;
        if self.groups[g].failed_over
            && failback.allows(self.now)
            && let Some(to) = self.failback_target(g, owner)
        {
            let reason = format!(
                "failback to {}, the most preferred owner that is up",
                self.nname(to)
            );
            return go(self, to, MoveKind::Failback, reason);
        }
        false
    }
}
