//! Which copy may become the active one: the lag rule.
//!
//! A resource with copies is activated only on a node that holds a copy
//! (never elsewhere, not even with the operator's word: there would be no
//! data at all). There, its copy may be activated without the operator's
//! word only if nothing the engine knows of would be lost beyond the
//! resource's `max_lag_on_failover`:
//! - the resource was never activated (generation 0): no active copy ever
//!   wrote anything;
//! - or the node is where the last activation went: its copy holds the
//!   newest data there is;
//! - or the copy's last status is of the current generation, healthy, and
//!   its lag is within the limit. Its lag is the larger of what it
//!   reported and how far its copied position is behind the furthest
//!   position any copy reported in this generation (the active copy's own
//!   reports included): both are lower bounds of what it lacks.
//!
//! A copy that failed, or whose status says its data cannot be used, is
//! never activated. The operator's word ([`crate::Event::AcceptDataLoss`])
//! waives the limit and the need for a status, nothing else.
//!
//! A group whose resources have copies goes only where every one of them
//! may be activated, and among those nodes to the one whose worst copy lags
//! least, the group's placement order breaking ties.

use super::Engine;
use super::state::{CopyState, NodeStatus};
use crate::event::CopyHealth;
use crate::index::{GroupIx, NodeIx, ResourceIx};

/// How far a copy that may be activated lags, in log positions; `None`
/// when unknown (no status, allowed only by the operator's word), which
/// ranks after every known lag.
pub(super) type Lag = Option<u64>;

impl Engine {
    /// Whether `group` has resources with copies (otherwise placement is
    /// exactly what it always was).
    pub(super) fn has_copies(&self, group: GroupIx) -> bool {
        !self.model.groups[group].copied.is_empty()
    }

    /// Whether the operator's accepted loss covers activating `group` on
    /// `node`.
    fn loss_waived(&self, group: GroupIx, node: NodeIx) -> bool {
        self.groups[group]
            .loss_accepted
            .is_some_and(|accepted| accepted.covers(node))
    }

    /// The position of `node` among `resource`'s copy nodes.
    pub(super) fn copy_position(&self, resource: ResourceIx, node: NodeIx) -> Option<usize> {
        self.model.resources[resource]
            .copies
            .as_ref()
            .and_then(|copies| copies.nodes.iter().position(|&copy| copy == node))
    }

    /// "copy on n2", or "copy of store on n2" in a group with several
    /// resources with copies.
    fn copy_name(&self, resource: ResourceIx, node: NodeIx) -> String {
        let group = self.model.resources[resource].group;
        if self.model.groups[group].copied.len() > 1 {
            format!(
                "copy of {} on {}",
                self.model.resources[resource].name, self.model.nodes[node]
            )
        } else {
            format!("copy on {}", self.model.nodes[node])
        }
    }

    /// The furthest position any copy of `resource` reported in its current
    /// generation.
    pub(super) fn newest_position(&self, resource: ResourceIx) -> Option<u64> {
        let set = &self.copies[resource];
        set.copies
            .iter()
            .filter_map(|copy| copy.status.as_ref())
            .filter(|status| status.generation == set.generation)
            .map(|status| status.copied)
            .max()
    }

    /// How far the copy of `resource` on `node` lags behind the newest
    /// data, as far as the engine knows: `None` without a status of the
    /// current generation.
    pub(super) fn copy_lag(&self, resource: ResourceIx, position: usize) -> Option<u64> {
        let set = &self.copies[resource];
        let status = set.copies[position]
            .status
            .as_ref()
            .filter(|status| status.generation == set.generation)?;
        let behind = self
            .newest_position(resource)
            .map_or(0, |newest| newest.saturating_sub(status.copied));
        Some(status.lag.max(behind))
    }

