//! The node's loop: one task that owns the engine, the monitor, the
//! configuration and the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};
use warden_policy::{Action, Engine, Event as PolicyEvent, Millis};

use crate::components::{
    Component, ComponentStates, Consequence, Requester, State as ComponentState,
};
use crate::contract::CopySource;
use crate::desired::Desired;
use crate::monitor::{
    CopyAnswer, CopyCommand, CopyReport, Event, EventKind, Monitor, Report, ResourceHandle,
    ResourceState, StateChange,
};
use crate::plugin_versions;
use crate::runtime::Plugin;
use crate::store::Store;

use super::config_change::{Checked, unavailable_type};
use super::operate::Operated;
use super::sequencing::{Sequencing, link_message};
use super::versions::AfterSwap;
use super::{Change, Command, NodeSettings, SHUTDOWN_LIMIT, conflict, not_found, unavailable};

pub(super) struct Driver {
    pub(super) settings: NodeSettings,
    pub(super) engine: Engine,
    pub(super) monitor: Monitor,
    pub(super) desired: Desired,
    pub(super) components: ComponentStates,
    /// Versions of each type replaced by a swap, oldest first.
    pub(super) previous: BTreeMap<String, Vec<Arc<Plugin>>>,
    /// Types that plugins-directory upgrades may not swap.
    pub(super) pinned: std::collections::BTreeSet<String>,
    pub(super) store: Store,
    pub(super) changes: mpsc::UnboundedReceiver<Report>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    /// The loop's own command channel, for the swaps it runs off the loop
    /// to report back on (weak: the loop ends once every `Node` is gone).
    pub(super) myself: mpsc::WeakUnboundedSender<Command>,
    /// Types with a swap under way: their resources are being moved, so
    /// another swap or a new resource of the type waits until it ends.
    pub(super) swapping: std::collections::BTreeSet<String>,
    /// Alone or one of a cluster: where the engine's events go and which
    /// decisions this node carries out (`sequencing.rs`).
    pub(super) sequencing: Sequencing,
    /// In a cluster, while a configuration change is on its way through
    /// the log: the changes that came meanwhile, each checked only once the
    /// one before it is in force here (so one cannot undo another).
    pub(super) through_log: Option<std::collections::VecDeque<QueuedChange>>,
}

/// A configuration change waiting for the one ahead of it.
pub(super) struct QueuedChange {
    pub(super) change: Change,
    pub(super) checked: Option<Checked>,
    pub(super) reply: oneshot::Sender<Result<String>>,
}

/// A decision of the node's, for the event history.
pub(super) fn policy_event(subject: &str, action: &str, reason: String) -> Event {
    Event::now(
        subject,
        EventKind::Policy {
            action: action.to_string(),
            reason,
        },
    )
}

/// Wall-clock milliseconds: the policy's failback windows are hours of the
/// day (UTC).
pub(super) fn now() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// How often a shutting-down node asks whether every resource is offline.
const ALL_OFFLINE_EVERY: Duration = Duration::from_millis(10);

