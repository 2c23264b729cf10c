//! Where a group goes: placing it on a node, the node a failover, a failback
//! or a move picks, and a settled group leaving its owner.

use super::Engine;
use super::state::{AcceptedLoss, Goal, NodeStatus, ResourceRecord};
use crate::event::{Action, MoveKind};
use crate::index::{GroupIx, NodeIx};

impl Engine {
    /// Gives `group` to `node` and wants it online there. Only called when no
    /// resource of `group` is active. A new placement starts with clean
    /// restart counts.
    ///
    /// The operator's accepted data loss, if it covers `node`, now covers
    /// this placement's activations only (and is recorded).
    pub(super) fn place(&mut self, group: GroupIx, node: NodeIx, out: &mut Vec<Action>) {
        for &resource in &self.model.groups[group].resources {
            self.resources[resource] = ResourceRecord::new();
        }
        let accepted = self.groups[group]
            .loss_accepted
            .take()
            .filter(|accepted| accepted.covers(node));
        if accepted.is_some() {
            self.groups[group].loss_accepted = Some(AcceptedLoss { node: Some(node) });
            Self::decision(
                out,
                self.group_name(group),
                self.accepted_loss_text(group, node),
            );
        }
        let record = &mut self.groups[group];
        record.owner = Some(node);
        record.goal = Goal::Online;
        record.failed_over = false;
        record.drain_noted = false;
        out.push(Action::Placed {
            group: self.group_name(group),
            node: self.node_name(node),
        });
    }

    /// Whether `node` may take `group` now (a new placement): it is up, a
    /// candidate, and every copy of the group may be activated there.
    pub(super) fn accepts(&self, group: GroupIx, node: NodeIx) -> bool {
        self.nodes[node].status == NodeStatus::Up
            && self.model.groups[group].candidates.contains(&node)
            && (!self.has_copies(group) || self.group_copy_verdict(group, node).is_ok())
    }

    /// The best node for `group` other than `exclude`: the first candidate
    /// (the preferred owners in order, then the other possible owners) that is
    /// up; for a group with copies, the one whose copies lag least
    /// ([`Engine::best_copy_node`]).
    pub(super) fn best_node(&self, group: GroupIx, exclude: Option<NodeIx>) -> Option<NodeIx> {
        if self.has_copies(group) {
            return self.best_copy_node(group, exclude);
        }
        self.model.groups[group]
            .candidates
            .iter()
            .copied()
            .find(|&node| Some(node) != exclude && self.nodes[node].status == NodeStatus::Up)
    }

    /// Failover target: the next candidate after `from`, wrapping around, that
    /// is up (so A -> B -> C -> A along the preferred owners list).
    /// A group with copies goes where its copies lag least instead
    /// ([`Engine::best_copy_node`]).
    pub(super) fn failover_target(&self, group: GroupIx, from: NodeIx) -> Option<NodeIx> {
        if self.has_copies(group) {
            return self.best_copy_node(group, Some(from));
        }
        let candidates = &self.model.groups[group].candidates;
        let start = candidates
            .iter()
            .position(|&node| node == from)
            .map_or(0, |position| position + 1);
        (0..candidates.len())
            .map(|step| candidates[(start + step) % candidates.len()])
            .find(|&node| node != from && self.nodes[node].status == NodeStatus::Up)
    }

    /// Where failback would take `group`: the most preferred owner that is
    /// up, if that is not where it is (and, for a group with copies, once
    /// its copies there may be activated).
    pub(super) fn failback_target(&self, group: GroupIx, owner: NodeIx) -> Option<NodeIx> {
        self.model.groups[group]
            .preferred
            .iter()
            .copied()
            .find(|&node| self.nodes[node].status == NodeStatus::Up)
            .filter(|&preferred| preferred != owner)
            .filter(|&preferred| {
                !self.has_copies(group) || self.group_copy_verdict(group, preferred).is_ok()
            })
    }

    /// A settled online group may have to leave its owner: the owner is
    /// draining, or failback wants it back on its most preferred owner.
    pub(super) fn maybe_relocate(
        &mut self,
        group: GroupIx,
        owner: NodeIx,
        out: &mut Vec<Action>,
    ) -> bool {
        let mut go = |this: &mut Self, to: NodeIx, kind: MoveKind, reason: String| {
            out.push(Action::MoveGroup {
                group: this.group_name(group),
                from: Some(this.node_name(owner)),
                to: this.node_name(to),
                kind,
                reason,
            });
            this.groups[group].goal = Goal::Moving { to, kind };
            true
        };
        if self.nodes[owner].status == NodeStatus::Draining {
            if let Some(to) = self.best_node(group, Some(owner)) {
                let reason = format!("{} is draining", self.node_name(owner));
                return go(self, to, MoveKind::Drain, reason);
            }
            if !self.groups[group].drain_noted {
                self.groups[group].drain_noted = true;
                let why = format!(
                    "cannot move off draining {}: no other possible owner is up",
                    self.node_name(owner)
                );
                Self::decision(out, self.group_name(group), why);
            }
            return false;
        }
        let failback = self.model.groups[group].failback;
        if self.groups[group].failed_over
            && failback.allows(self.now)
            && let Some(to) = self.failback_target(group, owner)
        {
            let reason = format!(
                "failback to {}, the most preferred owner that is up",
                self.node_name(to)
            );
            return go(self, to, MoveKind::Failback, reason);
        }
        false
    }
}