    /// Whether the copy of `resource` on `node` may be activated now (with
    /// the operator's word if `waived`), and its lag; why not otherwise
    /// (see the module's docs).
    pub(super) fn copy_verdict(
        &self,
        resource: ResourceIx,
        node: NodeIx,
        waived: bool,
    ) -> Result<Lag, String> {
        let set = &self.copies[resource];
        let name = self.copy_name(resource, node);
        let Some(position) = self.copy_position(resource, node) else {
            return Err(format!("no {name}"));
        };
        if set.generation == 0 {
            return Ok(Some(0));
        }
        let record = &set.copies[position];
        if record.state == CopyState::Failed {
            let reason = record.failed_reason.as_deref().unwrap_or("failed");
            return Err(format!("{name} failed: {reason}"));
        }
        if let Some(status) = &record.status
            && status.generation == set.generation
        {
            match &status.health {
                // An active copy refusing writes for now still holds the
                // newest data: nothing blocks activating it again.
                CopyHealth::Healthy | CopyHealth::Refusing(_) => {}
                CopyHealth::Failed(reason) => return Err(format!("{name} failed: {reason}")),
                CopyHealth::Diverged(reason) => {
                    return Err(format!("{name} diverged: {reason}"));
                }
            }
        }
        if set.last_active == Some(node) {
            return Ok(Some(0));
        }
        let Some(lag) = self.copy_lag(resource, position) else {
            if waived {
                return Ok(None);
            }
            return Err(format!(
                "{name} has reported no status of generation {}",
                set.generation
            ));
        };
        let max = self.max_lag(resource);
        if lag > max && !waived {
            return Err(format!("{name} lags {lag} > max {max}"));
        }
        Ok(Some(lag))
    }

    /// The lag limit of a resource with copies.
    pub(super) fn max_lag(&self, resource: ResourceIx) -> u64 {
        self.model.resources[resource]
            .copies
            .as_ref()
            .map_or(0, |copies| copies.max_lag_on_failover)
    }

    /// Whether every resource with copies of `group` may be activated on
    /// `node`, and the worst lag among them; why not otherwise (each reason,
    /// joined).
    pub(super) fn group_copy_verdict(&self, group: GroupIx, node: NodeIx) -> Result<Lag, String> {
        let waived = self.loss_waived(group, node);
        let mut worst: Lag = Some(0);
        let mut reasons = Vec::new();
        for &resource in &self.model.groups[group].copied {
            match self.copy_verdict(resource, node, waived) {
                Ok(lag) => worst = rank_worse(worst, lag),
                Err(reason) => reasons.push(reason),
            }
        }
        if reasons.is_empty() {
            Ok(worst)
        } else {
            Err(reasons.join("; "))
        }
    }

    /// Whether the operator's word would let every copy of `group` be
    /// activated on `node` (their only obstacle is lag or a missing status).
    pub(super) fn waivable(&self, group: GroupIx, node: NodeIx) -> bool {
        self.model.groups[group]
            .copied
            .iter()
            .all(|&resource| self.copy_verdict(resource, node, true).is_ok())
    }

    /// Whether `resource` may be activated on `node` now (always, for a
    /// resource without copies).
    pub(super) fn activation_allowed(
        &self,
        resource: ResourceIx,
        node: NodeIx,
    ) -> Result<(), String> {
        if self.model.resources[resource].copies.is_none() {
            return Ok(());
        }
        let group = self.model.resources[resource].group;
        self.copy_verdict(resource, node, self.loss_waived(group, node))
            .map(|_| ())
    }