impl Driver {
    pub(super) async fn run(mut self) {
        if self.sequencing.cluster().is_none() {
            // In a cluster, joining appended this node's NodeUp already.
            self.apply(PolicyEvent::NodeUp(self.settings.name.clone()));
        }
        // The component states kept in the store hold across restarts.
        if !self.components.node_in_service() {
            self.carry_out(Consequence::DrainNode);
        }
        if !self.components.recovery_actions_enabled() {
            self.carry_out(Consequence::RecoveryActions(false));
        }
        if !self.components.monitoring_enabled() {
            self.carry_out(Consequence::Monitoring(false));
        }
        let mut shutdown: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        // When shutting down, whether everything is offline is asked at
        // most every ALL_OFFLINE_EVERY: it walks every resource, and asked
        // after each of the N offline changes it made the shutdown
        // quadratic (13 s at 18 000 resources).
        let mut asked_offline: Option<tokio::time::Instant> = None;
        loop {
            if let Some((_, started)) = &shutdown
                && asked_offline.is_none_or(|at| at.elapsed() >= ALL_OFFLINE_EVERY)
            {
                asked_offline = Some(tokio::time::Instant::now());
                if self.all_offline() || started.elapsed() > SHUTDOWN_LIMIT {
                    break;
                }
            }
            let wait = self
                .sequencing
                .wait_for(
                    self.engine.next_deadline(),
                    &self.settings.name,
                    &self.engine,
                )
                .map(|at| Duration::from_millis(at.0.saturating_sub(now().0)));
            tokio::select! {
                Some(report) = self.changes.recv() => match report {
                    Report::State(change) => self.on_change(change),
                    Report::Copy(report) => self.on_copy_report(report),
                },
                Some(message) = link_message(&mut self.sequencing) => self.on_link(message),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        // Once nothing runs here (or the limit passes), the
                        // loop ends and the monitor takes what is left
                        // offline.
                        for event in self.sequencing.to_stop(&self.settings.name, &self.engine) {
                            self.apply(event);
                        }
                        self.cancel_pending_onlines();
                        shutdown = Some((reply, tokio::time::Instant::now()));
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                () = sleep_opt(wait) => self.on_deadline(),
                // Re-check the shutdown condition now and then.
                () = tokio::time::sleep(ALL_OFFLINE_EVERY), if shutdown.is_some() => {}
            }
        }
        if let Some((_, started)) = &shutdown {
            tracing::info!(
                "groups offline after {:?}; closing the resources",
                started.elapsed()
            );
        }
        self.monitor.shutdown().await;
        if let Some((_, started)) = &shutdown {
            tracing::info!("resources closed after {:?}", started.elapsed());
        }
        if let Some(link) = self.sequencing.link() {
            link.leave().await;
        }
        if let Some((reply, _)) = shutdown {
            let _ = reply.send(());
        }
    }

