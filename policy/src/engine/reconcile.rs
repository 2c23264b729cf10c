//! Reconciling: compare, group by group, what is with what is wanted, and
//! emit the requests that move one towards the other: every group
//! (`reconcile_all`), or only those an event can have affected
//! (`reconcile_groups`).

use super::Engine;
use super::state::{CopyState, Goal, Recovery, ResourceState};
use crate::event::{Action, MoveKind};
use crate::index::{GroupIx, NodeIx, ResourceIx};
use crate::time::Millis;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Engine {
    /// Reconciles `dirty` and whatever that changes, until nothing changes,
    /// exactly as reconciling every group would (the same actions in the same
    /// order): a group not reconciled is one on which a pass would do nothing.
    ///
    /// That holds because a group's step reads only its own records, its
    /// nodes', the time, and, across groups, whether the cluster-singleton
    /// peers of its resources are active (dependencies never cross groups).
    /// After every event each group is at rest, so one needs a step only if
    /// the event touched it, its deadline came, or a peer of one of its
    /// singletons became active or inactive. The passes go in group order
    /// like the full loop's: a group made dirty by a group before it in the
    /// pass is stepped later in the same pass, one made dirty by a later
    /// group in the next pass, as the full loop would see them. Every group
    /// stepped has its deadline recomputed.
    pub(super) fn reconcile_groups(&mut self, mut dirty: BTreeSet<GroupIx>, out: &mut Vec<Action>) {
        let mut stepped = BTreeSet::new();
        // As in `reconcile_all`: the bound only guards against a bug turning
        // into a hang.
        for _ in 0..64 {
            let mut next = BTreeSet::new();
            while let Some(group) = dirty.pop_first() {
                stepped.insert(group);
                let before = self.singleton_activity(&[group]);
                if !self.reconcile_group(group, out) {
                    continue;
                }
                next.insert(group);
                let mut peers = BTreeSet::new();
                self.singleton_changes(&before, &mut peers);
                for peer in peers {
                    if peer > group {
                        dirty.insert(peer);
                    } else {
                        next.insert(peer);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            dirty = next;
        }
        for group in stepped {
            let at = self.group_deadline(group);
            self.deadlines.set(group, at);
        }
    }

    /// Emits what follows from the current state, until nothing changes,
    /// reconciling every group on every pass: after a reconfiguration, and
    /// the reference `reconcile_groups` is tested against.
    pub(super) fn reconcile_all(&mut self, out: &mut Vec<Action>) {
        // Each pass that changes something moves a resource or a group one
        // step forward; a handful of passes always suffices. The bound only
        // guards against a bug turning into a hang.
        for _ in 0..64 {
            let mut changed = false;
            for group in self.groups.indices() {
                changed |= self.reconcile_group(group, out);
            }
            if !changed {
                break;
            }
        }
        if !self.full {
            self.index_all_deadlines();
        }
    }

    /// One step of one group: its resources (see
    /// [`Engine::reconcile_resources`]), then the passive copies of those
    /// with copies (`copies.rs`). Whether anything changed.
    fn reconcile_group(&mut self, group: GroupIx, out: &mut Vec<Action>) -> bool {
        let changed = self.reconcile_resources(group, out);
        self.reconcile_copies(group, out) || changed
    }

    /// Recoveries that are due, then resources down (reverse dependency
    /// order) and up (dependency order) on its owner; a settled online
    /// group may move, and a group entirely down goes where its goal says.
    /// Whether anything changed.
    fn reconcile_resources(&mut self, group: GroupIx, out: &mut Vec<Action>) -> bool {
        let online = self.groups[group].goal == Goal::Online;
        let owner = self.groups[group].owner;
        let mut changed = false;
        if online && let Some(owner) = owner {
            changed |= self.recoveries_due(group, owner, out);
        }
        let wanted = self.wanted_online(group, online);
        let Some(owner) = owner else {
            return changed;
        };
        changed |= self.request_changes(group, owner, &wanted, online, out);
        if online {
            if !changed && self.settled(group) {
                changed |= self.maybe_relocate(group, owner, out);
            }
            return changed;
        }
        if !self.all_down(group) {
            return changed;
        }
        self.place_after_down(group, owner, out) || changed
    }

    /// Timers of an online group's resources: decided restarts (once their
    /// dependents are down) and retry periods (while recovery actions are
    /// enabled on `owner`) that are due take the resource back to Offline.
    fn recoveries_due(&mut self, group: GroupIx, owner: NodeIx, out: &mut Vec<Action>) -> bool {
        let now = self.now;
        let mut changed = false;
        for &resource in &self.model.groups[group].resources {
            match self.resources[resource].recovery {
                Recovery::RestartAt(t) if t <= now && !self.any_dependent_active(resource) => {
                    let record = &mut self.resources[resource];
                    record.state = ResourceState::Offline;
                    record.recovery = Recovery::None;
                    changed = true;
                    Self::decision(out, self.resource_name(resource), "restarting".to_string());
                }
                Recovery::RetryAt(t) if t <= now && self.nodes[owner].recovery => {
                    let record = &mut self.resources[resource];
                    record.state = ResourceState::Offline;
                    record.recovery = Recovery::None;
                    record.failures.clear();
                    changed = true;
                    let why = format!(
                        "retry period {} elapsed: trying again",
                        self.model.resources[resource].restart.retry_period
                    );
                    Self::decision(out, self.resource_name(resource), why);
                }
                _ => {}
            }
        }
        changed
    }

    /// For each resource of `group`, in dependency order, whether it is wanted
    /// online: the group is, the resource has not failed, and neither has
    /// anything it depends on (transitively).
    pub(super) fn wanted_online(&self, group: GroupIx, online: bool) -> Vec<bool> {
        let members = &self.model.groups[group].resources;
        let mut wanted = Vec::with_capacity(members.len());
        for &resource in members {
            let ok = online
                && self.resources[resource].state != ResourceState::Failed
                && self.model.resources[resource]
                    .dependencies
                    .iter()
                    .all(|dependency| {
                        let position = members.iter().position(|member| member == dependency);
                        position.is_some_and(|position| wanted[position])
                    });
            wanted.push(ok);
        }
        wanted
    }

    /// The requests that move the group's resources towards `wanted` on
    /// `owner`. Down first, in reverse dependency order: an Online resource
    /// not wanted goes offline once nothing above it is up. Then, while the
    /// group is wanted `online`, up in dependency order: everything wanted
    /// whose dependencies are all online, all at once (independent branches in
    /// parallel), unless another resource of its cluster-singleton type is
    /// active.
    fn request_changes(
        &mut self,
        group: GroupIx,
        owner: NodeIx,
        wanted: &[bool],
        online: bool,
        out: &mut Vec<Action>,
    ) -> bool {
        // Shared, not borrowed from `self`: the requests change `self`.
        let model = Arc::clone(&self.model);
        let members = &model.groups[group].resources;
        let mut changed = false;
        for (position, &resource) in members.iter().enumerate().rev() {
            if self.resources[resource].state == ResourceState::Online
                && !wanted[position]
                && !self.any_dependent_active(resource)
            {
                self.request(resource, owner, ResourceState::OfflinePending, out);
                changed = true;
            }
        }
        if !online {
            return changed;
        }
        for (position, &resource) in members.iter().enumerate() {
            if wanted[position]
                && self.ready_to_come_up(resource, owner)
                && !self.singleton_held(resource, owner, out)
            {
                if let Err(reason) = self.activation_allowed(resource, owner) {
                    // What was true when the group was placed no longer is
                    // (a copy failed or reported since): wait Failed, as a
                    // failover finding no copy would.
                    self.activation_refused(group, resource, owner, reason, out);
                    return true;
                }
                self.request(resource, owner, ResourceState::OnlinePending, out);
                changed = true;
            }
        }
        changed
    }

    /// A resource with copies may not be activated on `owner`: the group
    /// waits Failed (for a copy that may, or the operator's word).
    fn activation_refused(
        &mut self,
        group: GroupIx,
        resource: ResourceIx,
        owner: NodeIx,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        let why = format!("not activated on {}: {reason}", self.node_name(owner));
        Self::decision(out, self.resource_name(resource), why);
        let reason = self.copies_blocking(group, None).unwrap_or_else(|| {
            format!(
                "{} may not be activated: {reason}",
                self.resource_name(resource)
            )
        });
        let retry = Some(self.now + self.model.groups[group].retry_period);
        self.fail_group(group, reason, retry, None, out);
    }

    /// Offline, every dependency online, and, for a resource with copies, no
    /// copy request outstanding on `owner`.
    fn ready_to_come_up(&self, resource: ResourceIx, owner: NodeIx) -> bool {
        let copy_busy = self.copy_position(resource, owner).is_some_and(|position| {
            matches!(
                self.copies[resource].copies[position].state,
                CopyState::StartingPassive | CopyState::StoppingPassive
            )
        });
        !copy_busy
            && self.resources[resource].state == ResourceState::Offline
            && self.model.resources[resource]
                .dependencies
                .iter()
                .all(|&dependency| self.resources[dependency].state == ResourceState::Online)
    }

    /// Asks `owner` to bring `resource` online (`pending` is OnlinePending)
    /// or take it offline (OfflinePending), and records the request as
    /// pending.
    fn request(
        &mut self,
        resource: ResourceIx,
        owner: NodeIx,
        pending: ResourceState,
        out: &mut Vec<Action>,
    ) {
        let record = &mut self.resources[resource];
        record.state = pending;
        let coming_up = pending == ResourceState::OnlinePending;
        if coming_up {
            record.refused = false;
        }
        if self.model.resources[resource].copies.is_some() {
            if coming_up {
                return self.activate_copy(resource, owner, out);
            }
            self.set_owner_copy(resource, owner, CopyState::Deactivating);
            return out.push(Action::DeactivateCopy {
                resource: self.resource_name(resource),
                node: self.node_name(owner),
            });
        }
        let (resource, node) = (self.resource_name(resource), self.node_name(owner));
        out.push(if coming_up {
            Action::BringOnline { resource, node }
        } else {
            Action::TakeOffline { resource, node }
        });
    }

    /// Whether another resource of `resource`'s cluster-singleton type is
    /// active, so it may not come online on `node`; the refusal is reported
    /// once per attempt.
    fn singleton_held(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        out: &mut Vec<Action>,
    ) -> bool {
        let resource_model = &self.model.resources[resource];
        let Some(&peer) = resource_model
            .singleton_peers
            .iter()
            .find(|&&peer| self.resources[peer].state.is_active())
        else {
            return false;
        };
        if !self.resources[resource].refused {
            self.resources[resource].refused = true;
            let peer_model = &self.model.resources[peer];
            let peer_node = self.groups[peer_model.group]
                .owner
                .map(|owner| self.node_name(owner))
                .unwrap_or_default();
            out.push(Action::Refused {
                what: format!(
                    "bring-online {} on {}",
                    resource_model.name, self.model.nodes[node]
                ),
                reason: format!(
                    "cluster-singleton type {} is already online: {} on {peer_node}",
                    resource_model.type_name, peer_model.name
                ),
            });
        }
        true
    }

    /// A group entirely down on `owner` goes where its goal says: a move
    /// places it on its target (or another node), a Failed group with a retry
    /// is placed again once the retry is due or a node it may use is up.
    fn place_after_down(&mut self, group: GroupIx, owner: NodeIx, out: &mut Vec<Action>) -> bool {
        match self.groups[group].goal.clone() {
            Goal::Moving { to, kind } => {
                self.finish_move(group, owner, to, kind, out);
                true
            }
            Goal::Failed {
                retry_at: Some(at),
                avoid,
                ..
            } => self.retry_failed_group(group, at, avoid, out),
            _ => false,
        }
    }

    /// Places a group that has gone offline on `owner` for a move to `to`; if
    /// `to` cannot take it now, on the best other node, and with none the
    /// group fails.
    fn finish_move(
        &mut self,
        group: GroupIx,
        owner: NodeIx,
        to: NodeIx,
        kind: MoveKind,
        out: &mut Vec<Action>,
    ) {
        let target = if self.accepts(group, to) {
            Some(to)
        } else {
            self.best_node(group, Some(owner)).or_else(|| {
                // A planned move whose target is gone goes back where it was;
                // a failover does not.
                (kind != MoveKind::Failover && self.accepts(group, owner)).then_some(owner)
            })
        };
        let Some(target) = target else {
            let blocking = self.copies_blocking(group, None);
            let why = format!(
                "{} is not available and no other possible owner {}",
                self.node_name(to),
                if blocking.is_some() {
                    "may take it"
                } else {
                    "is up"
                }
            );
            Self::decision(out, self.group_name(group), why);
            let reason = blocking.unwrap_or_else(|| "no other possible owner is up".to_string());
            let retry = Some(self.now + self.model.groups[group].retry_period);
            return self.fail_group(group, reason, retry, Some(owner), out);
        };
        if target != to {
            let why = format!(
                "{} is not available: going to {} instead",
                self.node_name(to),
                self.node_name(target)
            );
            Self::decision(out, self.group_name(group), why);
        }
        self.place(group, target, out);
        // A failback to an owner that is not the most preferred one keeps
        // failback armed for when that one returns.
        self.groups[group].failed_over = matches!(kind, MoveKind::Failover | MoveKind::Failback);
    }

    /// Places a Failed group again: anywhere once `at` is due, before that
    /// only on a node other than `avoid`. Whether it was placed.
    fn retry_failed_group(
        &mut self,
        group: GroupIx,
        at: Millis,
        avoid: Option<NodeIx>,
        out: &mut Vec<Action>,
    ) -> bool {
        let due = at <= self.now;
        let target = if due {
            self.best_node(group, None)
        } else {
            self.best_node(group, avoid)
        };
        let Some(target) = target else {
            return false;
        };
        let why = if due {
            format!(
                "retry period elapsed: trying again on {}",
                self.node_name(target)
            )
        } else {
            format!(
                "{} is up: bringing the failed group online there",
                self.node_name(target)
            )
        };
        Self::decision(out, self.group_name(group), why);
        self.place(group, target, out);
        true
    }
}
