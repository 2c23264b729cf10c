//! Read-only views of the engine's state, by name, for drivers, APIs and
//! checkers. Nothing here changes anything.

use super::Engine;
use super::state::{CopyState, Goal, GroupState, NodeStatus, Recovery, ResourceState, within};
use crate::config::{GroupId, NodeId, ResourceId};
use crate::event::CopyStatus;
use crate::index::{GroupIx, NodeIx, ResourceIx};
use crate::time::Millis;
use serde::Serialize;

/// Read-only view of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// The node's name.
    pub name: NodeId,
    /// Down, up, paused or draining.
    pub status: NodeStatus,
    /// Whether recovery actions (restarts, failovers) are on for it.
    pub recovery_enabled: bool,
}

/// Read-only view of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The group's name.
    pub name: String,
    /// Derived from its goal and its resources.
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
    /// The resource's name.
    pub name: ResourceId,
    /// The group it belongs to.
    pub group: String,
    /// Its state as far as the engine knows.
    pub state: ResourceState,
    /// The node it runs (or is pending) on, when it runs anywhere.
    pub node: Option<NodeId>,
    /// Failures counted against the restart threshold right now.
    pub failures_in_period: u32,
    /// When a decided restart happens (once its dependents are offline).
    pub restart_at: Option<Millis>,
    /// When a resource left Failed is tried again.
    pub retry_at: Option<Millis>,
    /// Why it is Failed, if it is.
    pub failed_reason: Option<String>,
}

/// Read-only view of the copies of one resource with copies: what status
/// views show (Exchange's copy status: queue lengths per copy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopiesView {
    /// The resource's name.
    pub resource: ResourceId,
    /// The group it belongs to.
    pub group: GroupId,
    /// The generation of its last activation (0: never activated).
    pub generation: u64,
    /// How far a copy may lag and still be activated without the
    /// operator's word.
    pub max_lag_on_failover: u64,
    /// The node of the active copy (active, or on its way up or down).
    pub active: Option<NodeId>,
    /// The furthest log position any copy reported in this generation: the
    /// active copy's position, as far as the engine knows.
    pub newest_position: Option<u64>,
    /// One per copy node, in the group's placement order.
    pub copies: Vec<CopyView>,
}

/// Read-only view of one copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyView {
    /// The node it is on.
    pub node: NodeId,
    /// What of it runs there.
    pub state: CopyState,
    /// The node of the active copy it follows, while passive.
    pub source: Option<NodeId>,
    /// Its last report (kept while it is stopped: its data does not change).
    pub status: Option<CopyStatus>,
    /// How far it lags behind the newest data, as the engine counts it for
    /// failover (see `copy_choice.rs`); `None` without a status of the
    /// current generation.
    pub lag: Option<u64>,
    /// Exchange's copy queue length: the active copy's position minus the
    /// position this copy copied (current generation only).
    pub copy_queue_length: Option<u64>,
    /// Exchange's replay queue length: the position copied minus the
    /// position replayed.
    pub replay_queue_length: Option<u64>,
    /// Why it failed, while Failed.
    pub failed_reason: Option<String>,
    /// When a Failed copy is started again.
    pub retry_at: Option<Millis>,
    /// Why it was last reseeded (its data dropped and copied again from
    /// the active copy), if it ever was.
    pub reseeded: Option<String>,
    /// Why it may not be activated now without the operator's word; `None`
    /// when it may.
    pub activation_blocked: Option<String>,
}

impl Engine {
    /// The copies of every resource with copies, in configuration order.
    pub fn all_copies(&self) -> Vec<CopiesView> {
        self.resources
            .indices()
            .filter(|&resource| self.model.resources[resource].copies.is_some())
            .map(|resource| self.copies_view(resource))
            .collect()
    }

    /// The copies of the resource named `name`, if it is a resource with
    /// copies.
    pub fn copies(&self, name: &str) -> Option<CopiesView> {
        self.model
            .resource_ix
            .get(name)
            .filter(|&&resource| self.model.resources[resource].copies.is_some())
            .map(|&resource| self.copies_view(resource))
    }

    fn copies_view(&self, resource: ResourceIx) -> CopiesView {
        let resource_model = &self.model.resources[resource];
        let set = &self.copies[resource];
        let group = resource_model.group;
        let newest_position = self.newest_position(resource);
        let nodes = resource_model
            .copies
            .as_ref()
            .map_or(&[][..], |copies| &copies.nodes[..]);
        let copies = nodes
            .iter()
            .zip(&set.copies)
            .enumerate()
            .map(|(position, (&node, record))| {
                let current = record
                    .status
                    .as_ref()
                    .filter(|status| status.generation == set.generation);
                CopyView {
                    node: self.model.nodes[node].clone(),
                    state: record.state,
                    source: record.source.map(|source| self.model.nodes[source].clone()),
                    status: record.status.clone(),
                    lag: self.copy_lag(resource, position),
                    copy_queue_length: current.and_then(|status| {
                        newest_position.map(|newest| newest.saturating_sub(status.copied))
                    }),
                    replay_queue_length: record
                        .status
                        .as_ref()
                        .map(|status| status.copied.saturating_sub(status.replayed)),
                    failed_reason: record.failed_reason.clone(),
                    retry_at: record.retry_at,
                    reseeded: record.reseeded.clone(),
                    activation_blocked: self.copy_verdict(resource, node, false).err(),
                }
            })
            .collect();
        let active = self.groups[group]
            .owner
            .filter(|_| self.resources[resource].state.is_active())
            .map(|owner| self.model.nodes[owner].clone());
        CopiesView {
            resource: resource_model.name.clone(),
            group: self.model.groups[group].name.clone(),
            generation: set.generation,
            max_lag_on_failover: self.max_lag(resource),
            active,
            newest_position,
            copies,
        }
    }

