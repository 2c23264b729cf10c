//! The node: the group policy driving the resource monitor, and the one
//! place where the node's configuration changes.
//!
//! `warden_policy::Engine` decides (pure: events and time in, actions out);
//! the [`Monitor`] does (calls into plugins). This module is the loop
//! between them: it turns every resource state change into a policy event,
//! carries out the actions that come back, sends the engine a `Tick` when
//! its next deadline (a restart delay, a retry period, a failback window)
//! comes, and records every decision in the event history.
//!
//! One task owns the engine, the monitor, the desired configuration and the
//! store, so decisions and changes happen one at a time, in order. A
//! configuration change is checked by the engine, written to the store, and
//! only then applied; a change that fails any step leaves nothing behind.
//! That task never waits on a plugin, an actor or etcd: what would (a
//! validation, a swap, a removal, an append to the cluster's log) runs in a
//! task of its own that answers the operator or reports back.
//!
//! Where to read:
//! - `driver.rs`: the loop, and how a decision is carried out;
//! - `sequencing.rs`: the one seam between a node alone and a node of a
//!   cluster (where an event goes, whether this node may act);
//! - `cluster.rs`: the cluster's log applied in order, ownership, fencing;
//! - `config_change.rs`: groups and resources added, changed, removed;
//! - `operate.rs`: online, offline, move, pause, drain;
//! - `versions.rs`: install, hot swap, roll back, pin;
//! - `status.rs`: the operator's view.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warden_policy::{Action, Engine, Event as PolicyEvent};

use crate::cluster::Joined;
use crate::components::{Component, ComponentView, Requester, State as ComponentState};
use crate::config::{GroupConfig, ResourceConfig};
use crate::desired::Desired;
use crate::monitor::{Event, Monitor, ResourceHandle};
use crate::runtime::{CheckpointStore, Grants, Plugin};
use crate::starting::{Phase, StartProgress};
use crate::store::Store;

mod cluster;
mod config_change;
mod driver;
mod node_states;
mod operate;
mod sequencing;
mod status;
mod versions;

use cluster::ClusterState;
pub(crate) use config_change::spec_of;
use config_change::{Checked, prepare, unavailable_type};
use driver::Driver;
pub use node_states::{NodeState, NodeStatusView};
use sequencing::Sequencing;
pub use status::{
    CopyStatusView, Counts, GroupStatus, ResourceStatusView, SUMMARY_LISTED, StateSource, Status,
    Summary,
};
pub use versions::VersionView;
use versions::{AfterSwap, SwapOutcome};

/// How long a shutdown waits for the groups to go offline in order before
/// the monitor takes what is left offline all at once.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// What the node needs to know to turn configuration into resources.
pub struct NodeSettings {
    /// This node's name.
    pub name: String,
    /// Where the resources' directories are.
    pub data_dir: PathBuf,
    /// The version of each type that runs, by type name.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// What the operator grants each type's resources (resolved users).
    pub grants: BTreeMap<String, Grants>,
    /// The memory limit of a resource that sets none.
    pub memory_limit: usize,
    /// Versions of a type found at start besides the one that runs
    /// (`crate::plugin_versions`), for `pin` and roll-back to swap to.
    pub alternatives: BTreeMap<String, Vec<Arc<Plugin>>>,
}

/// A change to the node's configuration.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create a group.
    AddGroup(GroupConfig),
    /// Delete a group (it must hold no resource).
    RemoveGroup(String),
    /// Create a resource.
    AddResource(Box<ResourceConfig>),
    /// Delete a resource.
    RemoveResource(String),
    /// Replace some properties of a resource; its group must be offline.
    SetProperties {
        /// The resource, by name.
        resource: String,
        /// The properties to set; the others keep their values.
        properties: BTreeMap<String, crate::config::PropertyValue>,
    },
}

/// Something an operator asks of the running node.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Bring a group online.
    GroupOnline(String),
    /// Take a group offline.
    GroupOffline(String),
    /// Move a group to another node.
    Move {
        /// The group, by name.
        group: String,
        /// The node; none: the best one the policy finds.
        to: Option<String>,
    },
    /// The operator's word for a group whose copies lag past their limit:
    /// bring it online, or move it, on `node` (none: where the copies lag
    /// least), accepting the loss (Exchange's `-SkipLagChecks`).
    AcceptDataLoss {
        /// The group, or a resource with copies (meaning its group).
        group: String,
        /// The node to activate on.
        node: Option<String>,
    },
    /// Fault injection: fail a resource as if a check had failed.
    Fail {
        /// The resource, by name.
        resource: String,
    },
    /// Take no new groups.
    Pause,
    /// Take groups again.
    Resume,
    /// Give every group away.
    Drain,
    /// Allow (true) or stop (false) automatic restarts and failovers.
    RecoveryActions(bool),
}

