//! The engine: the state of every node, group and resource, and the rules that
//! turn events into actions.
//!
//! Every event is handled in two steps. `apply` (`apply.rs`, with what a
//! failure leads to in `failure.rs`) records what the event says (a resource
//! is online, a node is gone) and takes the decisions that only that event can
//! trigger (count a failure, pick a failover target). Then `reconcile`
//! (`reconcile.rs`) compares, group by group, what is with what is wanted and
//! emits the requests that move one towards the other: dependency order on the
//! way up, reverse order on the way down, a change of owner once a group is
//! entirely offline. Only the groups an event can affect are reconciled (the
//! ones it touched, the groups sharing a cluster singleton with a resource
//! that started or stopped being active, the ones whose deadline has come:
//! `reconcile.rs`), and the deadlines are an index (`deadlines.rs`), so an
//! event costs what it touches, not the size of the cluster. Because all follow-up work is derived from state rather
//! than remembered as a to-do list, a lost branch of logic cannot leave a
//! group stuck, and what-if is just a clone.
//!
//! Where a group may go is in `placement.rs`, configuration changes in
//! `reconfigure.rs`, the state as data and back in `snapshot.rs`, the
//! read-only views in `views.rs`, and the states and records themselves in
//! `state.rs`.

mod affected;
mod apply;
mod copies;
mod copy_choice;
mod deadlines;
mod failure;
mod placement;
mod reconcile;
mod reconfigure;
mod snapshot;
mod state;
mod views;

pub use snapshot::{EngineSnapshot, OLDEST_SNAPSHOT_FORMAT, RestoreError, SNAPSHOT_FORMAT};
pub use state::{CopyState, GroupState, NodeStatus, ResourceState};
pub use views::{CopiesView, CopyView, GroupView, NodeView, ResourceView};

use crate::config::{ClusterConfig, ConfigError};
use crate::event::{Action, Event};
use crate::index::{GroupIx, NodeIx, ResourceIx, Table};
use crate::model::{Model, compile};
use crate::time::Millis;
use deadlines::Deadlines;
use state::{CopySet, GroupRecord, NodeRecord, Recovery, ResourceRecord};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The group policy engine. Cheap to clone (the configuration is shared), which
/// is how [`Engine::what_if`] works.
#[derive(Clone, Debug)]
pub struct Engine {
    model: Arc<Model>,
    nodes: Table<NodeIx, NodeRecord>,
    groups: Table<GroupIx, GroupRecord>,
    resources: Table<ResourceIx, ResourceRecord>,
    /// The copies of each resource (empty for a resource without copies):
    /// kept apart from the resource's record, which a new placement resets.
    copies: Table<ResourceIx, CopySet>,
    now: Millis,
    /// Each group's next deadline, sorted (kept only when not `full`).
    deadlines: Deadlines,
    /// The reference behaviour, for tests only: every event reconciles every
    /// group and `next_deadline` scans them all
    /// ([`Engine::reconciling_everything`]).
    full: bool,
}

impl Engine {
    /// Validates `config` and starts with every node Down and every group
    /// Offline.
    pub fn new(config: ClusterConfig) -> Result<Engine, ConfigError> {
        let model = compile(&config)?;
        Ok(Engine {
            nodes: Table::filled(NodeRecord::new(), model.nodes.len()),
            groups: Table::filled(GroupRecord::new(), model.groups.len()),
            resources: Table::filled(ResourceRecord::new(), model.resources.len()),
            copies: new_copy_sets(&model),
            deadlines: Deadlines::new(model.groups.len()),
            model: Arc::new(model),
            now: Millis::ZERO,
            full: false,
        })
    }

    /// This engine, made to reconcile every group on every event and to scan
    /// every group for the next deadline, as it did before it reconciled only
    /// what an event touches. For tests, which run both side by side and
    /// require the same actions and deadlines; call it on a new or restored
    /// engine.
    #[doc(hidden)]
    pub fn reconciling_everything(mut self) -> Engine {
        self.full = true;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.model.config
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
        if self.full {
            self.apply(event, &mut out);
            self.reconcile_all(&mut out);
            return out;
        }
        let touched = self.touched_by(&event);
        let active_before = self.singleton_activity(&touched);
        self.apply(event, &mut out);
        let mut dirty: BTreeSet<GroupIx> = touched.iter().copied().collect();
        self.singleton_changes(&active_before, &mut dirty);
        dirty.extend(self.deadlines.take_due(self.now));
        self.reconcile_groups(dirty, &mut out);
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
        if self.full {
            return self
                .groups
                .indices()
                .filter_map(|group| self.group_deadline(group))
                .min();
        }
        self.deadlines.first()
    }

    // ----- helpers ---------------------------------------------------------

    /// Nothing in flight: no request unanswered, no restart waiting.
    fn settled(&self, group: GroupIx) -> bool {
        self.model.groups[group].resources.iter().all(|&resource| {
            let record = &self.resources[resource];
            !matches!(
                record.state,
                ResourceState::OnlinePending | ResourceState::OfflinePending
            ) && !matches!(record.recovery, Recovery::RestartAt(_))
        })
    }

    /// Every resource of the group is Offline or Failed.
    fn all_down(&self, group: GroupIx) -> bool {
        self.model.groups[group]
            .resources
            .iter()
            .all(|&resource| !self.resources[resource].state.is_active())
    }

    fn any_dependent_active(&self, resource: ResourceIx) -> bool {
        self.model.resources[resource]
            .dependents
            .iter()
            .any(|&dependent| self.resources[dependent].state.is_active())
    }

    fn group_name(&self, group: GroupIx) -> String {
        self.model.groups[group].name.clone()
    }

    fn resource_name(&self, resource: ResourceIx) -> String {
        self.model.resources[resource].name.clone()
    }

    fn node_name(&self, node: NodeIx) -> String {
        self.model.nodes[node].clone()
    }

    fn decision(out: &mut Vec<Action>, subject: String, reason: String) {
        out.push(Action::Decision { subject, reason });
    }
}

/// A copy set per resource of `model`, none started, never activated.
fn new_copy_sets(model: &Model) -> Table<ResourceIx, CopySet> {
    model
        .resources
        .iter()
        .map(|resource| CopySet::new(resource.copies.as_ref().map_or(0, |c| c.nodes.len())))
        .collect()
}
