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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warden_policy::{Action, Engine, Event as PolicyEvent, Millis};

use crate::cluster::checkpoints::EtcdCheckpoints;
use crate::cluster::{ClusterLink, Joined, LinkMessage, LogEntry, LogEvent};
use crate::components::{
    Component, ComponentStates, ComponentView, Consequence, Requester, State as ComponentState,
};
use crate::config::{GroupConfig, ResourceConfig};
use crate::desired::Desired;
use crate::monitor::{
    Event, EventKind, Monitor, ResourceHandle, ResourceSpec, ResourceState, StateChange,
    SwapFailure,
};
use crate::plugin_versions;
use crate::runtime::{CheckpointStore, Grants, Plugin, ResourceDirs};
use crate::store::Store;

/// How long a shutdown waits for the groups to go offline in order before
/// the monitor takes what is left offline all at once.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// How long a configuration change made through this node waits to come
/// back through the cluster's log before the answer says it has not yet.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// How long a swap waits for a resource busy with something else (a long
/// online) before it gives up and rolls back.
const SWAP_WAIT: Duration = Duration::from_secs(30);

/// What the node needs to know to turn configuration into resources.
pub struct NodeSettings {
    pub name: String,
    pub data_dir: PathBuf,
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
    AddGroup(GroupConfig),
    RemoveGroup(String),
    AddResource(ResourceConfig),
    RemoveResource(String),
    /// Replace some properties of a resource; its group must be offline.
    SetProperties {
        resource: String,
        properties: BTreeMap<String, crate::config::PropertyValue>,
    },
}

/// Something an operator asks of the running node.
#[derive(Debug, Clone)]
pub enum Operation {
    GroupOnline(String),
    GroupOffline(String),
    Move {
        group: String,
        to: Option<String>,
    },
    /// Fault injection: fail a resource as if a check had failed.
    Fail {
        resource: String,
    },
    Pause,
    Resume,
    Drain,
    RecoveryActions(bool),
}

/// The node as an operator sees it (the crm_mon view).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: String,
    pub paused: bool,
    pub recovery_actions: bool,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub name: String,
    pub state: warden_policy::GroupState,
    pub owner: Option<String>,
    pub failovers_in_period: u32,
    pub reason: Option<String>,
    pub resources: Vec<ResourceStatusView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatusView {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: ResourceState,
    pub reason: Option<String>,
    pub failures_in_period: u32,
    pub checks: u64,
    pub instances: u64,
    /// The version of its type the resource runs on.
    pub version: String,
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

/// A resource configuration validated against a version of its type, off
/// the node's loop. Used only if both are still what the loop has when the
/// change is carried out; otherwise the loop validates again.
struct Checked {
    resource: ResourceConfig,
    plugin: Arc<Plugin>,
    result: Result<Vec<(String, String)>, crate::monitor::SpecError>,
}

/// How a swap of a type's resources to a new version ended.
enum SwapOutcome {
    /// This many resources moved.
    Moved(usize),
    /// A resource's configuration is not valid for the new version; nothing
    /// moved.
    Rejected(String),
    /// A resource could not move; those that had were moved back.
    /// `by_version`: the new version itself failed (not a busy resource).
    RolledBack { reason: String, by_version: bool },
}

/// What to do once a swap has succeeded, besides answering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterSwap {
    Answer,
    /// Pin the type (a `pin` to an earlier version).
    Pin,
}

/// One loaded version of a resource type.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: String,
    /// The version resources run on now.
    pub active: bool,
    /// Automatic upgrades from the plugins directory are refused.
    pub pinned: bool,
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
    pub kind: RefusedKind,
    pub message: String,
}

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

/// What an operator's request came to on the loop.
enum Operated {
    /// Carried out here; the answer.
    Done(String),
    /// To append to the cluster's log, and answer once it is there.
    ToLog {
        link: ClusterLink,
        event: PolicyEvent,
        done: String,
    },
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

impl Node {
    /// Build the resources of `desired` and start the loop. Groups in
    /// `desired.online` are asked online. Fails, starting nothing, if the
    /// configuration is not valid.
    ///
    /// Returns the node and a subscription to every event of its resources
    /// and decisions, taken before anything started.
    pub async fn start(
        settings: NodeSettings,
        desired: Desired,
        store: Store,
    ) -> Result<(Node, tokio::sync::broadcast::Receiver<Event>)> {
        Node::start_with(settings, desired, store, None).await
    }

    /// Start as one node of a cluster that `joined` connects to: the
    /// configuration is the cluster's (the log's first entry), the engine
    /// catches up on the log's history, and from this node's `NodeUp` on it
    /// carries out what the log's decisions ask of this node.
    pub async fn start_in_cluster(
        settings: NodeSettings,
        joined: Joined,
        store: Store,
    ) -> Result<(Node, tokio::sync::broadcast::Receiver<Event>)> {
        let desired = joined.desired.clone();
        Node::start_with(settings, desired, store, Some(joined)).await
    }