enum Command {
    Change {
        change: Change,
        reply: oneshot::Sender<Result<String>>,
    },
    Operate {
        operation: Operation,
        reply: oneshot::Sender<Result<String>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    Desired {
        reply: oneshot::Sender<Desired>,
    },
    WhatIf {
        event: PolicyEvent,
        reply: oneshot::Sender<Vec<Action>>,
    },
    Handle {
        resource: String,
        reply: oneshot::Sender<Option<ResourceHandle>>,
    },
    Install {
        plugin: Arc<Plugin>,
        reply: oneshot::Sender<Result<String>>,
    },
    Versions {
        type_name: String,
        reply: oneshot::Sender<Result<Vec<VersionView>>>,
    },
    Plugins {
        reply: oneshot::Sender<Vec<Arc<Plugin>>>,
    },
    Pinned {
        reply: oneshot::Sender<std::collections::BTreeSet<String>>,
    },
    Rollback {
        type_name: String,
        reply: oneshot::Sender<Result<String>>,
    },
    Pin {
        type_name: String,
        version: Option<String>,
        reply: oneshot::Sender<Result<String>>,
    },
    Unpin {
        type_name: String,
        reply: oneshot::Sender<Result<String>>,
    },
    SetComponent {
        component: Component,
        requester: Requester,
        state: ComponentState,
        reply: oneshot::Sender<Result<String>>,
    },
    Components {
        reply: oneshot::Sender<Vec<ComponentView>>,
    },
    Record(Event),
    /// A change whose resource was validated off the loop (see
    /// [`Driver::check_off_loop`]), to carry out now.
    Checked {
        change: Change,
        checked: Box<Checked>,
        reply: oneshot::Sender<Result<String>>,
    },
    /// A configuration change sent through the cluster's log has been
    /// answered: the next one waiting may be checked now.
    LogChangeSettled,
    /// A swap run off the loop (see [`Driver::install`]) has ended.
    Swapped {
        plugin: Arc<Plugin>,
        old: Arc<Plugin>,
        outcome: SwapOutcome,
        then: AfterSwap,
        reply: oneshot::Sender<Result<String>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A running node: the policy loop and the monitor it drives. Cheap to
/// clone: every clone talks to the same loop.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::UnboundedSender<Command>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// The node's loop has stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the node has stopped")]
pub struct Stopped;

/// Why the node refused a request; the kind tells the admin API which
/// status to answer with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What kind of refusal, for the API's status code.
    pub kind: RefusedKind,
    /// What was refused and why.
    pub message: String,
}

/// Why a request was refused, as the API answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// Names something that does not exist.
    NotFound,
    /// Conflicts with the current state (exists already, still running).
    Conflict,
    /// Not valid in itself.
    Invalid,
    /// Could not be taken now (the cluster's log did not accept it); the
    /// same request may succeed later.
    Unavailable,
}

fn not_found(message: String) -> anyhow::Error {
    Refused {
        kind: RefusedKind::NotFound,
        message,
    }
    .into()
}

fn unavailable(message: String) -> anyhow::Error {
    Refused {
        kind: RefusedKind::Unavailable,
        message,
    }
    .into()
}

fn conflict(message: String) -> anyhow::Error {
    Refused {
        kind: RefusedKind::Conflict,
        message,
    }
    .into()
}

/// What a started node publishes: every event live (a listener that falls
/// behind misses some), the record of every non-routine one, lossless,
/// for the event history's writer, and the counts the metrics expose.
pub struct NodeEvents {
    /// Subscribes to every event as it happens (a slow listener misses
    /// some).
    pub live: crate::monitor::Subscriber,
    /// Every non-routine event, none dropped: the history's writer takes
    /// them.
    pub record: crate::monitor::Record,
    /// The checks, how late they start, and the events the metrics count.
    pub counters: Arc<crate::monitor::Counters>,
}

impl Node {
    /// Build the resources of `desired` and start the loop. Groups in
    /// `desired.online` are asked online. Fails, starting nothing, if the
    /// configuration is not valid.
    ///
    /// Returns the node and a subscription to every event of its resources
    /// and decisions, taken before anything started.
    ///
    /// `progress` counts the resources opened, for the admin API that
    /// answers while the node starts.
    pub async fn start(
        settings: NodeSettings,
        desired: Desired,
        store: Store,
        progress: &StartProgress,
    ) -> Result<(Node, NodeEvents)> {
        Node::start_with(settings, desired, store, None, progress).await
    }

