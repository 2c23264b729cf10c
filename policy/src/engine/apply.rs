//! Applying events: record what an event says and take the decisions only
//! that event can trigger. What follows from the new state is left to
//! `reconcile`.

use super::Engine;
use super::state::{AcceptedLoss, CopyState, Goal, NodeStatus, Recovery, ResourceState};
use crate::config::NodeId;
use crate::event::{Action, Event, MoveKind};
use crate::index::{GroupIx, NodeIx, ResourceIx};

impl Engine {
    pub(super) fn apply(&mut self, event: Event, out: &mut Vec<Action>) {
        // Rendered only when an action quotes it: most events need no text.
        let what = &event;
        match &event {
            Event::NodeUp(name) => {
                if let Some(node) = self.lookup_node(name, what, out)
                    && self.nodes[node].status == NodeStatus::Down
                {
                    self.nodes[node].status = NodeStatus::Up;
                }
            }
            Event::NodeDown(name) => {
                if let Some(node) = self.lookup_node(name, what, out) {
                    self.node_down(node, out);
                }
            }
            Event::NodePaused(name) => self.set_status(name, what, NodeStatus::Paused, out),
            Event::NodeResumed(name) => self.set_status(name, what, NodeStatus::Up, out),
            Event::NodeDraining(name) => self.set_status(name, what, NodeStatus::Draining, out),
            Event::RecoveryActions { node, enabled } => {
                self.set_recovery_actions(node, *enabled, what, out);
            }
            Event::GroupOnlineRequested(name) => {
                if let Some(group) = self.lookup_group(name, what, out) {
                    self.online_requested(group, what, out);
                }
            }
            Event::GroupOfflineRequested(name) => {
                if let Some(group) = self.lookup_group(name, what, out) {
                    self.offline_requested(group, what, out);
                }
            }
            Event::MoveRequested { group, to } => {
                if let Some(group) = self.lookup_group(group, what, out) {
                    self.move_requested(group, to.clone(), what, out);
                }
            }
            // The owner's copy is the resource: its answers are the
            // resource's.
            Event::CopyActivated { resource, node } => {
                if self.copies_named(resource, what, out)
                    && let Some((found, _)) = self.lookup_report(resource, node, what, out)
                {
                    self.online_reported(found, what, out);
                }
            }
            Event::CopyDeactivated { resource, node } => {
                if self.copies_named(resource, what, out)
                    && let Some((found, on)) = self.lookup_report(resource, node, what, out)
                {
                    self.offline_reported(found, on, what, out);
                }
            }
            Event::CopyFailed {
                resource,
                node,
                reason,
            } if self.is_owner_copy_report(resource, node) => {
                if let Some((found, on)) = self.lookup_report(resource, node, what, out) {
                    self.failure_reported(found, on, reason, what, out);
                }
            }
            Event::CopyFailed {
                resource,
                node,
                reason,
            } => {
                if let Some((found, on, position)) = self.lookup_copy(resource, node, what, out) {
                    self.copy_failed(found, on, position, reason, what, out);
                }
            }
            Event::CopyStatusReported {
                resource,
                node,
                status,
            } => {
                if let Some((found, _, position)) = self.lookup_copy(resource, node, what, out) {
                    self.copy_status_reported(found, position, status, what, out);
                }
            }
            Event::PassiveCopyStarted { resource, node } => {
                if let Some((found, _, position)) = self.lookup_copy(resource, node, what, out) {
                    self.passive_started(found, position, what, out);
                }
            }
            Event::PassiveCopyStopped { resource, node } => {
                if let Some((found, on, position)) = self.lookup_copy(resource, node, what, out) {
                    self.passive_stopped(found, on, position, what, out);
                }
            }
            Event::AcceptDataLoss {
                group_or_resource,
                node,
            } => self.accept_data_loss(group_or_resource, node.as_ref(), what, out),
            Event::ResourceOnline { resource, node } => {
                if let Some((found, _)) = self.lookup_report(resource, node, what, out) {
                    self.online_reported(found, what, out);
                }
            }
            Event::ResourceOffline { resource, node } => {
                if let Some((found, on)) = self.lookup_report(resource, node, what, out) {
                    self.offline_reported(found, on, what, out);
                }
            }
            Event::ResourceFailed {
                resource,
                node,
                reason,
            } => {
                if let Some((found, on)) = self.lookup_report(resource, node, what, out) {
                    self.failure_reported(found, on, reason, what, out);
                }
            }
            Event::Tick => {}
        }
    }