    async fn start_with(
        settings: NodeSettings,
        desired: Desired,
        store: Store,
        joined: Option<Joined>,
    ) -> Result<(Node, tokio::sync::broadcast::Receiver<Event>)> {
        // The policy checks the shape first (dependency cycles, dangling or
        // cross-group dependencies), before any resource exists.
        // In a cluster the engine starts from the log's first configuration
        // and replays the history, later configurations in their place.
        let first = joined
            .as_ref()
            .and_then(|j| j.history.first())
            .and_then(|entry| match &entry.event {
                LogEvent::Configure { nodes, desired } => Some((nodes.clone(), desired.clone())),
                LogEvent::Policy(_) => None,
            });
        let mut cluster = match &first {
            Some((nodes, first)) => {
                let mut cluster = first.cluster_config(&settings.name, &settings.plugins)?;
                cluster.nodes = nodes.clone();
                cluster
            }
            None => desired.cluster_config(&settings.name, &settings.plugins)?,
        };
        if let Some(joined) = &joined {
            cluster.nodes = joined.nodes.clone();
        }
        let mut engine = Engine::new(cluster)
            .map_err(anyhow::Error::from)
            .context("the configuration's groups are not valid; nothing was started")?;
        let mut replay_error = None;
        let cluster = joined.map(|joined| {
            let mut state = ClusterState {
                link: joined.link,
                messages: joined.messages,
                replayed: joined.history.last().map(|e| e.seq).unwrap_or(0),
                joined_at: None,
                held: std::collections::BTreeSet::new(),
                waiting: BTreeMap::new(),
                last_at: Millis(0),
                tick_asked_for: None,
                applied: joined.history.last().map(|e| e.seq).unwrap_or(0),
                checkpoints: joined.checkpoints,
                fenced: None,
            };
            for entry in &joined.history {
                match state.event_of(entry) {
                    Some(Happened::Policy(event)) => {
                        let _ = engine.handle(event, state.last_at);
                    }
                    Some(Happened::Configure { nodes, desired }) => {
                        let applied = desired
                            .cluster_config(&settings.name, &settings.plugins)
                            .and_then(|mut config| {
                                config.nodes = nodes;
                                engine
                                    .reconfigure(config, state.last_at)
                                    .map_err(anyhow::Error::from)
                            });
                        if let Err(err) = applied {
                            replay_error = Some(err.context(format!(
                                "replaying the cluster's configuration entry {}",
                                entry.seq
                            )));
                        }
                    }
                    None => {}
                }
            }
            (state, joined.created)
        });
        if let Some(err) = replay_error {
            return Err(err);
        }
        let mut monitor = Monitor::new(settings.memory_limit);
        if let Some((state, _)) = &cluster {
            monitor.keep_checkpoints_in(state.checkpoints.clone() as Arc<dyn CheckpointStore>);
        }
        let events = monitor.subscribe();
        let mut errors = Vec::new();
        for resource in &desired.resources {
            match prepare(&settings, &monitor, resource).await {
                Ok(prepared) => {
                    monitor.insert(prepared).map_err(anyhow::Error::from)?;
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
        store.save_desired(&desired)?;
        let changes = monitor
            .take_state_changes()
            .ok_or_else(|| anyhow!("the monitor's state changes were taken already"))?;
        let components = store.load_components()?.unwrap_or_default();
        // Pins hold across restarts; the versions start-up did not choose
        // are there to pin or roll back to.
        let pinned = store.load_versions()?.pins.into_keys().collect();
        let previous = settings.alternatives.clone();
        // In a cluster only the agent that wrote the configuration asks for
        // its groups; the others find the request in the log.
        let asks_online = cluster.as_ref().is_none_or(|(_, created)| *created);
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
            cluster: cluster.map(|(state, _)| state),
        };
        let node = Node {
            commands,
            task: Arc::new(std::sync::Mutex::new(Some(tokio::spawn(driver.run())))),
        };
        for group in online {
            node.operate(Operation::GroupOnline(group)).await?;
        }
        Ok((node, events))
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

    pub async fn status(&self) -> Result<Status, Stopped> {
        self.request(|reply| Command::Status { reply }).await
    }

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

/// A type of `group`'s resources whose component says this node must not
/// host it, if any.
fn unavailable_type(
    desired: &Desired,
    components: &ComponentStates,
    group: &str,
) -> Option<String> {
    desired
        .resources
        .iter()
        .filter(|r| r.group_name() == group)
        .find(|r| !components.type_available(&r.type_name))
        .map(|r| r.type_name.clone())
}

/// The monitor's spec for a configured resource.
pub(crate) fn spec_of(settings: &NodeSettings, resource: &ResourceConfig) -> ResourceSpec {
    ResourceSpec {
        name: resource.name.clone(),
        type_name: resource.type_name.clone(),
        properties: resource.properties(),
        timing: resource.timing(),
        memory_limit: resource.memory_limit_mib.map(|mib| (mib as usize) << 20),
        dirs: ResourceDirs::under(&settings.data_dir, &resource.name),
        grants: settings
            .grants
            .get(&resource.type_name)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Validate a resource's configuration against its plugin, changing
/// nothing.
async fn prepare(
    settings: &NodeSettings,
    monitor: &Monitor,
    resource: &ResourceConfig,
) -> Result<crate::monitor::Prepared> {
    prepare_checked(settings, monitor, resource, None).await
}

/// [`prepare`], taking the plugin's verdict from `checked` when it was
/// given on this very configuration and version of the type (so the
/// plugin is not called again, in the loop).
async fn prepare_checked(
    settings: &NodeSettings,
    monitor: &Monitor,
    resource: &ResourceConfig,
    checked: Option<Checked>,
) -> Result<crate::monitor::Prepared> {
    let Some(plugin) = settings.plugins.get(&resource.type_name) else {
        bail!(
            "resource {:?}: unknown type {:?} (loaded types: {})",
            resource.name,
            resource.type_name,
            settings
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let spec = spec_of(settings, resource);
    let checked = checked.filter(|c| c.resource == *resource && Arc::ptr_eq(&c.plugin, plugin));
    match checked {
        Some(checked) => checked
            .result
            .and_then(|properties| monitor.prepare_validated(plugin.clone(), spec, properties)),
        None => monitor.prepare(plugin.clone(), spec).await,
    }
    .map_err(anyhow::Error::from)
}

/// One resource of a type being swapped: its spec, to validate it against
/// the new version, and its actor (`None` if it has none yet).
struct SwapJob {
    spec: ResourceSpec,
    handle: Option<ResourceHandle>,
}

/// Move every resource in `jobs` from `old` to `plugin`, all or nothing.
/// Runs off the node's loop; every call into the plugin and every wait on
/// an actor is bounded (`validate` by its fixed deadline, a swap by
/// [`SWAP_WAIT`] to start and the actor's own limit once started).
async fn swap_type(plugin: &Arc<Plugin>, old: &Arc<Plugin>, jobs: Vec<SwapJob>) -> SwapOutcome {
    let old_version = old.info().version.clone();
    let mut validated = Vec::new();
    for job in jobs {
        match crate::monitor::validate_spec(&job.spec, plugin).await {
            Ok(properties) => validated.push((job, properties)),
            Err(err) => {
                return SwapOutcome::Rejected(format!(
                    "{err}; every resource stays on {old_version}"
                ));
            }
        }
    }
    let mut moved: Vec<SwapJob> = Vec::new();
    for (job, properties) in validated {
        let Some(handle) = &job.handle else {
            continue;
        };
        if let Err(failure) = swap_one(handle, plugin, properties).await {
            roll_back(&moved, old).await;
            return SwapOutcome::RolledBack {
                reason: format!(
                    "resource {}: {failure}; every resource is back on {old_version}",
                    job.spec.name
                ),
                by_version: matches!(failure, SwapFailure::Version(_)),
            };
        }
        moved.push(job);
    }
    SwapOutcome::Moved(moved.len())
}

/// Swap one resource's actor to `plugin`.
async fn swap_one(
    handle: &ResourceHandle,
    plugin: &Arc<Plugin>,
    properties: Vec<(String, String)>,
) -> Result<(), SwapFailure> {
    let deadline = tokio::time::Instant::now() + SWAP_WAIT;
    match handle.swap(plugin.clone(), properties, deadline).await {
        Ok(outcome) => outcome.map(drop),
        Err(gone) => Err(SwapFailure::NotTried(gone.to_string())),
    }
}

/// Move `resources` back to `old` after a failed swap. Their configuration
/// was valid for it a moment ago.
async fn roll_back(resources: &[SwapJob], old: &Arc<Plugin>) {
    for job in resources {
        let Some(handle) = &job.handle else {
            continue;
        };
        let back = match crate::monitor::validate_spec(&job.spec, old).await {
            Ok(properties) => swap_one(handle, old, properties)
                .await
                .map_err(|failure| failure.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(reason) = back {
            tracing::error!(
                resource = job.spec.name,
                "could not return to the old version: {reason}"
            );
        }
    }
}

struct Driver {
    settings: NodeSettings,
    engine: Engine,
    monitor: Monitor,
    desired: Desired,
    components: ComponentStates,
    /// Versions of each type replaced by a swap, oldest first.
    previous: BTreeMap<String, Vec<Arc<Plugin>>>,
    /// Types that plugins-directory upgrades may not swap.
    pinned: std::collections::BTreeSet<String>,
    store: Store,
    changes: mpsc::UnboundedReceiver<StateChange>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// The loop's own command channel, for the swaps it runs off the loop
    /// to report back on (weak: the loop ends once every `Node` is gone).
    myself: mpsc::WeakUnboundedSender<Command>,
    /// Types with a swap under way: their resources are being moved, so
    /// another swap or a new resource of the type waits until it ends.
    swapping: std::collections::BTreeSet<String>,
    /// Set when this node is one of a cluster: the engine's events then go
    /// through the cluster's log, and come back from it in order.
    cluster: Option<ClusterState>,
}

/// The node's side of a cluster (see `crate::cluster`).
struct ClusterState {
    link: ClusterLink,
    messages: mpsc::UnboundedReceiver<LinkMessage>,
    /// The last entry of the history read at start (applied, not carried
    /// out).
    replayed: u64,
    /// The log entry of this node's latest `NodeUp`: from it on, decisions
    /// about this node are carried out. `None` before it and while fenced.
    joined_at: Option<u64>,
    /// Groups whose ownership key this node holds.
    held: std::collections::BTreeSet<String>,
    /// Resources the engine asked online, by group, until the group's
    /// ownership key is held.
    waiting: BTreeMap<String, Vec<String>>,
    /// The engine's clock: the latest entry time seen (entries from nodes
    /// with skewed clocks never move it back).
    last_at: Millis,
    /// The deadline a `Tick` was appended for, so it is asked once.
    tick_asked_for: Option<Millis>,
    /// The last entry applied here.
    applied: u64,
    /// The cluster's checkpoint store, for the monitor.
    checkpoints: Arc<EtcdCheckpoints>,
    /// Why this node is fenced, from the fence until it rejoins: operator
    /// requests are refused meanwhile (the link could not append them).
    fenced: Option<String>,
}

/// What a log entry asks of the node.
enum Happened {
    Policy(PolicyEvent),
    /// A new configuration of the cluster (any but the first).
    Configure {
        nodes: Vec<String>,
        desired: Desired,
    },
}

impl ClusterState {
    /// What an entry asks, advancing the engine's clock.
    fn event_of(&mut self, entry: &LogEntry) -> Option<Happened> {
        self.last_at = self.last_at.max(entry.at);
        self.applied = self.applied.max(entry.seq);
        match &entry.event {
            LogEvent::Policy(event) => Some(Happened::Policy(event.clone())),
            // The first configuration is the one everything started from.
            LogEvent::Configure { .. } if entry.seq == 1 => None,
            LogEvent::Configure { nodes, desired } => Some(Happened::Configure {
                nodes: nodes.clone(),
                desired: desired.clone(),
            }),
        }
    }

    fn joined(&self) -> bool {
        self.joined_at.is_some()
    }
}

async fn link_message(cluster: &mut Option<ClusterState>) -> Option<LinkMessage> {
    match cluster {
        Some(state) => state.messages.recv().await,
        None => std::future::pending().await,
    }
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
        if self.cluster.is_none() {
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
        loop {
            if let Some((_, started)) = &shutdown
                && (self.all_offline() || started.elapsed() > SHUTDOWN_LIMIT)
            {
                break;
            }
            let wait = self
                .engine
                .next_deadline()
                .filter(|at| {
                    self.cluster
                        .as_ref()
                        .is_none_or(|c| c.tick_asked_for != Some(*at))
                })
                .map(|at| Duration::from_millis(at.0.saturating_sub(now().0)));
            tokio::select! {
                Some(change) = self.changes.recv() => self.on_change(change),
                Some(message) = link_message(&mut self.cluster) => self.on_link(message).await,
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) if self.cluster.is_some() => {
                        // Drain: the cluster moves this node's groups to
                        // others, in dependency order. Once nothing runs
                        // here (or the limit passes, or this node is
                        // fenced), the loop ends, the monitor takes what is
                        // left offline and the node leaves.
                        let me = self.settings.name.clone();
                        self.apply(PolicyEvent::NodeDraining(me));
                        self.cancel_pending_onlines();
                        shutdown = Some((reply, tokio::time::Instant::now()));
                    }
                    Some(Command::Shutdown { reply }) => {
                        let groups: Vec<String> =
                            self.engine.groups().into_iter().map(|g| g.name).collect();
                        for group in groups {
                            self.apply(PolicyEvent::GroupOfflineRequested(group));
                        }
                        self.cancel_pending_onlines();
                        shutdown = Some((reply, tokio::time::Instant::now()));
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                () = sleep_opt(wait) => self.on_deadline(),
                // Re-check the shutdown condition now and then.
                () = tokio::time::sleep(Duration::from_millis(100)), if shutdown.is_some() => {}
            }
        }
        self.monitor.shutdown().await;
        if let Some(cluster) = &self.cluster {
            cluster.link.leave().await;
        }
        if let Some((reply, _)) = shutdown {
            let _ = reply.send(());
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Change { change, reply } => {
                if let Some((change, reply)) = self.check_off_loop(change, reply) {
                    let result = self.change(change, None).await;
                    let _ = reply.send(result);
                }
            }
            Command::Checked {
                change,
                checked,
                reply,
            } => {
                let result = self.change(change, Some(*checked)).await;
                let _ = reply.send(result);
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

    /// A new type is registered at once. A new version of a loaded type
    /// moves every resource of the type to it without leaving its state:
    /// each resource's configuration must be valid for the new version,
    /// and each Online resource's new instance must pass an is-alive. The
    /// first failure moves the resources already swapped back to the old
    /// version and the swap is reported rolled back; nothing else changes.
    ///
    /// The swap calls the plugin (`validate`) and waits on every resource's
    /// actor, so it runs in a task of its own and reports back
    /// ([`Command::Swapped`]): the loop goes on answering meanwhile, however
    /// long a hostile or stuck resource makes the swap take. `reply` gets
    /// the outcome.
    fn install(
        &mut self,
        plugin: Arc<Plugin>,
        then: AfterSwap,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let name = plugin.name().to_string();
        let version = plugin.info().version.clone();
        let Some(old) = self.settings.plugins.get(&name).cloned() else {
            self.settings.plugins.insert(name.clone(), plugin);
            self.plugin_event(&name, "loaded", &version, None);
            let _ = reply.send(Ok(format!("type {name} {version} loaded")));
            return;
        };
        if !self.swapping.insert(name.clone()) {
            let _ = reply.send(Err(conflict(format!(
                "a swap of type {name} is under way; try {version} again once it has ended"
            ))));
            return;
        }
        let jobs: Vec<SwapJob> = self
            .desired
            .resources
            .iter()
            .filter(|r| r.type_name == name)
            .map(|r| SwapJob {
                spec: spec_of(&self.settings, r),
                handle: self.monitor.get(&r.name).cloned(),
            })
            .collect();
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let outcome = swap_type(&plugin, &old, jobs).await;
            if let Some(loop_) = myself.upgrade() {
                let _ = loop_.send(Command::Swapped {
                    plugin,
                    old,
                    outcome,
                    then,
                    reply,
                });
            }
        });
    }

    /// Record how a swap ended, and answer.
    fn on_swapped(
        &mut self,
        plugin: Arc<Plugin>,
        old: Arc<Plugin>,
        outcome: SwapOutcome,
        then: AfterSwap,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let name = plugin.name().to_string();
        let version = plugin.info().version.clone();
        let old_version = old.info().version.clone();
        self.swapping.remove(&name);
        let result = match outcome {
            SwapOutcome::Rejected(reason) => {
                // Refused by the configuration, not by a fault of the
                // version: not remembered (start-up checks the
                // configuration again, as here).
                self.plugin_event(&name, "rejected", &version, Some(reason.clone()));
                Err(conflict(format!(
                    "version {version} of {name} refused: {reason}"
                )))
            }
            SwapOutcome::RolledBack { reason, by_version } => {
                self.plugin_event(&name, "rolled-back", &version, Some(reason.clone()));
                if by_version {
                    plugin_versions::remember_rejection(&self.store, &plugin, &reason, now().0);
                }
                Err(conflict(format!(
                    "swap of {name} to {version} rolled back: {reason}"
                )))
            }
            SwapOutcome::Moved(moved) => {
                self.settings.plugins.insert(name.clone(), plugin.clone());
                // Keep the version just replaced for a roll-back, and no
                // version twice.
                let versions = self.previous.entry(name.clone()).or_default();
                versions.retain(|p| p.info().version != old_version && p.info().version != version);
                versions.push(old);
                let done = format!(
                    "type {name}: {moved} resource(s) moved from {old_version} to {version}"
                );
                self.plugin_event(&name, "swapped", &version, Some(done.clone()));
                plugin_versions::forget_rejection(&self.store, &plugin);
                if then == AfterSwap::Pin {
                    plugin_versions::save_pin(&self.store, &name, Some(&version)).map(|()| {
                        self.pinned.insert(name.clone());
                        format!("type {name} pinned to {version}")
                    })
                } else {
                    Ok(done)
                }
            }
        };
        let _ = reply.send(result);
    }

    /// Cut off every online in flight: the node is stopping, so nothing
    /// needs to come online any more, and an online that has no deadline
    /// (a type that declared none) would otherwise hold the shutdown.
    fn cancel_pending_onlines(&self) {
        for handle in self.monitor.resources() {
            if handle.status().state == ResourceState::OnlinePending {
                tracing::info!(resource = handle.name(), "stopping: cancelling its online");
                handle.cancel_pending();
            }
        }
    }

    fn versions(&self, type_name: &str) -> Result<Vec<VersionView>> {
        let Some(active) = self.settings.plugins.get(type_name) else {
            return Err(not_found(format!("no type {type_name:?}")));
        };
        let pinned = self.pinned.contains(type_name);
        let mut list: Vec<VersionView> = self
            .previous
            .get(type_name)
            .into_iter()
            .flatten()
            .map(|p| VersionView {
                version: p.info().version.clone(),
                active: false,
                pinned: false,
            })
            .collect();
        list.push(VersionView {
            version: active.info().version.clone(),
            active: true,
            pinned,
        });
        Ok(list)
    }

    /// Pin a type, swapping to `version` first if it is not the active one
    /// (then the answer comes when the swap ends).
    fn pin(
        &mut self,
        type_name: String,
        version: Option<String>,
        reply: oneshot::Sender<Result<String>>,
    ) {
        let Some(active) = self.settings.plugins.get(&type_name).cloned() else {
            let _ = reply.send(Err(not_found(format!("no type {type_name:?}"))));
            return;
        };
        if let Some(version) = version.filter(|v| *v != active.info().version) {
            let Some(wanted) = self
                .previous
                .get(&type_name)
                .and_then(|versions| versions.iter().find(|p| p.info().version == version))
                .cloned()
            else {
                let _ = reply.send(Err(not_found(format!(
                    "type {type_name:?} has no loaded version {version:?}"
                ))));
                return;
            };
            self.install(wanted, AfterSwap::Pin, reply);
            return;
        }
        let version = active.info().version.clone();
        let result = plugin_versions::save_pin(&self.store, &type_name, Some(&version)).map(|()| {
            self.pinned.insert(type_name.clone());
            format!("type {type_name} pinned to {version}")
        });
        let _ = reply.send(result);
    }

    fn set_component(
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
    fn carry_out(&mut self, consequence: Consequence) {
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

    fn plugin_event(&self, subject: &str, action: &str, version: &str, reason: Option<String>) {
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

    /// Validate the resource a change adds or alters against its plugin in
    /// a task of its own, which hands the change back to the loop
    /// ([`Command::Checked`]): `validate` is a call into a plugin, and the
    /// loop must go on answering while a hostile one spins to its deadline.
    /// Returns the change if it needs no validation.
    fn check_off_loop(
        &mut self,
        change: Change,
        reply: oneshot::Sender<Result<String>>,
    ) -> Option<(Change, oneshot::Sender<Result<String>>)> {
        let resource = match &change {
            Change::AddResource(resource) => Some(resource.clone()),
            Change::SetProperties {
                resource,
                properties,
            } => self.desired.resource(resource).cloned().map(|mut updated| {
                updated.properties.extend(properties.clone());
                updated
            }),
            _ => None,
        };
        let Some((resource, plugin)) = resource.and_then(|resource| {
            let plugin = self.settings.plugins.get(&resource.type_name)?.clone();
            Some((resource, plugin))
        }) else {
            return Some((change, reply));
        };
        let spec = spec_of(&self.settings, &resource);
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let result = crate::monitor::validate_spec(&spec, &plugin).await;
            if let Some(loop_) = myself.upgrade() {
                let checked = Box::new(Checked {
                    resource,
                    plugin,
                    result,
                });
                let _ = loop_.send(Command::Checked {
                    change,
                    checked,
                    reply,
                });
            }
        });
        None
    }

    /// Check a change with the engine, save it, then apply it. Any error
    /// leaves engine, store and monitor as they were. `checked`: the
    /// validation of its resource done off the loop, if any.
    async fn change(&mut self, change: Change, checked: Option<Checked>) -> Result<String> {
        let mut next = self.desired.clone();
        let mut prepared = None;
        let mut removed = None;
        let mut start = None;
        let done = match &change {
            Change::AddGroup(group) => {
                if next.groups.iter().any(|g| g.name == group.name) {
                    return Err(conflict(format!("group {:?} exists already", group.name)));
                }
                group.check()?;
                next.groups.push(group.clone());
                if group.online {
                    next.online.insert(group.name.clone());
                    start = Some(group.name.clone());
                }
                format!("group {} created", group.name)
            }
            Change::RemoveGroup(name) => {
                if !next.groups.iter().any(|g| &g.name == name) {
                    return Err(not_found(format!("no group {name:?}")));
                }
                if let Some(r) = next
                    .resources
                    .iter()
                    .find(|r| r.group.as_deref() == Some(name))
                {
                    return Err(conflict(format!(
                        "group {name:?} still holds resource {:?}; delete its resources first",
                        r.name
                    )));
                }
                next.groups.retain(|g| &g.name != name);
                next.online.remove(name);
                format!("group {name} deleted")
            }
            Change::AddResource(resource) => {
                if let Some(group) = &resource.group
                    && !next.groups.iter().any(|g| &g.name == group)
                {
                    return Err(not_found(format!(
                        "resource {:?}: no group {group:?}",
                        resource.name
                    )));
                }
                if next.resource(&resource.name).is_some() {
                    return Err(conflict(format!(
                        "resource {:?} exists already",
                        resource.name
                    )));
                }
                resource.check()?;
                self.not_swapping(&resource.type_name)?;
                prepared =
                    Some(prepare_checked(&self.settings, &self.monitor, resource, checked).await?);
                next.resources.push(resource.clone());
                format!("resource {} created", resource.name)
            }
            Change::RemoveResource(name) => {
                if next.resource(name).is_none() {
                    return Err(not_found(format!("no resource {name:?}")));
                }
                next.resources.retain(|r| &r.name != name);
                next.online.remove(name);
                removed = Some(name.clone());
                format!("resource {name} deleted")
            }
            Change::SetProperties {
                resource,
                properties,
            } => {
                let Some(current) = next.resources.iter_mut().find(|r| &r.name == resource) else {
                    return Err(not_found(format!("no resource {resource:?}")));
                };
                let group = current.group_name().to_string();
                if self.swapping.contains(&current.type_name) {
                    return Err(conflict(format!(
                        "resource {resource:?}: a swap of its type {} is under way; try again once it has ended",
                        current.type_name
                    )));
                }
                let running = self
                    .engine
                    .group(&group)
                    .is_some_and(|g| g.state != warden_policy::GroupState::Offline);
                if running {
                    return Err(conflict(format!(
                        "resource {resource:?}: its group {group:?} is not offline; take it offline first"
                    )));
                }
                for (key, value) in properties {
                    current.properties.insert(key.clone(), value.clone());
                }
                let updated = current.clone();
                // Validate the new properties against the plugin by preparing
                // a replacement; the old resource is swapped below.
                prepared = Some(
                    prepare_checked(&self.settings, &Monitor::default(), &updated, checked).await?,
                );
                removed = Some(resource.clone());
                format!("resource {resource}: properties set")
            }
        };
        let mut cluster = next.cluster_config(&self.settings.name, &self.settings.plugins)?;
        if let Some(cluster) = &self.cluster
            && let Some(reason) = &cluster.fenced
        {
            return Err(conflict(format!(
                "{done}: refused, this node is fenced ({reason}) and cannot reach the \
                 cluster's log; ask another node, or again once this one has rejoined"
            )));
        }
        if let Some(link) = self.cluster.as_ref().map(|c| c.link.clone()) {
            // Checked here as every node will check it; carried out when it
            // comes back through the log, on every node alike.
            let nodes = self.engine.config().nodes.clone();
            cluster.nodes = nodes.clone();
            self.engine
                .clone()
                .reconfigure(cluster, now())
                .map_err(|e| conflict(e.to_string()))?;
            let seq = link
                .configure(nodes, next)
                .await
                .map_err(|err| unavailable(format!("{done}: {err:#}")))?;
            if let Some(group) = start {
                link.append(PolicyEvent::GroupOnlineRequested(group));
            }
            // Answer once it is in force here, so that the operator's next
            // command (a resource in the new group) finds it.
            self.wait_applied(seq).await?;
            return Ok(format!("{done} (through the cluster's log, entry {seq})"));
        }
        let actions = self
            .engine
            .reconfigure(cluster, now())
            .map_err(|e| conflict(e.to_string()))?;
        if let Err(err) = self.store.save_desired(&next) {
            // Put the engine back the way it was; the old configuration was
            // valid a moment ago.
            let old = self
                .desired
                .cluster_config(&self.settings.name, &self.settings.plugins)?;
            let _ = self.engine.reconfigure(old, now());
            return Err(err.context("the change was not saved, so it was not made"));
        }
        self.desired = next;
        if let Some(name) = removed {
            self.monitor.remove(&name).await;
        }
        if let Some(prepared) = prepared {
            self.monitor.insert(prepared).map_err(anyhow::Error::from)?;
        }
        for action in actions {
            self.execute(action);
        }
        if let Some(group) = start {
            self.apply(PolicyEvent::GroupOnlineRequested(group));
        }
        self.record("node", "config", done.clone());
        Ok(done)
    }

    /// Refuse a change to the resources of `type_name` while a swap moves
    /// them: a resource made meanwhile would stay on the old version.
    fn not_swapping(&self, type_name: &str) -> Result<()> {
        if self.swapping.contains(type_name) {
            return Err(conflict(format!(
                "a swap of type {type_name} is under way; try again once it has ended"
            )));
        }
        Ok(())
    }

    fn operate(&mut self, operation: Operation) -> Result<Operated> {
        let me = self.settings.name.clone();
        let group_exists = |g: &str| -> Result<()> {
            if self.engine.group(g).is_none() {
                return Err(not_found(format!("no group {g:?}")));
            }
            Ok(())
        };
        let (event, done) = match operation {
            Operation::GroupOnline(group) => {
                group_exists(&group)?;
                (
                    PolicyEvent::GroupOnlineRequested(group.clone()),
                    format!("group {group}: online requested"),
                )
            }
            Operation::GroupOffline(group) => {
                group_exists(&group)?;
                (
                    PolicyEvent::GroupOfflineRequested(group.clone()),
                    format!("group {group}: offline requested"),
                )
            }
            Operation::Move { group, to } => {
                group_exists(&group)?;
                let text = format!(
                    "group {group}: move to {} requested",
                    to.as_deref().unwrap_or("the best node")
                );
                (PolicyEvent::MoveRequested { group, to }, text)
            }
            Operation::Fail { resource } => {
                let Some(handle) = self.monitor.get(&resource) else {
                    return Err(not_found(format!("no resource {resource:?}")));
                };
                handle.fail("failed by the operator")?;
                return Ok(Operated::Done(format!(
                    "resource {resource}: failure injected"
                )));
            }
            Operation::Pause => (
                PolicyEvent::NodePaused(me.clone()),
                format!("node {me} paused"),
            ),
            Operation::Resume => (
                PolicyEvent::NodeResumed(me.clone()),
                format!("node {me} resumed"),
            ),
            Operation::Drain => (
                PolicyEvent::NodeDraining(me.clone()),
                format!("node {me} draining"),
            ),
            Operation::RecoveryActions(enabled) => (
                PolicyEvent::RecoveryActions {
                    node: me.clone(),
                    enabled,
                },
                format!(
                    "node {me}: recovery actions {}",
                    if enabled { "enabled" } else { "disabled" }
                ),
            ),
        };
        if let Some(cluster) = &self.cluster {
            if let Some(reason) = &cluster.fenced {
                return Err(conflict(format!(
                    "{done}: refused, this node is fenced ({reason}) and cannot reach the \
                     cluster's log; ask another node, or again once this one has rejoined"
                )));
            }
            // Decided where every node decides: in the log's order.
            return Ok(Operated::ToLog {
                link: cluster.link.clone(),
                event,
                done,
            });
        }
        // Remember which groups the operator wants online, so a restarted
        // agent brings back what ran.
        let mut next = self.desired.clone();
        match &event {
            PolicyEvent::GroupOnlineRequested(g) => {
                next.online.insert(g.clone());
            }
            PolicyEvent::GroupOfflineRequested(g) => {
                next.online.remove(g);
            }
            _ => {}
        }
        if next != self.desired {
            self.store.save_desired(&next)?;
            self.desired = next;
        }
        let actions = self.engine.handle(event, now());
        let refused: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Refused { what, reason } => Some(format!("{what}: {reason}")),
                _ => None,
            })
            .collect();
        for action in actions {
            self.execute(action);
        }
        if !refused.is_empty() {
            return Err(conflict(format!("refused: {}", refused.join("; "))));
        }
        Ok(Operated::Done(done))
    }

    fn status(&self) -> Status {
        let node = self.engine.node(&self.settings.name);
        let resources = self.engine.resources();
        let groups = self
            .engine
            .groups()
            .into_iter()
            .map(|g| GroupStatus {
                resources: resources
                    .iter()
                    .filter(|r| r.group == g.name)
                    .map(|r| {
                        let live = self.monitor.get(&r.name).map(|h| h.status());
                        ResourceStatusView {
                            name: r.name.clone(),
                            type_name: self
                                .desired
                                .resource(&r.name)
                                .map(|c| c.type_name.clone())
                                .unwrap_or_default(),
                            state: live
                                .as_ref()
                                .map(|s| s.state)
                                .unwrap_or(ResourceState::Offline),
                            reason: live
                                .as_ref()
                                .and_then(|s| s.reason.clone())
                                .or(r.failed_reason.clone()),
                            failures_in_period: r.failures_in_period,
                            checks: live.as_ref().map(|s| s.checks).unwrap_or(0),
                            instances: live.as_ref().map(|s| s.instances).unwrap_or(0),
                            version: live.as_ref().map(|s| s.version.clone()).unwrap_or_default(),
                        }
                    })
                    .collect(),
                name: g.name,
                state: g.state,
                owner: g.owner,
                failovers_in_period: g.failovers_in_period,
                reason: g.failed_reason,
            })
            .collect();
        Status {
            node: self.settings.name.clone(),
            paused: node
                .as_ref()
                .is_some_and(|n| !matches!(n.status, warden_policy::NodeStatus::Up)),
            recovery_actions: node.as_ref().is_none_or(|n| n.recovery_enabled),
            groups,
        }
    }

    /// Nothing runs (or is on its way up or down) that shutdown waits for:
    /// on this node alone in a cluster, every group of the node otherwise.
    fn all_offline(&self) -> bool {
        if let Some(cluster) = &self.cluster {
            // With no other node up, a drain moves nothing: stop here.
            let others_up =
                self.engine.nodes().iter().any(|n| {
                    n.name != self.settings.name && n.status == warden_policy::NodeStatus::Up
                });
            return !cluster.joined()
                || !others_up
                || self
                    .monitor
                    .resources()
                    .all(|h| !h.status().state.is_active());
        }
        self.engine
            .resource_states()
            .all(|(_, state, _)| !state.is_active())
    }

    fn on_change(&mut self, change: StateChange) {
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
        if let Some(cluster) = &self.cluster
            && !cluster.joined()
        {
            // Fenced or not yet joined: what runs here is not the cluster's.
            tracing::debug!("not reported to the cluster: {event:?}");
            return;
        }
        self.apply(event);
    }

    /// Hand an event to the engine: at once on a single node, through the
    /// log (and back, in order, to every node) in a cluster.
    fn apply(&mut self, event: PolicyEvent) {
        if let Some(cluster) = &self.cluster {
            cluster.link.append(event);
            return;
        }
        for action in self.engine.handle(event, now()) {
            self.execute(action);
        }
    }

    /// The engine's next deadline came. In a cluster, time passes in the log
    /// too: one `Tick` is appended per deadline (by every node that sees it;
    /// the engine takes a second one as a no-op).
    fn on_deadline(&mut self) {
        let deadline = self.engine.next_deadline();
        match &mut self.cluster {
            Some(cluster) => {
                cluster.tick_asked_for = deadline;
                if cluster.joined() {
                    cluster.link.append(PolicyEvent::Tick);
                }
            }
            None => self.apply(PolicyEvent::Tick),
        }
    }

    async fn on_link(&mut self, message: LinkMessage) {
        match message {
            LinkMessage::Entry(entry) => self.on_entry(entry).await,
            LinkMessage::Claimed(group) => self.on_claimed(group),
            LinkMessage::Fenced(reason) => self.on_fenced(reason),
        }
    }

    /// Apply the log's next entry; carry out its decisions once this node
    /// has joined.
    async fn on_entry(&mut self, entry: LogEntry) {
        let me = self.settings.name.clone();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let event = match cluster.event_of(&entry) {
            Some(Happened::Policy(event)) => event,
            Some(Happened::Configure { nodes, desired }) => {
                let at = cluster.last_at;
                self.apply_configuration(entry.seq, nodes, desired, at)
                    .await;
                return;
            }
            None => return,
        };
        if entry.seq > cluster.replayed
            && entry.origin == me
            && event == PolicyEvent::NodeUp(me.clone())
        {
            cluster.joined_at = Some(entry.seq);
            cluster.fenced = None;
            tracing::info!(seq = entry.seq, "joined the cluster");
        }
        // The cluster counts everything here as gone (this node's lease
        // went): stop it now, not at the next renewal, since the groups'
        // ownership keys went with the lease. Rejoining brings a NodeUp.
        let marked_down = matches!(&event, PolicyEvent::NodeDown(n) if *n == me)
            && cluster.joined_at.is_some_and(|at| at < entry.seq);
        let carry_out = cluster.joined() && !marked_down;
        let at = cluster.last_at;
        let actions = self.engine.handle(event, at);
        if marked_down {
            self.on_fenced("the cluster marked this node down".to_string());
        }
        if carry_out {
            for action in actions {
                self.execute(action);
            }
        }
    }

    /// A new configuration came through the log. The engine takes it as
    /// every other node's engine does (so they stay alike, and refuse
    /// alike); then this node's monitor follows: resources gone or changed
    /// are removed, new or changed ones added.
    async fn apply_configuration(
        &mut self,
        seq: u64,
        nodes: Vec<String>,
        next: Desired,
        at: Millis,
    ) {
        let mut config = match next.cluster_config(&self.settings.name, &self.settings.plugins) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!("configuration entry {seq}: {err:#}; not applied");
                return;
            }
        };
        config.nodes = nodes;
        let actions = match self.engine.reconfigure(config, at) {
            Ok(actions) => actions,
            Err(err) => {
                self.record("node", "config-refused", format!("entry {seq}: {err}"));
                return;
            }
        };
        let old = std::mem::replace(&mut self.desired, next);
        let gone: Vec<String> = old
            .resources
            .iter()
            .filter(|r| self.desired.resource(&r.name) != Some(*r))
            .map(|r| r.name.clone())
            .collect();
        for name in &gone {
            self.monitor.remove(name).await;
        }
        let added: Vec<ResourceConfig> = self
            .desired
            .resources
            .iter()
            .filter(|r| old.resource(&r.name) != Some(*r))
            .cloned()
            .collect();
        for resource in &added {
            let inserted = match prepare(&self.settings, &self.monitor, resource).await {
                Ok(prepared) => self
                    .monitor
                    .insert(prepared)
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Err(err) => Err(err),
            };
            if let Err(err) = inserted {
                // The engine has it; this node cannot run it. Say so: the
                // operator must make the node able (a plugin, a grant).
                tracing::error!(resource = %resource.name, "cannot run here: {err:#}");
                self.record(&resource.name, "config-failed", format!("{err:#}"));
            }
        }
        if let Err(err) = self.store.save_desired(&self.desired) {
            tracing::warn!(
                "the cluster's configuration was not copied to the local store: {err:#}"
            );
        }
        if let Some(cluster) = &self.cluster {
            cluster.checkpoints.regroup(&self.desired);
        }
        let carry_out = self.cluster.as_ref().is_some_and(ClusterState::joined);
        if carry_out {
            for action in actions {
                self.execute(action);
            }
        }
        self.record(
            "node",
            "config",
            format!(
                "cluster configuration {seq}: {} resource(s) removed or changed, {} added or changed",
                gone.len(),
                added.len()
            ),
        );
    }

    /// Apply the log here up to entry `seq`, at most `APPLY_WAIT`.
    async fn wait_applied(&mut self, seq: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            let Some(cluster) = self.cluster.as_mut() else {
                return Ok(());
            };
            if cluster.applied >= seq {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, cluster.messages.recv()).await {
                Ok(Some(message)) => self.on_link(message).await,
                Ok(None) => bail!("the cluster link has stopped"),
                Err(_) => bail!(
                    "the change is entry {seq} of the cluster's log but did not come back \
                     within {APPLY_WAIT:?}; it takes effect when it does"
                ),
            }
        }
    }

    fn on_claimed(&mut self, group: String) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.joined() {
            cluster.link.release(&group);
            return;
        }
        cluster.held.insert(group.clone());
        let waiting = cluster.waiting.remove(&group).unwrap_or_default();
        self.record(&group, "owned", format!("{group}: ownership key held"));
        let me = self.settings.name.clone();
        for resource in waiting {
            self.on_resource(&resource, &me, |h| h.online());
        }
    }

    /// Renewals stopped: terminate everything here before the lease can
    /// expire and another node take the groups over.
    fn on_fenced(&mut self, reason: String) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.joined_at = None;
            cluster.held.clear();
            cluster.waiting.clear();
            cluster.fenced = Some(reason.clone());
        }
        for handle in self.monitor.resources() {
            if handle.status().state.is_active()
                && let Err(err) = handle.terminate()
            {
                tracing::error!("{err}");
            }
        }
        self.record(&self.settings.name, "fenced", reason);
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::BringOnline { resource, node } => {
                if let Some(cluster) = self.cluster.as_mut()
                    && node == self.settings.name
                {
                    let group = self
                        .engine
                        .resource(&resource)
                        .map(|r| r.group)
                        .unwrap_or_default();
                    if !cluster.held.contains(&group) {
                        // Online only under the group's ownership key.
                        cluster.waiting.entry(group).or_default().push(resource);
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
                if let Some(cluster) = self.cluster.as_mut() {
                    if node == self.settings.name {
                        if !cluster.held.contains(&group) {
                            cluster.link.claim(&group);
                        }
                    } else if cluster.held.remove(&group) {
                        // Offline here already: the engine places a group
                        // only once it is.
                        cluster.link.release(&group);
                    }
                }
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
