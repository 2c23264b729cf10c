//! Which groups an event can affect, so that only those are reconciled.
//!
//! A group's step in `reconcile` reads its own records, the records of the
//! nodes it may own or owns, the time, and one thing of other groups: whether
//! a cluster-singleton peer of one of its resources is active. So an event
//! affects the groups it names (a group event, a resource's group), for a
//! node event the groups that node owns or may own, and then the groups
//! holding a singleton peer of a resource whose activity the event changed.
//! Time is the deadline index's (`deadlines.rs`).

use super::Engine;
use crate::event::Event;
use crate::index::{GroupIx, ResourceIx};
use std::collections::BTreeSet;

impl Engine {
    /// The groups `event` can change directly, in group order: the group it
    /// names or the group of the resource it names; for a node event every
    /// group the node may own and every group it owns (an owner outside the
    /// candidates is possible after a reconfiguration). Unknown names touch
    /// nothing: such events are refused or ignored.
    pub(super) fn touched_by(&self, event: &Event) -> Vec<GroupIx> {
        let model = &self.model;
        let group_named = |name: &str| model.group_ix.get(name).copied();
        let resource_group = |name: &str| {
            model
                .resource_ix
                .get(name)
                .map(|&r| model.resources[r].group)
        };
        let node = match event {
            Event::NodeUp(name)
            | Event::NodeDown(name)
            | Event::NodePaused(name)
            | Event::NodeResumed(name)
            | Event::NodeDraining(name)
            | Event::RecoveryActions { node: name, .. } => model.node_ix.get(name).copied(),
            Event::GroupOnlineRequested(name) | Event::GroupOfflineRequested(name) => {
                return group_named(name).into_iter().collect();
            }
            Event::MoveRequested { group, .. } => return group_named(group).into_iter().collect(),
            Event::ResourceOnline { resource, .. }
            | Event::ResourceOffline { resource, .. }
            | Event::ResourceFailed { resource, .. }
            | Event::CopyStatusReported { resource, .. }
            | Event::CopyActivated { resource, .. }
            | Event::CopyDeactivated { resource, .. }
            | Event::PassiveCopyStarted { resource, .. }
            | Event::PassiveCopyStopped { resource, .. }
            | Event::CopyFailed { resource, .. } => {
                return resource_group(resource).into_iter().collect();
            }
            Event::AcceptDataLoss {
                group_or_resource, ..
            } => {
                return group_named(group_or_resource)
                    .or_else(|| resource_group(group_or_resource))
                    .into_iter()
                    .collect();
            }
            Event::Tick => return Vec::new(),
        };
        let Some(node) = node else {
            return Vec::new();
        };
        let mut groups: BTreeSet<GroupIx> = model.node_groups[node].iter().copied().collect();
        groups.extend(
            self.groups
                .iter_indexed()
                .filter(|(_, record)| record.owner == Some(node))
                .map(|(group, _)| group),
        );
        groups.into_iter().collect()
    }

    /// Whether each cluster-singleton resource of `groups` is active now, to
    /// compare with after a change ([`Engine::singleton_changes`]).
    pub(super) fn singleton_activity(&self, groups: &[GroupIx]) -> Vec<(ResourceIx, bool)> {
        groups
            .iter()
            .flat_map(|&group| &self.model.groups[group].resources)
            .filter(|&&resource| self.model.resources[resource].singleton)
            .map(|&resource| (resource, self.resources[resource].state.is_active()))
            .collect()
    }

    /// Adds to `affected` the groups holding a singleton peer of a resource
    /// whose activity differs from `before`: a peer going inactive lets
    /// another come online, one becoming active holds the others back.
    pub(super) fn singleton_changes(
        &self,
        before: &[(ResourceIx, bool)],
        affected: &mut BTreeSet<GroupIx>,
    ) {
        for &(resource, was_active) in before {
            if self.resources[resource].state.is_active() != was_active {
                affected.extend(
                    self.model.resources[resource]
                        .singleton_peers
                        .iter()
                        .map(|&peer| self.model.resources[peer].group),
                );
            }
        }
    }
}
