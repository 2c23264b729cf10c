//! Resources with copies: what runs where, and what the copies say.
//!
//! The group's owner runs the active copy, which is the resource itself:
//! `ActivateCopy` and `DeactivateCopy` take the place of `BringOnline` and
//! `TakeOffline` (`reconcile.rs`), and their answers are the resource's
//! (`apply.rs`). Every other copy node that is up (or paused) runs a
//! passive copy while the group is wanted anywhere (online, moving, or
//! Failed and waiting), following the active copy once there is one; a
//! node going down, draining, or the group going offline stops them. The
//! owner's own copy is left to the resource: a passive copy there is what
//! the next activation promotes.
//!
//! Invariants: at most one copy of a resource is active or activating (only
//! the owner's may be, and the owner changes only when the group is
//! entirely offline); a copy request is never sent to a copy with one
//! outstanding.

use super::Engine;
use super::state::{CopyState, Goal, NodeStatus, ResourceState};
use crate::event::{Action, CopyHealth, CopyStatus, Event};
use crate::index::{GroupIx, NodeIx, ResourceIx};
use std::sync::Arc;

impl Engine {
    /// Resolves a report about the copy of `resource` on `node`: the
    /// resource has copies, the node one of them, and the node is not down;
    /// `None` (and an `Ignored` action) otherwise.
    pub(super) fn lookup_copy(
        &self,
        resource: &str,
        node: &str,
        what: &Event,
        out: &mut Vec<Action>,
    ) -> Option<(ResourceIx, NodeIx, usize)> {
        let ignore = |out: &mut Vec<Action>, reason: String| {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason,
            });
            None
        };
        let Some(&found) = self.model.resource_ix.get(resource) else {
            return ignore(out, format!("unknown resource {resource}"));
        };
        let Some(&on) = self.model.node_ix.get(node) else {
            return ignore(out, format!("unknown node {node}"));
        };
        if self.model.resources[found].copies.is_none() {
            return ignore(out, format!("{resource} has no copies"));
        }
        let Some(position) = self.copy_position(found, on) else {
            return ignore(out, format!("{resource} has no copy on {node}"));
        };
        if self.nodes[on].status == NodeStatus::Down {
            return ignore(out, format!("{node} is down"));
        }
        Some((found, on, position))
    }

    /// Whether a report about `resource` on `node` is about the owner's
    /// copy while it is the resource (activating, active, deactivating):
    /// then it is the resource's report.
    pub(super) fn is_owner_copy_report(&self, resource: &str, node: &str) -> bool {
        let (Some(&found), Some(&on)) = (
            self.model.resource_ix.get(resource),
            self.model.node_ix.get(node),
        ) else {
            return false;
        };
        let group = self.model.resources[found].group;
        self.groups[group].owner == Some(on) && self.resources[found].state.is_active()
    }

    /// A copy's status: kept, if something of the copy runs there and the
    /// status is not of a generation newer than any activation.
    pub(super) fn copy_status_reported(
        &mut self,
        resource: ResourceIx,
        position: usize,
        status: &CopyStatus,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        let set = &mut self.copies[resource];
        let record = &mut set.copies[position];
        let reason = if !record.state.runs() {
            Some(format!("the copy is {}: nothing runs there", record.state))
        } else if status.generation > set.generation {
            Some(format!(
                "generation {} is newer than the last activation's ({})",
                status.generation, set.generation
            ))
        } else {
            record.status = Some(status.clone());
            None
        };
        if let Some(reason) = reason {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason,
            });
        }
    }

    /// A passive copy runs (and follows the source it was given).
    pub(super) fn passive_started(
        &mut self,
        resource: ResourceIx,
        position: usize,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        let record = &mut self.copies[resource].copies[position];
        if record.state == CopyState::StartingPassive {
            record.state = CopyState::Passive;
        } else {
            let reason = format!("the copy is {}, not starting", record.state);
            out.push(Action::Ignored {
                what: what.to_string(),
                reason,
            });
        }
    }

    /// A passive copy stopped: as asked, or of itself (then it failed).
    pub(super) fn passive_stopped(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        position: usize,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        match self.copies[resource].copies[position].state {
            CopyState::StoppingPassive => self.copies[resource].copies[position].stopped(),
            CopyState::StartingPassive | CopyState::Passive => {
                self.passive_failed(resource, node, position, "stopped unexpectedly", out);
            }
            state => out.push(Action::Ignored {
                what: what.to_string(),
                reason: format!("the copy is {state}, not a passive copy"),
            }),
        }
    }

    /// A copy failed that is not the resource itself: a passive one (Failed
    /// until the resource's retry period), or one being stopped (stopped).
    pub(super) fn copy_failed(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        position: usize,
        reason: &str,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        match self.copies[resource].copies[position].state {
            CopyState::StoppingPassive => {
                self.copies[resource].copies[position].stopped();
                let why = format!(
                    "stopping the passive copy on {} failed ({reason}): it is stopped",
                    self.node_name(node)
                );
                Self::decision(out, self.resource_name(resource), why);
            }
            CopyState::StartingPassive | CopyState::Passive => {
                self.passive_failed(resource, node, position, reason, out);
            }
            state => out.push(Action::Ignored {
                what: what.to_string(),
                reason: format!("the copy on {} is {state}", self.node_name(node)),
            }),
        }
    }

    fn passive_failed(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        position: usize,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let retry_period = self.model.resources[resource].restart.retry_period;
        let retry_at = self.now + retry_period;
        let record = &mut self.copies[resource].copies[position];
        record.stopped();
        record.state = CopyState::Failed;
        record.failed_reason = Some(reason.to_string());
        record.retry_at = Some(retry_at);
        let why = format!(
            "passive copy on {} failed ({reason}): started again in {retry_period}",
            self.node_name(node)
        );
        Self::decision(out, self.resource_name(resource), why);
    }

    /// Nothing of `resource` runs on `node` any more (thrown away, or the
    /// node died). No-op for a resource without copies.
    pub(super) fn copy_gone(&mut self, resource: ResourceIx, node: NodeIx) {
        if let Some(position) = self.copy_position(resource, node) {
            self.copies[resource].copies[position].stopped();
        }
    }

    /// Sets the state of the copy of `resource` on `node`, which runs as
    /// the resource; no-op for a resource without copies, or a node without
    /// a copy (the resource may have been activated there with nothing to
    /// lose).
    pub(super) fn set_owner_copy(&mut self, resource: ResourceIx, node: NodeIx, state: CopyState) {
        if let Some(position) = self.copy_position(resource, node) {
            let record = &mut self.copies[resource].copies[position];
            record.state = state;
            record.source = None;
            record.failed_reason = None;
            record.retry_at = None;
        }
    }

    /// The resource with copies comes online on `owner`: its copy there is
    /// activated with the next generation. When the last active copy was
    /// elsewhere, the history first says how much of its data this copy
    /// was last known to lack ([`Engine::activation_loss_text`]): in
    /// asynchronous replication, that is what the activation loses.
    pub(super) fn activate_copy(
        &mut self,
        resource: ResourceIx,
        owner: NodeIx,
        out: &mut Vec<Action>,
    ) {
        if let Some(loss) = self.activation_loss_text(resource, owner) {
            Self::decision(out, self.resource_name(resource), loss);
        }
        let set = &mut self.copies[resource];
        set.generation += 1;
        set.last_active = Some(owner);
        let generation = set.generation;
        self.set_owner_copy(resource, owner, CopyState::Activating);
        out.push(Action::ActivateCopy {
            resource: self.resource_name(resource),
            node: self.node_name(owner),
            generation,
        });
    }

    /// Starts, re-points, stops and retries the passive copies of `group`'s
    /// resources with copies. Whether anything changed.
    pub(super) fn reconcile_copies(&mut self, group: GroupIx, out: &mut Vec<Action>) -> bool {
        if !self.has_copies(group) {
            return false;
        }
        let model = Arc::clone(&self.model);
        let members = &model.groups[group].resources;
        let online = self.groups[group].goal == Goal::Online;
        let wanted = self.wanted_online(group, online);
        let mut changed = false;
        for &resource in &model.groups[group].copied {
            let Some(copies) = &model.resources[resource].copies else {
                continue;
            };
            // An active copy is on its way: passive copies start once it is
            // there, following it, rather than twice.
            let coming_up = members
                .iter()
                .position(|&member| member == resource)
                .is_some_and(|position| wanted[position])
                && matches!(
                    self.resources[resource].state,
                    ResourceState::Offline | ResourceState::OnlinePending
                );
            for (position, &node) in copies.nodes.iter().enumerate() {
                changed |= self.reconcile_copy(group, resource, position, node, coming_up, out);
            }
        }
        changed
    }

    /// One copy's step: see [`Engine::reconcile_copies`].
    fn reconcile_copy(
        &mut self,
        group: GroupIx,
        resource: ResourceIx,
        position: usize,
        node: NodeIx,
        coming_up: bool,
        out: &mut Vec<Action>,
    ) -> bool {
        let record = &self.copies[resource].copies[position];
        let goal_offline = self.groups[group].goal == Goal::Offline;
        if record.state == CopyState::Failed
            && !goal_offline
            && record.retry_at.is_some_and(|at| at <= self.now)
        {
            self.copies[resource].copies[position].stopped();
            let why = format!(
                "retry period elapsed: starting the passive copy on {} again",
                self.node_name(node)
            );
            Self::decision(out, self.resource_name(resource), why);
            return true;
        }
        let owner = self.groups[group].owner;
        if owner == Some(node) && !goal_offline {
            // The owner's copy is the resource's: left to its requests.
            return false;
        }
        let wanted =
            !goal_offline && matches!(self.nodes[node].status, NodeStatus::Up | NodeStatus::Paused);
        // The owner's copy is active exactly while the resource is online.
        let active_source =
            owner.filter(|_| self.resources[resource].state == ResourceState::Online);
        let record = &self.copies[resource].copies[position];
        match record.state {
            CopyState::Passive if wanted => {
                if let (Some(source), Some(reason)) =
                    (active_source, self.divergence(resource, position))
                {
                    self.reseed(resource, position, node, source, reason, out);
                    return true;
                }
                if active_source.is_some() && record.source != active_source {
                    self.start_passive(resource, position, node, active_source, out);
                    return true;
                }
                false
            }
            CopyState::None if wanted && !coming_up => {
                self.start_passive(resource, position, node, active_source, out);
                true
            }
            CopyState::Passive if !wanted => {
                self.copies[resource].copies[position].state = CopyState::StoppingPassive;
                out.push(Action::StopPassiveCopy {
                    resource: self.resource_name(resource),
                    node: self.node_name(node),
                });
                true
            }
            _ => false,
        }
    }

    /// Why the copy of `resource` at `position` cannot follow the active
    /// copy, if its status of the current generation says it diverged.
    fn divergence(&self, resource: ResourceIx, position: usize) -> Option<String> {
        let set = &self.copies[resource];
        match &set.copies[position].status {
            Some(CopyStatus {
                generation,
                health: CopyHealth::Diverged(reason),
                ..
            }) if *generation == set.generation => Some(reason.clone()),
            _ => None,
        }
    }

    /// A passive copy whose log diverged from the active copy's on
    /// `source` is reseeded: asked to start again following `source`, which
    /// for a diverged copy drops its data and copies everything again (the
    /// contract's `start-passive`). Its diverged status is forgotten (it
    /// described the data being dropped) and the reason is kept for status
    /// views.
    fn reseed(
        &mut self,
        resource: ResourceIx,
        position: usize,
        node: NodeIx,
        source: NodeIx,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        let why = format!(
            "the copy on {} diverged from the active copy on {} ({reason}): reseeding it from \
             {}: its own log is dropped, with whatever it held that the active copy does not",
            self.node_name(node),
            self.node_name(source),
            self.node_name(source)
        );
        Self::decision(out, self.resource_name(resource), why);
        let record = &mut self.copies[resource].copies[position];
        record.status = None;
        record.reseeded = Some(format!(
            "diverged from the copy on {}: {reason}",
            self.model.nodes[source]
        ));
        self.start_passive(resource, position, node, Some(source), out);
    }

    /// Asks `node` to run a passive copy following `source` (or to follow
    /// `source` from now on).
    fn start_passive(
        &mut self,
        resource: ResourceIx,
        position: usize,
        node: NodeIx,
        source: Option<NodeIx>,
        out: &mut Vec<Action>,
    ) {
        let record = &mut self.copies[resource].copies[position];
        record.state = CopyState::StartingPassive;
        record.source = source;
        out.push(Action::StartPassiveCopy {
            resource: self.resource_name(resource),
            node: self.node_name(node),
            source: source.map(|source| self.node_name(source)),
        });
    }

    /// The next time a Failed copy of `group` is started again, if any.
    pub(super) fn copy_retries(&self, group: GroupIx) -> impl Iterator<Item = crate::Millis> + '_ {
        let offline = self.groups[group].goal == Goal::Offline;
        self.model.groups[group]
            .copied
            .iter()
            .flat_map(move |&resource| &self.copies[resource].copies)
            .filter(move |record| !offline && record.state == CopyState::Failed)
            .filter_map(|record| record.retry_at)
    }
}