    /// Every node, in configuration order.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes
            .indices()
            .map(|node| self.node_view(node))
            .collect()
    }

    /// The node named `name`, if the configuration has it.
    pub fn node(&self, name: &str) -> Option<NodeView> {
        self.model
            .node_ix
            .get(name)
            .map(|&node| self.node_view(node))
    }

    /// Every group, in configuration order.
    pub fn groups(&self) -> Vec<GroupView> {
        self.groups
            .indices()
            .map(|group| self.group_view(group))
            .collect()
    }

    /// The group named `name`, if the configuration has it.
    pub fn group(&self, name: &str) -> Option<GroupView> {
        self.model
            .group_ix
            .get(name)
            .map(|&group| self.group_view(group))
    }

    /// Every resource, in configuration order.
    pub fn resources(&self) -> Vec<ResourceView> {
        self.resources
            .indices()
            .map(|resource| self.resource_view(resource))
            .collect()
    }

    /// The resource named `name`, if the configuration has it.
    pub fn resource(&self, name: &str) -> Option<ResourceView> {
        self.model
            .resource_ix
            .get(name)
            .map(|&resource| self.resource_view(resource))
    }

    /// Every resource's state and node, in configuration order, without
    /// allocating: for drivers and checkers that look after every event.
    pub fn resource_states(&self) -> impl Iterator<Item = (&str, ResourceState, Option<&str>)> {
        self.resources.iter_indexed().map(|(resource, record)| {
            let resource_model = &self.model.resources[resource];
            let node = if record.state.is_active() {
                self.groups[resource_model.group]
                    .owner
                    .map(|owner| self.model.nodes[owner].as_str())
            } else {
                None
            };
            (resource_model.name.as_str(), record.state, node)
        })
    }

    fn node_view(&self, node: NodeIx) -> NodeView {
        NodeView {
            name: self.model.nodes[node].clone(),
            status: self.nodes[node].status,
            recovery_enabled: self.nodes[node].recovery,
        }
    }

    fn group_view(&self, group: GroupIx) -> GroupView {
        let record = &self.groups[group];
        let group_model = &self.model.groups[group];
        GroupView {
            name: group_model.name.clone(),
            state: self.group_state(group),
            owner: record.owner.map(|owner| self.model.nodes[owner].clone()),
            moving_to: match record.goal {
                Goal::Moving { to, .. } => Some(self.model.nodes[to].clone()),
                _ => None,
            },
            failovers_in_period: within(&record.failovers, self.now, group_model.failover_period)
                as u32,
            failed_reason: match &record.goal {
                Goal::Failed { reason, .. } => Some(reason.clone()),
                _ => None,
            },
        }
    }

    fn resource_view(&self, resource: ResourceIx) -> ResourceView {
        let record = &self.resources[resource];
        let resource_model = &self.model.resources[resource];
        ResourceView {
            name: resource_model.name.clone(),
            group: self.model.groups[resource_model.group].name.clone(),
            state: record.state,
            node: if record.state.is_active() {
                self.groups[resource_model.group]
                    .owner
                    .map(|owner| self.model.nodes[owner].clone())
            } else {
                None
            },
            failures_in_period: within(&record.failures, self.now, resource_model.restart.period)
                as u32,
            restart_at: match record.recovery {
                Recovery::RestartAt(t) => Some(t),
                _ => None,
            },
            retry_at: match record.recovery {
                Recovery::RetryAt(t) => Some(t),
                _ => None,
            },
            failed_reason: if record.state == ResourceState::Failed {
                record.failed_reason.clone()
            } else {
                None
            },
        }
    }

    fn group_state(&self, group: GroupIx) -> GroupState {
        match self.groups[group].goal {
            Goal::Failed { .. } => GroupState::Failed,
            Goal::Moving { .. } => GroupState::Pending,
            Goal::Offline if self.all_down(group) => GroupState::Offline,
            Goal::Offline => GroupState::Pending,
            Goal::Online => {
                let members = &self.model.groups[group].resources;
                if members
                    .iter()
                    .all(|&resource| self.resources[resource].state == ResourceState::Online)
                {
                    GroupState::Online
                } else if self.settled(group) {
                    GroupState::PartialOnline
                } else {
                    GroupState::Pending
                }
            }
        }
    }
}