    /// Whether `resource` is a resource with copies; an `Ignored` action if
    /// it is not (an answer about copies of a resource without any).
    fn copies_named(&self, resource: &str, what: &Event, out: &mut Vec<Action>) -> bool {
        let copied = self
            .model
            .resource_ix
            .get(resource)
            .is_some_and(|&found| self.model.resources[found].copies.is_some());
        if !copied {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason: format!("{resource} is not a resource with copies"),
            });
        }
        copied
    }

    fn lookup_node(&self, name: &str, what: &Event, out: &mut Vec<Action>) -> Option<NodeIx> {
        let node = self.model.node_ix.get(name).copied();
        if node.is_none() {
            out.push(Action::Ignored {
                what: what.to_string(),
                reason: format!("unknown node {name}"),
            });
        }
        node
    }

    fn lookup_group(&self, name: &str, what: &Event, out: &mut Vec<Action>) -> Option<GroupIx> {
        let group = self.model.group_ix.get(name).copied();
        if group.is_none() {
            out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("unknown group {name}"),
            });
        }
        group
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
    ) -> Option<(ResourceIx, NodeIx)> {
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
        let owner = self.groups[self.model.resources[found].group].owner;
        if owner != Some(on) || self.nodes[on].status == NodeStatus::Down {
            return ignore(out, format!("{resource} is not expected on {node}"));
        }
        Some((found, on))
    }

    fn set_status(&mut self, name: &str, what: &Event, status: NodeStatus, out: &mut Vec<Action>) {
        if let Some(node) = self.lookup_node(name, what, out) {
            if self.nodes[node].status == NodeStatus::Down {
                out.push(Action::Ignored {
                    what: what.to_string(),
                    reason: format!("{name} is down"),
                });
            } else {
                self.nodes[node].status = status;
            }
        }
    }

    fn set_recovery_actions(
        &mut self,
        name: &NodeId,
        enabled: bool,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        if let Some(node) = self.lookup_node(name, what, out)
            && self.nodes[node].recovery != enabled
        {
            self.nodes[node].recovery = enabled;
            let state = if enabled { "enabled" } else { "disabled" };
            Self::decision(out, name.clone(), format!("recovery actions {state}"));
        }
    }

    /// A dead node runs nothing: its groups' resources are offline at once
    /// (no offline requests to a dead node) and its online groups fail over.
    fn node_down(&mut self, node: NodeIx, out: &mut Vec<Action>) {
        if self.nodes[node].status == NodeStatus::Down {
            return;
        }
        self.nodes[node].status = NodeStatus::Down;
        for resource in self.copies.indices() {
            self.copy_gone(resource, node);
        }
        let name = self.node_name(node);
        for group in self.groups.indices() {
            if self.groups[group].owner != Some(node) {
                continue;
            }
            if self.forget_running(group) {
                Self::decision(
                    out,
                    self.group_name(group),
                    format!("{name} is down: its resources there are considered offline"),
                );
            }
            if self.groups[group].goal == Goal::Online {
                if self.nodes[node].recovery {
                    self.failover(group, node, format!("{name} is down"), false, out);
                } else {
                    let reason =
                        format!("{name} is down and recovery actions are disabled on {name}");
                    self.fail_group(group, reason, None, None, out);
                }
            }
        }
    }

    /// Takes every resource of `group` as offline, with no recovery pending;
    /// whether any was active.
    fn forget_running(&mut self, group: GroupIx) -> bool {
        let mut any = false;
        for &resource in &self.model.groups[group].resources {
            let record = &mut self.resources[resource];
            if record.state.is_active() {
                any = true;
                record.state = ResourceState::Offline;
            }
            record.recovery = Recovery::None;
            record.refused = false;
        }
        any
    }

    fn online_requested(&mut self, group: GroupIx, what: &Event, out: &mut Vec<Action>) {
        let record = &self.groups[group];
        let busy = match record.goal {
            Goal::Online => record
                .owner
                .map(|owner| format!("is already online on {}", self.node_name(owner))),
            Goal::Moving { to, .. } => Some(format!("is moving to {}", self.node_name(to))),
            _ => None,
        };
        if let Some(busy) = busy {
            out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("{} {busy}", self.group_name(group)),
            });
            return;
        }
        if !self.all_down(group) {
            // Still going offline: wanting it online again is simply the
            // Online goal on the same owner.
            self.groups[group].goal = Goal::Online;
            return;
        }
        let target = record
            .owner
            .filter(|&owner| self.accepts(group, owner))
            .or_else(|| self.best_node(group, None));
        match target {
            None => out.push(Action::Refused {
                what: what.to_string(),
                reason: self.copies_blocking(group, None).unwrap_or_else(|| {
                    format!("no possible owner of {} is up", self.group_name(group))
                }),
            }),
            Some(node) => {
                // An operator's online is a fresh start: forget past failures.
                self.groups[group].failovers.clear();
                self.place(group, node, out);
            }
        }
    }

    fn offline_requested(&mut self, group: GroupIx, what: &Event, out: &mut Vec<Action>) {
        if self.groups[group].goal == Goal::Offline {
            out.push(Action::Refused {
                what: what.to_string(),
                reason: format!("{} is already offline", self.group_name(group)),
            });
            return;
        }
        self.groups[group].goal = Goal::Offline;
        self.groups[group].failed_over = false;
        self.groups[group].loss_accepted = None;
        for &resource in &self.model.groups[group].resources {
            self.resources[resource].recovery = Recovery::None;
        }
    }

    /// An operator's move; whether it was taken (not refused).
    fn move_requested(
        &mut self,
        group: GroupIx,
        to: Option<NodeId>,
        what: &Event,
        out: &mut Vec<Action>,
    ) -> bool {
        let group_name = self.group_name(group);
        let refuse = |out: &mut Vec<Action>, reason: String| {
            out.push(Action::Refused {
                what: what.to_string(),
                reason,
            });
            false
        };
        if let Goal::Moving { to, .. } = self.groups[group].goal {
            return refuse(
                out,
                format!("{group_name} is already moving to {}", self.node_name(to)),
            );
        }
        let target = match self.move_target(group, to) {
            Ok(target) => target,
            Err(reason) => return refuse(out, reason),
        };
        let from = self.groups[group].owner.map(|owner| self.node_name(owner));
        let move_group = |out: &mut Vec<Action>| {
            out.push(Action::MoveGroup {
                group: group_name.clone(),
                from: from.clone(),
                to: self.node_name(target),
                kind: MoveKind::Planned,
                reason: "requested by the operator".to_string(),
            })
        };
        let planned = Goal::Moving {
            to: target,
            kind: MoveKind::Planned,
        };
        match self.groups[group].goal {
            Goal::Online => {
                move_group(out);
                self.groups[group].goal = planned;
                true
            }
            Goal::Failed { .. } => {
                move_group(out);
                self.groups[group].failovers.clear();
                self.groups[group].goal = planned;
                true
            }
            Goal::Offline | Goal::Moving { .. } if !self.all_down(group) => {
                // Changing the owner now would leave resources running on a
                // node the group no longer belongs to.
                refuse(
                    out,
                    format!("{group_name} is still going offline; move it once it is offline"),
                )
            }
            Goal::Offline | Goal::Moving { .. } => {
                self.groups[group].owner = Some(target);
                let reason = format!(
                    "is offline: it will come online on {} when requested",
                    self.node_name(target)
                );
                Self::decision(out, group_name, reason);
                true
            }
        }
    }

    /// The operator's word that copies may be activated past their lag
    /// limit, once: an offline group is brought online, an online or
    /// Failed one moved, on the node named or where its copies lag least.
    fn accept_data_loss(
        &mut self,
        name: &str,
        node: Option<&NodeId>,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        let refuse = |out: &mut Vec<Action>, reason: String| {
            out.push(Action::Refused {
                what: what.to_string(),
                reason,
            })
        };
        let group = self.model.group_ix.get(name).copied().or_else(|| {
            self.model
                .resource_ix
                .get(name)
                .map(|&resource| self.model.resources[resource].group)
        });
        let Some(group) = group else {
            return refuse(out, format!("unknown group or resource {name}"));
        };
        if !self.has_copies(group) {
            let reason = format!(
                "{} has no resource with copies: there is no data loss to accept",
                self.group_name(group)
            );
            return refuse(out, reason);
        }
        let named = match node {
            Some(node_name) => match self.model.node_ix.get(node_name) {
                Some(&node) => Some(node),
                None => return refuse(out, format!("unknown node {node_name}")),
            },
            None => None,
        };
        let before = self.groups[group].loss_accepted;
        self.groups[group].loss_accepted = Some(AcceptedLoss { node: named });
        let taken = match self.groups[group].goal {
            Goal::Offline if self.all_down(group) => {
                let target = match node {
                    Some(_) => self.move_target(group, node.cloned()),
                    None => self
                        .best_node(group, None)
                        .ok_or_else(|| format!("no possible owner of {name} is up")),
                };
                match target {
                    Ok(target) => {
                        self.groups[group].failovers.clear();
                        self.place(group, target, out);
                        true
                    }
                    Err(reason) => {
                        refuse(out, reason);
                        false
                    }
                }
            }
            Goal::Online | Goal::Failed { .. } => {
                self.move_requested(group, node.cloned(), what, out)
            }
            Goal::Offline | Goal::Moving { .. } => {
                let reason = format!(
                    "{} is going offline or moving; accept data loss once it has",
                    self.group_name(group)
                );
                refuse(out, reason);
                false
            }
        };
        if !taken {
            self.groups[group].loss_accepted = before;
        }
    }

    /// Where an operator's move of `group` goes: the node named, if it may
    /// take the group now, or the best other node that is up; why not
    /// otherwise.
    fn move_target(&self, group: GroupIx, to: Option<NodeId>) -> Result<NodeIx, String> {
        let group_name = &self.model.groups[group].name;
        let owner = self.groups[group].owner;
        let Some(name) = to else {
            return self.best_node(group, owner).ok_or_else(|| {
                self.copies_blocking(group, owner)
                    .unwrap_or_else(|| "no other possible owner is up".to_string())
            });
        };
        let Some(&node) = self.model.node_ix.get(&name) else {
            return Err(format!("unknown node {name}"));
        };
        if Some(node) == owner && self.groups[group].goal == Goal::Online {
            return Err(format!("{group_name} is already on {name}"));
        }
        if !self.model.groups[group].candidates.contains(&node) {
            return Err(format!("{name} is not a possible owner of {group_name}"));
        }
        if self.nodes[node].status != NodeStatus::Up {
            let status = self.nodes[node].status;
            return Err(format!("{name} is {status} and takes no new groups"));
        }
        if self.has_copies(group)
            && let Err(reason) = self.group_copy_verdict(group, node)
        {
            let hint = if self.waivable(group, node) {
                " (the operator's accept-data-loss moves it anyway)"
            } else {
                ""
            };
            return Err(format!("{reason}{hint}"));
        }
        Ok(node)
    }

    fn online_reported(&mut self, resource: ResourceIx, what: &Event, out: &mut Vec<Action>) {
        let record = &mut self.resources[resource];
        if record.state == ResourceState::OnlinePending {
            record.state = ResourceState::Online;
            let group = self.model.resources[resource].group;
            if let Some(owner) = self.groups[group].owner {
                self.set_owner_copy(resource, owner, CopyState::Active);
            }
        } else {
            let reason = format!(
                "{} is {}, not pending online",
                self.model.resources[resource].name, record.state
            );
            out.push(Action::Ignored {
                what: what.to_string(),
                reason,
            });
        }
    }

    fn offline_reported(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        match self.resources[resource].state {
            ResourceState::OfflinePending => {
                self.resources[resource].state = ResourceState::Offline;
                // A deactivated copy runs on as a passive one.
                self.set_owner_copy(resource, node, CopyState::Passive);
            }
            ResourceState::Online | ResourceState::OnlinePending => {
                self.terminate(resource, node, out);
                self.resource_failed(resource, node, "went offline unexpectedly", out);
            }
            state => {
                let reason = format!(
                    "{} is {state}, not pending offline",
                    self.model.resources[resource].name
                );
                out.push(Action::Ignored {
                    what: what.to_string(),
                    reason,
                });
            }
        }
    }

    fn failure_reported(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        reason: &str,
        what: &Event,
        out: &mut Vec<Action>,
    ) {
        match self.resources[resource].state {
            ResourceState::OfflinePending => {
                self.terminate(resource, node, out);
                self.resources[resource].state = ResourceState::Offline;
                Self::decision(
                    out,
                    self.resource_name(resource),
                    format!("offline failed ({reason}): terminated, now offline"),
                );
            }
            ResourceState::Online | ResourceState::OnlinePending => {
                self.terminate(resource, node, out);
                self.resource_failed(resource, node, reason, out);
            }
            state => {
                let reason = format!("{} is {state}", self.model.resources[resource].name);
                out.push(Action::Ignored {
                    what: what.to_string(),
                    reason,
                });
            }
        }
    }

    /// Throws the instance away; for a resource with copies, its copy there
    /// with it.
    fn terminate(&mut self, resource: ResourceIx, node: NodeIx, out: &mut Vec<Action>) {
        self.copy_gone(resource, node);
        out.push(Action::Terminate {
            resource: self.resource_name(resource),
            node: self.node_name(node),
        });
    }
}
