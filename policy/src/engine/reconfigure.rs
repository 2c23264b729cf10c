//! Replacing the configuration: refused while the change would orphan
//! something that runs; otherwise every node, group and resource keeps its
//! state by name.

use super::Engine;
use super::state::{CopyRecord, CopySet, Goal, GroupRecord, NodeRecord, ResourceRecord};
use crate::config::{ClusterConfig, ConfigError};
use crate::event::Action;
use crate::index::{NodeIx, ResourceIx};
use crate::model::{GroupModel, Model, compile};
use crate::time::Millis;
use std::sync::Arc;

impl Engine {
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
        let model = compile(&config)?;
        self.check_groups_kept(&model)
            .and_then(|()| self.check_running_resources_kept(&model))
            .and_then(|()| self.check_running_copies_kept(&model))
            .and_then(|()| self.check_new_singletons(&model))
            .map_err(ConfigError::Conflicts)?;
        self.carry_over(model);
        self.now = self.now.max(now);
        let mut out = Vec::new();
        self.reconcile_all(&mut out);
        Ok(out)
    }

    /// A group that is not offline (or failed) keeps its name and the nodes
    /// it is on or moving to.
    fn check_groups_kept(&self, model: &Model) -> Result<(), String> {
        let old = &self.model;
        for (group, record) in self.groups.iter_indexed() {
            let busy = !matches!(record.goal, Goal::Offline | Goal::Failed { .. });
            if !busy {
                continue;
            }
            let name = &old.groups[group].name;
            if !model.group_ix.contains_key(name) {
                return Err(format!("group {name} is not offline"));
            }
            let owner = record.owner.map(|owner| &old.nodes[owner]);
            let to = match record.goal {
                Goal::Moving { to, .. } => Some(&old.nodes[to]),
                _ => None,
            };
            for node in owner.into_iter().chain(to) {
                if !model.node_ix.contains_key(node) {
                    return Err(format!("node {node} is in use by group {name}"));
                }
            }
        }
        Ok(())
    }

    /// A running resource keeps its name, its group and its dependencies.
    fn check_running_resources_kept(&self, model: &Model) -> Result<(), String> {
        let old = &self.model;
        for (resource, record) in self.resources.iter_indexed() {
            if !record.state.is_active() {
                continue;
            }
            let old_resource = &old.resources[resource];
            let same = model
                .resource_ix
                .get(&old_resource.name)
                .is_some_and(|&kept| {
                    let new_resource = &model.resources[kept];
                    let mut before: Vec<&str> = old_resource
                        .dependencies
                        .iter()
                        .map(|&dependency| old.resources[dependency].name.as_str())
                        .collect();
                    let mut after: Vec<&str> = new_resource
                        .dependencies
                        .iter()
                        .map(|&dependency| model.resources[dependency].name.as_str())
                        .collect();
                    before.sort_unstable();
                    after.sort_unstable();
                    model.groups[new_resource.group].name == old.groups[old_resource.group].name
                        && before == after
                });
            if !same {
                return Err(format!(
                    "resource {} is running: take it offline before removing it, moving it to another group or changing its dependencies",
                    old_resource.name
                ));
            }
        }
        Ok(())
    }

    /// A resource of which a copy runs (or that runs, as its active copy)
    /// keeps its copies on the same nodes: a copy left running on a node no
    /// longer listed would be orphaned, and a running resource cannot turn
    /// into an active copy (or back) under the host's feet.
    fn check_running_copies_kept(&self, model: &Model) -> Result<(), String> {
        let old = &self.model;
        for resource in self.resources.indices() {
            let copy_runs = self.copies[resource]
                .copies
                .iter()
                .any(|record| record.state.runs());
            if !copy_runs && !self.resources[resource].state.is_active() {
                continue;
            }
            let name = &old.resources[resource].name;
            let before = copy_node_names(old, resource);
            let after = model
                .resource_ix
                .get(name)
                .and_then(|&kept| copy_node_names(model, kept));
            if before != after {
                return Err(format!(
                    "resource {name} runs or has copies running: take its group offline before changing where it keeps copies"
                ));
            }
        }
        Ok(())
    }

    /// A type becomes a cluster singleton only while at most one of its
    /// resources runs.
    fn check_new_singletons(&self, model: &Model) -> Result<(), String> {
        let old = &self.model;
        for type_name in &model.config.singleton_types {
            let running: Vec<&str> = self
                .resources
                .iter_indexed()
                .filter(|(resource, record)| {
                    record.state.is_active() && old.resources[*resource].type_name == *type_name
                })
                .map(|(resource, _)| old.resources[resource].name.as_str())
                .collect();
            if running.len() > 1 {
                return Err(format!(
                    "type {type_name} cannot become a cluster singleton while {} run",
                    running.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Takes `model` in force, each node, group and resource keeping its
    /// record by name (a resource only if it stays in its group).
    fn carry_over(&mut self, model: Model) {
        let old = &self.model;
        let nodes = model
            .nodes
            .iter()
            .map(|name| match old.node_ix.get(name) {
                Some(&node) => self.nodes[node].clone(),
                None => NodeRecord::new(),
            })
            .collect();
        let groups = model
            .groups
            .iter()
            .map(|group_model| self.carry_group(group_model, &model))
            .collect();
        let resources = model
            .resources
            .iter()
            .map(
                |resource_model| match old.resource_ix.get(&resource_model.name) {
                    Some(&resource)
                        if old.groups[old.resources[resource].group].name
                            == model.groups[resource_model.group].name =>
                    {
                        self.resources[resource].clone()
                    }
                    _ => ResourceRecord::new(),
                },
            )
            .collect();
        let copies = model
            .resources
            .iter()
            .map(|resource_model| self.carry_copies(resource_model, &model))
            .collect();
        self.model = Arc::new(model);
        self.nodes = nodes;
        self.groups = groups;
        self.resources = resources;
        self.copies = copies;
    }

    /// The copies of a resource under the new `model`: its old ones by node
    /// name (generation and last activation kept, so generations never go
    /// back), new ones for nodes it had no copy on.
    fn carry_copies(&self, resource_model: &crate::model::ResourceModel, model: &Model) -> CopySet {
        let Some(copies) = &resource_model.copies else {
            return CopySet::new(0);
        };
        let old = &self.model;
        let Some(&resource) = old.resource_ix.get(&resource_model.name) else {
            return CopySet::new(copies.nodes.len());
        };
        let set = &self.copies[resource];
        let renumber = |node: NodeIx| model.node_ix.get(&old.nodes[node]).copied();
        let records = copies
            .nodes
            .iter()
            .map(|&node| {
                let before = old
                    .node_ix
                    .get(&model.nodes[node])
                    .and_then(|&old_node| self.copy_position(resource, old_node));
                match before {
                    Some(position) => {
                        let mut record = set.copies[position].clone();
                        record.source = record.source.and_then(renumber);
                        record
                    }
                    None => CopyRecord::new(),
                }
            })
            .collect();
        CopySet {
            generation: set.generation,
            last_active: set.last_active.and_then(renumber),
            copies: records,
        }
    }

    /// The record of a group under the new `model`: its old one, with its
    /// nodes renumbered (a move to a node that is gone becomes Offline), or a
    /// new one.
    fn carry_group(&self, group_model: &GroupModel, model: &Model) -> GroupRecord {
        let old = &self.model;
        let Some(&group) = old.group_ix.get(&group_model.name) else {
            return GroupRecord::new();
        };
        let renumber = |node: NodeIx| model.node_ix.get(&old.nodes[node]).copied();
        let mut record = self.groups[group].clone();
        record.owner = record.owner.and_then(renumber);
        record.loss_accepted = record
            .loss_accepted
            .and_then(|accepted| match accepted.node {
                None => Some(accepted),
                Some(node) => {
                    renumber(node).map(|node| super::state::AcceptedLoss { node: Some(node) })
                }
            });
        record.goal = match record.goal {
            Goal::Moving { to, kind } => match renumber(to) {
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
                avoid: avoid.and_then(renumber),
            },
            goal => goal,
        };
        record
    }
}

/// The names of the nodes `resource` keeps copies on in `model`, in order;
/// `None` for a resource without copies.
fn copy_node_names(model: &Model, resource: ResourceIx) -> Option<Vec<&str>> {
    model.resources[resource].copies.as_ref().map(|copies| {
        copies
            .nodes
            .iter()
            .map(|&node| model.nodes[node].as_str())
            .collect()
    })
}
