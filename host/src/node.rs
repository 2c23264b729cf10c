//! The node: the group policy driving the resource monitor.
//!
//! `warden_policy::Engine` decides (pure: events and time in, actions out);
//! the [`Monitor`] does (calls into plugins). This module is the loop
//! between them: it turns every resource state change into a policy event,
//! carries out the actions that come back, sends the engine a `Tick` when
//! its next deadline (a restart delay, a retry period, a failback window)
//! comes, and records every decision in the event history.
//!
//! One task owns the engine, so decisions are made one at a time, in the
//! order the state changes happened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warden_policy::{Action, Engine, Event as PolicyEvent, Millis};

use crate::monitor::{Event, EventKind, Monitor, ResourceState, StateChange};

/// How long a shutdown waits for the groups to go offline in order before
/// the monitor takes what is left offline all at once.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// A request to the node.
#[derive(Debug)]
enum Command {
    GroupOnline(String),
    GroupOffline(String),
    WhatIf {
        event: PolicyEvent,
        reply: oneshot::Sender<Vec<Action>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A running node: the policy loop and the monitor it drives.
pub struct Node {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// The node's loop has stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the node has stopped")]
pub struct Stopped;

impl Node {
    /// Start the loop for node `name`. The node announces itself up; no
    /// group goes online until asked.
    pub fn start(name: &str, engine: Engine, mut monitor: Monitor) -> Node {
        let changes = match monitor.take_state_changes() {
            Some(changes) => changes,
            None => {
                // Only a monitor already driven by another node lacks them;
                // the agent builds one monitor per node.
                let (_, rx) = mpsc::unbounded_channel();
                rx
            }
        };
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            node: name.to_string(),
            engine,
            monitor,
            changes,
            commands: commands_rx,
        };
        Node {
            commands,
            task: tokio::spawn(driver.run()),
        }
    }

    fn send(&self, command: Command) -> Result<(), Stopped> {
        self.commands.send(command).map_err(|_| Stopped)
    }

    /// Ask for a group to come online (also clears its failure history).
    pub fn group_online(&self, group: &str) -> Result<(), Stopped> {
        self.send(Command::GroupOnline(group.to_string()))
    }

    /// Ask for a group to go offline, in reverse dependency order.
    pub fn group_offline(&self, group: &str) -> Result<(), Stopped> {
        self.send(Command::GroupOffline(group.to_string()))
    }

    /// What the policy would do on `event`, from the current state, without
    /// doing it.
    pub async fn what_if(&self, event: PolicyEvent) -> Result<Vec<Action>, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::WhatIf { event, reply })?;
        answer.await.map_err(|_| Stopped)
    }

    /// Take every group offline in dependency order, then stop.
    pub async fn shutdown(self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
        let _ = self.task.await;
    }
}

struct Driver {
    node: String,
    engine: Engine,
    monitor: Monitor,
    changes: mpsc::UnboundedReceiver<StateChange>,
    commands: mpsc::UnboundedReceiver<Command>,
}

/// Wall-clock milliseconds: the policy's failback windows are hours of the
/// day (UTC).
fn now() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

impl Driver {
    async fn run(mut self) {
        self.apply(PolicyEvent::NodeUp(self.node.clone()));
        let mut shutdown: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        loop {
            if let Some((_, started)) = &shutdown
                && (self.all_offline() || started.elapsed() > SHUTDOWN_LIMIT)
            {
                break;
            }
            let wait = self
                .engine
                .next_deadline()
                .map(|at| Duration::from_millis(at.0.saturating_sub(now().0)));
            tokio::select! {
                Some(change) = self.changes.recv() => self.on_change(change),
                command = self.commands.recv() => match command {
                    Some(Command::GroupOnline(group)) => {
                        self.apply(PolicyEvent::GroupOnlineRequested(group));
                    }
                    Some(Command::GroupOffline(group)) => {
                        self.apply(PolicyEvent::GroupOfflineRequested(group));
                    }
                    Some(Command::WhatIf { event, reply }) => {
                        let _ = reply.send(self.engine.what_if(event, now()));
                    }
                    Some(Command::Shutdown { reply }) => {
                        let groups: Vec<String> =
                            self.engine.groups().into_iter().map(|g| g.name).collect();
                        for group in groups {
                            self.apply(PolicyEvent::GroupOfflineRequested(group));
                        }
                        shutdown = Some((reply, tokio::time::Instant::now()));
                    }
                    None => break,
                },
                () = sleep_opt(wait) => self.apply(PolicyEvent::Tick),
                // Re-check the shutdown condition now and then.
                () = tokio::time::sleep(Duration::from_millis(200)), if shutdown.is_some() => {}
            }
        }
        self.monitor.shutdown().await;
        if let Some((reply, _)) = shutdown {
            let _ = reply.send(());
        }
    }

    fn all_offline(&self) -> bool {
        self.engine.resource_states().all(|(_, state, _)| {
            !matches!(
                state,
                warden_policy::ResourceState::Online
                    | warden_policy::ResourceState::OnlinePending
                    | warden_policy::ResourceState::OfflinePending
            )
        })
    }

    fn on_change(&mut self, change: StateChange) {
        let resource = change.resource;
        let node = self.node.clone();
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
        self.apply(event);
    }

    fn apply(&mut self, event: PolicyEvent) {
        for action in self.engine.handle(event, now()) {
            self.execute(action);
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::BringOnline { resource, node } => {
                self.on_resource(&resource, &node, |h| h.online());
            }
            Action::TakeOffline { resource, node } => {
                self.on_resource(&resource, &node, |h| h.offline());
            }
            Action::Terminate { resource, node } => {
                // The monitor terminates every resource as it fails; only one
                // still running needs it.
                self.on_resource(&resource, &node, |h| {
                    if matches!(
                        h.status().state,
                        ResourceState::Online
                            | ResourceState::OnlinePending
                            | ResourceState::OfflinePending
                    ) {
                        h.terminate()
                    } else {
                        Ok(())
                    }
                });
            }
            Action::Placed { group, node } => {
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
        }
    }

    /// Carry out a request for a resource on this node.
    fn on_resource(
        &self,
        resource: &str,
        node: &str,
        act: impl FnOnce(&crate::monitor::ResourceHandle) -> Result<(), crate::monitor::Gone>,
    ) {
        if node != self.node {
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

    fn record(&self, subject: &str, action: &str, reason: String) {
        self.monitor.publish(Event::now(
            subject,
            EventKind::Policy {
                action: action.to_string(),
                reason,
            },
        ));
    }
}

async fn sleep_opt(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}
