//! What a failure leads to: a restart, a resource left failed, a failover, or
//! a group left failed.

use super::Engine;
use super::state::{Goal, Recovery, ResourceState, times};
use crate::config::{RestartAction, RestartWait};
use crate::event::{Action, MoveKind};
use crate::index::{GroupIx, NodeIx, ResourceIx};
use crate::time::Millis;

impl Engine {
    /// A resource that was online or pending online failed on `node`:
    /// restart it, leave it failed, or fail the group over.
    pub(super) fn resource_failed(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let record = &mut self.resources[resource];
        record.state = ResourceState::Failed;
        record.failed_reason = Some(reason.to_string());
        record.refused = false;
        record.recovery = Recovery::None;
        let group = self.model.resources[resource].group;
        if self.groups[group].goal != Goal::Online {
            let why = format!(
                "failed ({reason}); not restarted: {} is going offline",
                self.model.groups[group].name
            );
            return Self::decision(out, self.resource_name(resource), why);
        }
        if let Some(why) = self.restart_ruled_out(resource, node, reason) {
            let retry_period = self.model.resources[resource].restart.retry_period;
            self.resources[resource].recovery = Recovery::RetryAt(self.now + retry_period);
            return out.push(Action::ResourceFailedPermanently {
                resource: self.resource_name(resource),
                reason: why,
            });
        }
        self.count_failure(resource, node, reason, out);
    }

    /// Why a failed `resource` is not restarted at all (it stays failed for
    /// its retry period), if it is not: recovery actions are disabled on
    /// `node`, or its restart action is do-not-restart.
    fn restart_ruled_out(
        &self,
        resource: ResourceIx,
        node: NodeIx,
        reason: &str,
    ) -> Option<String> {
        if !self.nodes[node].recovery {
            return Some(format!(
                "failed ({reason}); recovery actions are disabled on {}: stays failed",
                self.model.nodes[node]
            ));
        }
        let policy = self.model.resources[resource].restart;
        (policy.action == RestartAction::DoNotRestart).then(|| {
            format!(
                "failed ({reason}); restart action is do-not-restart: retry in {}",
                policy.retry_period
            )
        })
    }

    /// Counts a failure of a resource that may be restarted against its
    /// restart threshold: below it the resource is restarted, at it the
    /// resource stays failed or its group fails over, as its policy says.
    fn count_failure(
        &mut self,
        resource: ResourceIx,
        node: NodeIx,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let resource_model = &self.model.resources[resource];
        let group = resource_model.group;
        let name = resource_model.name.clone();
        let policy = resource_model.restart;
        let now = self.now;
        let record = &mut self.resources[resource];
        record
            .failures
            .retain(|t| now.saturating_sub(*t) < policy.period);
        record.failures.push(now);
        let count = record.failures.len();
        let (threshold, period) = (policy.threshold, policy.period);
        // The failure that reaches the threshold is final (the seeds: "has
        // failed 3 times within 900 seconds" takes the group offline; the
        // resource monitor "tries to restart the resource two additional
        // times"). The failures before it are restarted.
        // The wait grows with the failures still in the period (the
        // back-off) and shrinks again as they age out: the first failure
        // after a quiet period waits only for the delay (none by default).
        if (count as u64) < u64::from(threshold) {
            let RestartWait { wait, backoff } = policy.wait_after(count);
            record.recovery = Recovery::RestartAt(now + wait);
            let after = match (wait > Millis::ZERO, backoff) {
                (false, _) => String::new(),
                (true, false) => format!(" after {wait}"),
                (true, true) => format!(" after {wait} (back-off)"),
            };
            let why = format!(
                "failed ({reason}): failure {count} of {threshold} within {period}, restarting{after}"
            );
            return Self::decision(out, name, why);
        }
        if policy.action == RestartAction::RestartNoAffectGroup {
            record.recovery = Recovery::RetryAt(now + policy.retry_period);
            let why = format!(
                "failed ({reason}) {} within {period}, threshold {threshold} reached; does not affect the group: stays failed, retry in {}",
                times(count),
                policy.retry_period
            );
            return out.push(Action::ResourceFailedPermanently {
                resource: name,
                reason: why,
            });
        }
        let why = format!(
            "failed ({reason}) {} within {period}, threshold {threshold} reached: failing group {} over",
            times(count),
            self.model.groups[group].name
        );
        Self::decision(out, name.clone(), why);
        let cause = format!("{name} failed {} within {period}", times(count));
        self.failover(group, node, cause, true, out);
    }

    /// Decides an unplanned failover of `group` away from `from`. When no other
    /// owner is up the group is left Failed; if a resource failing on `from`
    /// caused it (`avoid_from`), only another node or the retry period brings
    /// it back there, while a group whose node died takes the first node that
    /// comes up, that one included.
    pub(super) fn failover(
        &mut self,
        group: GroupIx,
        from: NodeIx,
        cause: String,
        avoid_from: bool,
        out: &mut Vec<Action>,
    ) {
        let group_model = &self.model.groups[group];
        let (threshold, period) = (group_model.failover_threshold, group_model.failover_period);
        let retry = group_model.retry_period;
        let now = self.now;
        let record = &mut self.groups[group];
        record.failovers.retain(|t| now.saturating_sub(*t) < period);
        let done = record.failovers.len();
        if done as u64 >= u64::from(threshold) {
            let reason = format!(
                "failover threshold passed: {done} failovers within {period} (threshold {threshold}); {cause}"
            );
            return self.fail_group(group, reason, None, None, out);
        }
        let Some(to) = self.failover_target(group, from) else {
            let subject = self.group_name(group);
            Self::decision(out, subject, format!("{cause}: cannot fail over"));
            let reason = self
                .copies_blocking(group, Some(from))
                .unwrap_or_else(|| "no other possible owner is up".to_string());
            let avoid = if avoid_from { Some(from) } else { None };
            return self.fail_group(group, reason, Some(now + retry), avoid, out);
        };
        let record = &mut self.groups[group];
        record.failovers.push(now);
        record.goal = Goal::Moving {
            to,
            kind: MoveKind::Failover,
        };
        out.push(Action::MoveGroup {
            group: self.group_name(group),
            from: Some(self.node_name(from)),
            to: self.node_name(to),
            kind: MoveKind::Failover,
            reason: format!(
                "{cause}; failover {} of {threshold} within {period}",
                done + 1
            ),
        });
    }

    /// Leaves `group` Failed: everything goes offline and stays so, until
    /// `retry_at` if given (or earlier on a node other than `avoid`).
    pub(super) fn fail_group(
        &mut self,
        group: GroupIx,
        reason: String,
        retry_at: Option<Millis>,
        avoid: Option<NodeIx>,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::GroupFailed {
            group: self.group_name(group),
            reason: reason.clone(),
        });
        let record = &mut self.groups[group];
        record.goal = Goal::Failed {
            reason,
            retry_at,
            avoid,
        };
        record.failed_over = false;
        record.loss_accepted = None;
        for &resource in &self.model.groups[group].resources {
            self.resources[resource].recovery = Recovery::None;
        }
    }
}