    /// Start as one node of a cluster that `joined` connects to: the
    /// configuration is the cluster's (the log's first entry), the engine
    /// catches up on the log's history, and from this node's `NodeUp` on it
    /// carries out what the log's decisions ask of this node.
    pub async fn start_in_cluster(
        settings: NodeSettings,
        joined: Joined,
        store: Store,
        progress: &StartProgress,
    ) -> Result<(Node, NodeEvents)> {
        let desired = joined.desired.clone();
        Node::start_with(settings, desired, store, Some(joined), progress).await
    }

    async fn start_with(
        settings: NodeSettings,
        desired: Desired,
        store: Store,
        joined: Option<Joined>,
        progress: &StartProgress,
    ) -> Result<(Node, NodeEvents)> {
        // The policy checks the shape first (dependency cycles, dangling or
        // cross-group dependencies), before any resource exists.
        let (engine, sequencing, asks_online) = match joined {
            None => {
                let config = desired.cluster_config(&settings.name, &settings.plugins)?;
                (new_engine(config)?, Sequencing::Alone, true)
            }
            Some(joined) => {
                let (engine, state, created) = ClusterState::replay(joined, &settings)?;
                // Only the agent that wrote the configuration asks for its
                // groups; the others find the request in the log.
                (engine, Sequencing::Cluster(Box::new(state)), created)
            }
        };
        let mut monitor = Monitor::new(settings.memory_limit);
        if let Some(cluster) = sequencing.cluster() {
            monitor.keep_checkpoints_in(cluster.checkpoints.clone() as Arc<dyn CheckpointStore>);
        }
        let events = NodeEvents {
            live: monitor.subscriber(),
            record: monitor
                .take_record()
                .ok_or_else(|| anyhow::anyhow!("the event record of a new monitor was taken"))?,
            counters: monitor.counters(),
        };
        progress.enter(Phase::OpeningResources);
        add_every_resource(&settings, &mut monitor, &desired, progress).await?;
        progress.enter(Phase::StartingLoop);
        store.save_desired(&desired)?;
        let changes = monitor
            .take_state_changes()
            .ok_or_else(|| anyhow!("the monitor's state changes were taken already"))?;
        let components = store.load_components()?.unwrap_or_default();
        // Pins hold across restarts; the versions start-up did not choose
        // are there to pin or roll back to.
        let pinned = store.load_versions()?.pins.into_keys().collect();
        let previous = settings.alternatives.clone();
        let online: Vec<String> = desired
            .online
            .iter()
            .filter(|_| asks_online)
            .filter(|group| unavailable_type(&desired, &components, group).is_none())
            .cloned()
            .collect();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            settings,
            engine,
            monitor,
            desired,
            components,
            previous,
            pinned,
            store,
            changes,
            myself: commands.downgrade(),
            commands: commands_rx,
            swapping: std::collections::BTreeSet::new(),
            through_log: None,
            sequencing,
        };
        let node = Node {
            commands,
            task: Arc::new(std::sync::Mutex::new(Some(tokio::spawn(driver.run())))),
        };
        node.ask_online_in_order(online)?;
        Ok((node, events))
    }