    /// The node a group with copies goes to, other than `exclude`: among
    /// its candidates that are up and where every copy may be activated,
    /// the one whose worst copy lags least, the placement order breaking
    /// ties.
    pub(super) fn best_copy_node(&self, group: GroupIx, exclude: Option<NodeIx>) -> Option<NodeIx> {
        let mut best: Option<(u64, NodeIx)> = None;
        for &node in &self.model.groups[group].candidates {
            if Some(node) == exclude || self.nodes[node].status != NodeStatus::Up {
                continue;
            }
            let Ok(lag) = self.group_copy_verdict(group, node) else {
                continue;
            };
            let rank = lag.unwrap_or(u64::MAX);
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, node));
            }
        }
        best.map(|(_, node)| node)
    }

    /// Why a group with copies cannot go anywhere but `exclude`, when some
    /// other candidate is up: each copy that may not be activated on a
    /// candidate that is up, and why. `None` when the group has no copies,
    /// no other candidate is up, or the copies are not what keeps it (then
    /// the usual reasons apply).
    pub(super) fn copies_blocking(
        &self,
        group: GroupIx,
        exclude: Option<NodeIx>,
    ) -> Option<String> {
        if !self.has_copies(group) {
            return None;
        }
        let up: Vec<NodeIx> = self.model.groups[group]
            .candidates
            .iter()
            .copied()
            .filter(|&node| Some(node) != exclude && self.nodes[node].status == NodeStatus::Up)
            .collect();
        if up.is_empty() {
            return None;
        }
        let word_helps = up.iter().any(|&node| self.waivable(group, node));
        let reasons: Vec<String> = up
            .into_iter()
            .filter_map(|node| self.group_copy_verdict(group, node).err())
            .collect();
        if reasons.is_empty() {
            // The copies are not what keeps it: the usual reasons apply.
            return None;
        }
        let resources: Vec<&str> = self.model.groups[group]
            .copied
            .iter()
            .map(|&resource| self.model.resources[resource].name.as_str())
            .collect();
        Some(format!(
            "no copy of {} may be activated{}: {}",
            resources.join(", "),
            if word_helps {
                " without the operator's word"
            } else {
                ""
            },
            reasons.join("; ")
        ))
    }

    /// For the event history, before `resource`'s copy on `node` is
    /// activated in place of the last active copy elsewhere: how far it was
    /// last known to lag behind that copy, that is, how many positions the
    /// deposed copy held that this one had not confirmed ([`Engine::copy_lag`]).
    /// In asynchronous replication those writes are lost with the old
    /// copy; so may be any it took after its last report. `None` for a
    /// first activation, or one on the node of the last.
    pub(super) fn activation_loss_text(
        &self,
        resource: ResourceIx,
        node: NodeIx,
    ) -> Option<String> {
        let set = &self.copies[resource];
        let previous = set.last_active.filter(|&last| last != node)?;
        let name = self.copy_name(resource, node);
        let previous = &self.model.nodes[previous];
        let next = set.generation + 1;
        let lag = self
            .copy_position(resource, node)
            .and_then(|position| self.copy_lag(resource, position))
            .filter(|&lag| lag != u64::MAX);
        Some(match lag {
            Some(lag) => format!(
                "activating the {name} with generation {next} in place of the copy on \
                 {previous}: last known lag {lag} (log positions the copy on {previous} held \
                 that it had not confirmed: lost with that copy, as are any writes it took after \
                 its last report)"
            ),
            None => format!(
                "activating the {name} with generation {next} in place of the copy on \
                 {previous}: its lag is unknown (no usable status of generation {}): whatever the copy \
                 on {previous} held beyond it is lost",
                set.generation
            ),
        })
    }

    /// For the event history: what the operator's word lets an activation
    /// of `group` on `node` lose, or that it needs none.
    pub(super) fn accepted_loss_text(&self, group: GroupIx, node: NodeIx) -> String {
        let reasons: Vec<String> = self.model.groups[group]
            .copied
            .iter()
            .filter_map(|&resource| self.copy_verdict(resource, node, false).err())
            .collect();
        if reasons.is_empty() {
            format!(
                "data loss accepted by the operator; none needed on {}",
                self.model.nodes[node]
            )
        } else {
            format!(
                "data loss accepted by the operator: activating on {} although {}",
                self.model.nodes[node],
                reasons.join("; ")
            )
        }
    }
}

/// The worse of two lags (an unknown lag is the worst).
fn rank_worse(a: Lag, b: Lag) -> Lag {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}