    /// Carry out one request of the API or of a task the loop started.
    ///
    /// Long on purpose: one arm per [`Command`], each handing the request
    /// to the function that does it (and the reply to it) without
    /// waiting; one match is where a reader finds what the loop does with
    /// each request, and that it never waits on a plugin, an actor or etcd.
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Change { change, reply } => {
                if let Some((change, reply)) = self.check_off_loop(change, reply) {
                    self.change_in_turn(change, None, reply);
                }
            }
            Command::Checked {
                change,
                checked,
                reply,
            } => self.change_in_turn(change, Some(*checked), reply),
            Command::LogChangeSettled => {
                let waiting = self.through_log.take().unwrap_or_default();
                for queued in waiting {
                    self.change_in_turn(queued.change, queued.checked, queued.reply);
                }
            }
            Command::Operate { operation, reply } => match self.operate(operation) {
                Ok(Operated::Done(done)) => {
                    let _ = reply.send(Ok(done));
                }
                Ok(Operated::ToLog { link, event, done }) => {
                    // Answered once the entry is in the log, so that an
                    // acknowledged request outlives this node; the loop
                    // does not wait for etcd meanwhile.
                    tokio::spawn(async move {
                        let answer = match link.request(event).await {
                            Ok(seq) => Ok(format!("{done} (entry {seq} of the cluster's log)")),
                            Err(err) => Err(unavailable(format!(
                                "{done}: not taken, the cluster's log did not accept it: {err:#}"
                            ))),
                        };
                        let _ = reply.send(answer);
                    });
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Desired { reply } => {
                let _ = reply.send(self.desired.clone());
            }
            Command::WhatIf { event, reply } => {
                let _ = reply.send(self.engine.what_if(event, now()));
            }
            Command::Handle { resource, reply } => {
                let _ = reply.send(self.monitor.get(&resource).cloned());
            }
            Command::Install { plugin, reply } => {
                let name = plugin.name().to_string();
                if self.pinned.contains(&name) {
                    let version = plugin.info().version.clone();
                    let reason = format!("type {name} is pinned; unpin it to upgrade");
                    self.plugin_event(&name, "rejected", &version, Some(reason.clone()));
                    let _ = reply.send(Err(conflict(reason)));
                } else {
                    self.install(plugin, AfterSwap::Answer, reply);
                }
            }
            Command::Swapped {
                plugin,
                old,
                outcome,
                then,
                reply,
            } => self.on_swapped(plugin, old, outcome, then, reply),
            Command::Plugins { reply } => {
                let _ = reply.send(self.settings.plugins.values().cloned().collect());
            }
            Command::Pinned { reply } => {
                let _ = reply.send(self.pinned.clone());
            }
            Command::Versions { type_name, reply } => {
                let _ = reply.send(self.versions(&type_name));
            }
            Command::Rollback { type_name, reply } => {
                match self
                    .previous
                    .get(&type_name)
                    .and_then(|v| v.last())
                    .cloned()
                {
                    Some(previous) => self.install(previous, AfterSwap::Answer, reply),
                    None => {
                        let _ = reply.send(Err(not_found(format!(
                            "type {type_name:?} has no earlier version loaded"
                        ))));
                    }
                }
            }
            Command::Pin {
                type_name,
                version,
                reply,
            } => self.pin(type_name, version, reply),
            Command::Unpin { type_name, reply } => {
                let result = if self.pinned.contains(&type_name) {
                    plugin_versions::save_pin(&self.store, &type_name, None).map(|()| {
                        self.pinned.remove(&type_name);
                        format!("type {type_name} unpinned")
                    })
                } else {
                    Err(not_found(format!("type {type_name:?} is not pinned")))
                };
                let _ = reply.send(result);
            }
            Command::Record(event) => self.monitor.publish(event),
            Command::SetComponent {
                component,
                requester,
                state,
                reply,
            } => {
                let _ = reply.send(self.set_component(component, requester, state));
            }
            Command::Components { reply } => {
                let types: Vec<&str> = self.settings.plugins.keys().map(String::as_str).collect();
                let _ = reply.send(self.components.list_with_types(types));
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Cut off every online in flight: the node is stopping, so nothing
    /// needs to come online any more, and an online that has no deadline
    /// (a type that declared none) would otherwise hold the shutdown.
    pub(super) fn cancel_pending_onlines(&self) {
        for handle in self.monitor.resources() {
            if handle.status().state == ResourceState::OnlinePending {
                tracing::info!(resource = handle.name(), "stopping: cancelling its online");
                handle.cancel_pending();
            }
        }
    }

    pub(super) fn set_component(
        &mut self,
        component: Component,
        requester: Requester,
        state: ComponentState,
    ) -> Result<String> {
        let mut next = self.components.clone();
        let change = next.set(component.clone(), requester, state, now().0);
        self.store.save_components(&next)?;
        self.components = next;
        let done = format!(
            "{component}: {requester} set {state}; effective {} (was {})",
            change.after, change.before
        );
        self.record(&component.to_string(), "component", done.clone());
        if let Some(consequence) = change.consequence() {
            self.carry_out(consequence);
        }
        Ok(done)
    }

    /// Do what a component's change of availability means.
    pub(super) fn carry_out(&mut self, consequence: Consequence) {
        let me = self.settings.name.clone();
        match consequence {
            Consequence::DrainNode => self.apply(PolicyEvent::NodeDraining(me)),
            Consequence::ResumeNode => self.apply(PolicyEvent::NodeResumed(me)),
            Consequence::RecoveryActions(enabled) => {
                self.apply(PolicyEvent::RecoveryActions { node: me, enabled })
            }
            Consequence::Monitoring(enabled) => {
                for handle in self.monitor.resources() {
                    let _ = handle.set_monitoring(enabled);
                }
            }
            Consequence::TypeAvailability {
                type_name,
                available,
            } => {
                // The groups that hold a resource of the type go offline
                // while it is unavailable, and come back (if wanted online)
                // when it is available again.
                let groups: std::collections::BTreeSet<String> = self
                    .desired
                    .resources
                    .iter()
                    .filter(|r| r.type_name == type_name)
                    .map(|r| r.group_name().to_string())
                    .collect();
                for group in groups {
                    if !available {
                        self.apply(PolicyEvent::GroupOfflineRequested(group));
                    } else if self.desired.online.contains(&group)
                        && unavailable_type(&self.desired, &self.components, &group).is_none()
                    {
                        self.apply(PolicyEvent::GroupOnlineRequested(group));
                    }
                }
            }
        }
    }

    pub(super) fn plugin_event(
        &self,
        subject: &str,
        action: &str,
        version: &str,
        reason: Option<String>,
    ) {
        match &reason {
            Some(reason) => tracing::info!(plugin = subject, version, "{action}: {reason}"),
            None => tracing::info!(plugin = subject, version, "{action}"),
        }
        self.monitor.publish(Event::now(
            subject,
            EventKind::Plugin {
                action: action.to_string(),
                version: Some(version.to_string()),
                reason,
            },
        ));
    }

    /// Nothing runs (or is on its way up or down) that shutdown waits for.
    pub(super) fn all_offline(&self) -> bool {
        match self.sequencing.cluster() {
            Some(cluster) => cluster.stopped_here(&self.settings.name, &self.engine, &self.monitor),
            None => self
                .engine
                .resource_states()
                .all(|(_, state, _)| !state.is_active()),
        }
    }

    pub(super) fn on_change(&mut self, change: StateChange) {
        let resource = change.resource;
        let node = self.settings.name.clone();
        let event = match change.state {
            ResourceState::Online => PolicyEvent::ResourceOnline { resource, node },
            ResourceState::Offline => PolicyEvent::ResourceOffline { resource, node },
            ResourceState::Failed => PolicyEvent::ResourceFailed {
                resource,
                node,
                reason: change.reason.unwrap_or_else(|| "failed".to_string()),
            },
            ResourceState::OnlinePending | ResourceState::OfflinePending => return,
        };
        if !self.sequencing.reports() {
            // Fenced or not yet joined: what runs here is not the cluster's.
            tracing::debug!("not reported to the cluster: {event:?}");
            return;
        }
        self.apply(event);
    }

    /// Hand an event to the engine: at once on a single node, through the
    /// log (and back, in order, to every node) in a cluster.
    pub(super) fn apply(&mut self, event: PolicyEvent) {
        if let Some((event, at)) = self.sequencing.sequence(event) {
            for action in self.engine.handle(event, at) {
                self.execute(action);
            }
        }
    }

    /// The engine's next deadline came. In a cluster, time passes in the log
    /// too: one `Tick` is appended per deadline, by the timekeeper (or, if
    /// its `Tick` is late, by the node that sees that; the engine takes a
    /// second one as a no-op).
    pub(super) fn on_deadline(&mut self) {
        let deadline = self.engine.next_deadline();
        if let Some(tick) = self.sequencing.deadline(deadline) {
            self.apply(tick);
        }
    }

    pub(super) fn execute(&mut self, action: Action) {
        match action {
            Action::BringOnline { resource, node } => {
                if node == self.settings.name {
                    let group = self
                        .engine
                        .resource(&resource)
                        .map(|r| r.group)
                        .unwrap_or_default();
                    if !self.sequencing.may_bring_online(&group, &resource, None) {
                        return;
                    }
                }
                self.on_resource(&resource, &node, |h| h.online());
            }
            Action::TakeOffline { resource, node } => {
                self.on_resource(&resource, &node, |h| h.offline());
            }
            Action::Terminate { resource, node } => {
                // The monitor terminates every resource as it fails; only one
                // still running needs it.
                self.on_resource(&resource, &node, |h| {
                    if h.status().state.is_active() {
                        h.terminate()
                    } else {
                        Ok(())
                    }
                });
            }
            Action::Placed { group, node } => {
                let here = node == self.settings.name;
                self.sequencing.placed(&group, here);
                self.record(&group, "placed", format!("{group} belongs to {node}"));
            }
            Action::MoveGroup {
                group,
                from,
                to,
                kind,
                reason,
            } => {
                let from = from.as_deref().unwrap_or("nowhere");
                self.record(&group, "move", format!("{kind} {from} -> {to}: {reason}"));
            }
            Action::GroupFailed { group, reason } => {
                tracing::warn!(group = %group, "group Failed: {reason}");
                self.record(&group, "group-failed", reason);
            }
            Action::ResourceFailedPermanently { resource, reason } => {
                tracing::warn!(resource = %resource, "stays Failed: {reason}");
                self.record(&resource, "resource-failed", reason);
            }
            Action::Refused { what, reason } => {
                tracing::warn!("refused {what}: {reason}");
                self.record(&what, "refused", reason);
            }
            Action::Decision { subject, reason } => {
                tracing::info!(subject = %subject, "{reason}");
                self.record(&subject, "decision", reason);
            }
            Action::Ignored { what, reason } => {
                tracing::debug!("ignored {what}: {reason}");
            }
            Action::StartPassiveCopy {
                resource,
                node,
                source,
            } => {
                // The passive copy follows the resource's newest log: the
                // generation of its last activation.
                let generation = self.engine.copies(&resource).map_or(0, |c| c.generation);
                let following = source
                    .as_deref()
                    .unwrap_or("no active copy yet")
                    .to_string();
                self.copy_action(
                    &resource,
                    &node,
                    format!("start-passive following {following} (generation {generation})"),
                    CopyCommand::StartPassive(CopySource {
                        node: source,
                        generation,
                    }),
                );
            }
            Action::StopPassiveCopy { resource, node } => {
                self.copy_action(
                    &resource,
                    &node,
                    "stop-passive".to_string(),
                    CopyCommand::StopPassive,
                );
            }
            Action::ActivateCopy {
                resource,
                node,
                generation,
            } => {
                if node == self.settings.name {
                    let group = self
                        .engine
                        .resource(&resource)
                        .map(|r| r.group)
                        .unwrap_or_default();
                    if !self
                        .sequencing
                        .may_bring_online(&group, &resource, Some(generation))
                    {
                        self.record(
                            &resource,
                            "copy",
                            format!(
                                "activate with generation {generation}: waits for {group}'s \
                                 ownership key"
                            ),
                        );
                        return;
                    }
                }
                self.copy_action(
                    &resource,
                    &node,
                    format!("activate with generation {generation}"),
                    CopyCommand::Activate(generation),
                );
            }
            Action::DeactivateCopy { resource, node } => {
                // A planned step-down at the copy's own generation: the
                // next activation, here or elsewhere, takes a newer one (a
                // newer generation passed here would make that activation,
                // on this node, look stale to the copy).
                let generation = self.engine.copies(&resource).map_or(0, |c| c.generation);
                self.copy_action(
                    &resource,
                    &node,
                    format!("deactivate at generation {generation}"),
                    CopyCommand::Deactivate(generation),
                );
            }
        }
    }

    /// Carry out a copy action if it is this node's, recording it in the
    /// event history.
    fn copy_action(&self, resource: &str, node: &str, what: String, command: CopyCommand) {
        if node != self.settings.name {
            return;
        }
        tracing::info!(resource, "copy: {what}");
        self.record(resource, "copy", what);
        self.on_resource(resource, node, |h| h.copy(command));
    }

    /// A copy's answer, for the engine: what the policy's copy events say.
    pub(super) fn on_copy_report(&mut self, report: CopyReport) {
        let CopyReport { resource, answer } = report;
        let node = self.settings.name.clone();
        let event = match answer {
            CopyAnswer::PassiveStarted => PolicyEvent::PassiveCopyStarted { resource, node },
            CopyAnswer::PassiveStopped => PolicyEvent::PassiveCopyStopped { resource, node },
            CopyAnswer::Activated => PolicyEvent::CopyActivated { resource, node },
            CopyAnswer::Deactivated => PolicyEvent::CopyDeactivated { resource, node },
            CopyAnswer::Failed(reason) => PolicyEvent::CopyFailed {
                resource,
                node,
                reason,
            },
            CopyAnswer::Status(reading) => PolicyEvent::CopyStatusReported {
                resource,
                node,
                status: warden_policy::CopyStatus {
                    generation: reading.generation,
                    copied: reading.copied,
                    replayed: reading.replayed,
                    lag: reading.lag,
                    health: match (reading.unhealthy, reading.refusing, reading.diverged) {
                        (Some(reason), _, true) => warden_policy::CopyHealth::Diverged(reason),
                        (Some(reason), _, false) => warden_policy::CopyHealth::Failed(reason),
                        (None, Some(reason), _) => warden_policy::CopyHealth::Refusing(reason),
                        (None, None, _) => warden_policy::CopyHealth::Healthy,
                    },
                },
            },
        };
        if !self.sequencing.reports() {
            tracing::debug!("not reported to the cluster: {event:?}");
            return;
        }
        self.apply(event);
    }

    /// Carry out a request for a resource on this node.
    pub(super) fn on_resource(
        &self,
        resource: &str,
        node: &str,
        act: impl FnOnce(&ResourceHandle) -> Result<(), crate::monitor::Gone>,
    ) {
        if node != self.settings.name {
            // Another node's request: carried out there (multi-node
            // transport is its own layer).
            return;
        }
        match self.monitor.get(resource) {
            Some(handle) => {
                if let Err(err) = act(handle) {
                    tracing::error!("{err}");
                }
            }
            None => tracing::error!(
                resource,
                "the policy named a resource the monitor does not run"
            ),
        }
    }

    pub(super) fn record(&self, subject: &str, action: &str, reason: String) {
        self.monitor.publish(policy_event(subject, action, reason));
    }
}

pub(super) async fn sleep_opt(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}