    /// Ask the loop for each group online, in order, without waiting for
    /// the answers: the API serves (and the node answers `status`) while a
    /// large configuration comes online. A refusal is logged and recorded
    /// by the loop like any other; it does not stop the agent.
    fn ask_online_in_order(&self, groups: Vec<String>) -> Result<()> {
        let mut answers = Vec::with_capacity(groups.len());
        for group in groups {
            let (reply, answer) = oneshot::channel();
            let operation = Operation::GroupOnline(group.clone());
            self.commands
                .send(Command::Operate { operation, reply })
                .map_err(|_| anyhow!("the node's loop ended while it was starting"))?;
            answers.push((group, answer));
        }
        tokio::spawn(async move {
            for (group, answer) in answers {
                match answer.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        tracing::error!(group, "bringing the group online at start: {err:#}")
                    }
                    // The loop ended (the agent is stopping).
                    Err(_) => return,
                }
            }
        });
        Ok(())
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Change the configuration; acknowledged only once it is in the store.
    pub async fn change(&self, change: Change) -> Result<String> {
        self.request(|reply| Command::Change { change, reply })
            .await?
    }

    /// Ask the node to do something.
    pub async fn operate(&self, operation: Operation) -> Result<String> {
        self.request(|reply| Command::Operate { operation, reply })
            .await?
    }

    /// The operator's view: nodes, groups, resources.
    pub async fn status(&self) -> Result<Status, Stopped> {
        self.request(|reply| Command::Status { reply }).await
    }

    /// The node's groups and resources now.
    pub async fn desired(&self) -> Result<Desired, Stopped> {
        self.request(|reply| Command::Desired { reply }).await
    }

    /// The handle of one resource, for its events and control codes.
    pub async fn resource(&self, resource: &str) -> Result<Option<ResourceHandle>, Stopped> {
        let resource = resource.to_string();
        self.request(|reply| Command::Handle { resource, reply })
            .await
    }

    /// Install a resource type: a new type is registered; a new version of
    /// a loaded type is swapped in under every resource of the type, all or
    /// nothing (see [`Driver::install`]).
    pub async fn install(&self, plugin: Arc<Plugin>) -> Result<String> {
        self.request(|reply| Command::Install { plugin, reply })
            .await?
    }

    /// Set a server component's state on behalf of a requester (Exchange's
    /// Set-ServerComponentState) and carry out what it changes.
    pub async fn set_component(
        &self,
        component: Component,
        requester: Requester,
        state: ComponentState,
    ) -> Result<String> {
        self.request(|reply| Command::SetComponent {
            component,
            requester,
            state,
            reply,
        })
        .await?
    }

    /// Every component with its effective state and its requesters.
    pub async fn components(&self) -> Result<Vec<ComponentView>, Stopped> {
        self.request(|reply| Command::Components { reply }).await
    }

    /// The resource types loaded now (each at its active version).
    pub async fn plugins(&self) -> Result<Vec<Arc<Plugin>>, Stopped> {
        self.request(|reply| Command::Plugins { reply }).await
    }

    /// The types pinned on this node.
    pub async fn pinned(&self) -> Result<std::collections::BTreeSet<String>, Stopped> {
        self.request(|reply| Command::Pinned { reply }).await
    }

    /// The versions of a type this agent has loaded, oldest first.
    pub async fn versions(&self, type_name: &str) -> Result<Vec<VersionView>> {
        let type_name = type_name.to_string();
        self.request(|reply| Command::Versions { type_name, reply })
            .await?
    }

    /// Swap a type back to the version it ran before the last swap.
    pub async fn rollback(&self, type_name: &str) -> Result<String> {
        let type_name = type_name.to_string();
        self.request(|reply| Command::Rollback { type_name, reply })
            .await?
    }

    /// Pin a type (to `version`, swapping to it if needed): files dropped
    /// into the plugins directory no longer upgrade it.
    pub async fn pin(&self, type_name: &str, version: Option<String>) -> Result<String> {
        let type_name = type_name.to_string();
        self.request(|reply| Command::Pin {
            type_name,
            version,
            reply,
        })
        .await?
    }

    /// Let dropped-in files upgrade `type_name` again; the answer says what
    /// was unpinned.
    pub async fn unpin(&self, type_name: &str) -> Result<String> {
        let type_name = type_name.to_string();
        self.request(|reply| Command::Unpin { type_name, reply })
            .await?
    }

    /// Put an event in the node's history (the plugins directory's
    /// rejections, say).
    pub fn record(&self, event: Event) {
        let _ = self.commands.send(Command::Record(event));
    }

    /// What the policy would do on `event`, from the current state, without
    /// doing it.
    pub async fn what_if(&self, event: PolicyEvent) -> Result<Vec<Action>, Stopped> {
        self.request(|reply| Command::WhatIf { event, reply }).await
    }

    /// Take every group offline in dependency order, then stop.
    pub async fn shutdown(&self) {
        let _ = self.request(|reply| Command::Shutdown { reply }).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The engine for `config`, or why its groups are not valid.
fn new_engine(config: warden_policy::ClusterConfig) -> Result<Engine> {
    Engine::new(config)
        .map_err(anyhow::Error::from)
        .context("the configuration's groups are not valid; nothing was started")
}

/// Validate and add every configured resource to `monitor`, all or
/// nothing: with any error, every error is reported and nothing was
/// started.
async fn add_every_resource(
    settings: &NodeSettings,
    monitor: &mut Monitor,
    desired: &Desired,
    progress: &StartProgress,
) -> Result<()> {
    let began = std::time::Instant::now();
    let mut errors = Vec::new();
    for resource in &desired.resources {
        match prepare(settings, monitor, resource).await {
            Ok(prepared) => {
                monitor.insert(prepared).map_err(anyhow::Error::from)?;
                progress.opened_one();
            }
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    if !errors.is_empty() {
        monitor.shutdown().await;
        bail!(
            "the configuration has {} error(s); nothing was started:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    tracing::info!(
        resources = desired.resources.len(),
        "every resource validated and opened in {:?}",
        began.elapsed()
    );
    Ok(())
}
