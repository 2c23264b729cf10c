//! The resource monitor: one actor per resource, and the registry of them.
//!
//! The monitor is what the Windows cluster service calls the Resource
//! Monitor: it drives each resource through its life cycle (open, online,
//! health checks, offline, terminate, close) with every call bounded, and
//! reports what happens as [`Event`]s. It decides nothing beyond one
//! resource: restarts, dependencies and failover belong to the group policy
//! (`crate::node`), which reads the lossless [`Report`] stream (state
//! changes, and the answers of a resource's copies).

mod actor;
mod bus;
mod check_lag;
mod copies;
mod counters;
mod events;
mod schedule;
mod spec;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::{broadcast, mpsc, watch};

pub use actor::{Gone, Report, ResourceHandle, StateChange, SwapFailure};
pub use bus::{EventBus, Record, Subscriber};
pub use check_lag::{BOUNDS_US as CHECK_LAG_BOUNDS_US, CheckLag, LagSnapshot};
pub use copies::{
    CopyAnswer, CopyCommand, CopyReading, CopyReport, REPORT_POSITION_STEP, REPORT_REFRESH,
    StatusFilter,
};
pub use counters::{
    CHECK_NAMES, CheckCounts, CheckSnapshot, Counters, EventCounts, EventTally,
    LATENCY_BOUNDS_US as CHECK_LATENCY_BOUNDS_US,
};
pub use events::{Event, EventKind};
pub use spec::{
    ResourceSpec, SpecError, Timers, TimingOverrides, check_schema, plugin_validate,
    valid_resource_name, validate as validate_spec,
};
pub use state::{LastCheck, ResourceState, ResourceStatus};

use crate::runtime::{
    CheckpointStore, Grants, Instance, InstanceConfig, Plugin, ProcessExit, ResourceContext,
};

/// The memory limit of a resource that sets none.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// How long a removed resource's actor may take to stop (a clean offline
/// and close) before the call it is in is cancelled. The removal runs in a
/// task of its own; a resource of the same name added meanwhile starts
/// once it has ended, so this bounds how long that one waits.
pub const REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long every actor may take to stop when the monitor shuts down
/// before the calls still in flight are cancelled: the agent stops even if
/// a plugin does not.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A removed resource's actor on its way out (see [`Monitor::remove`]).
pub struct Stopping(watch::Receiver<()>);

impl Stopping {
    /// Wait until the actor has stopped (at most about [`REMOVE_WAIT`]).
    pub async fn stopped(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// A resource spec that passed validation, ready to be inserted.
pub struct Prepared {
    plugin: Arc<Plugin>,
    spec: ResourceSpec,
    properties: Vec<(String, String)>,
}

/// The resources of this node and their actors.
pub struct Monitor {
    resources: BTreeMap<String, ResourceHandle>,
    events: EventBus,
    /// The record's receiving side, until the history writer takes it.
    record: Option<Record>,
    changes: mpsc::UnboundedSender<Report>,
    changes_rx: Option<mpsc::UnboundedReceiver<Report>>,
    default_memory_limit: usize,
    /// Where checkpoints live when not in each data directory.
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// Removed resources whose actors are still stopping, by name: closed
    /// once the actor has stopped.
    removing: BTreeMap<String, watch::Receiver<()>>,
    /// The tasks stopping them, for shutdown to wait on.
    removals: tokio::task::JoinSet<()>,
    /// What the metrics count: how late every check of every resource
    /// started, the checks, the events.
    counters: Arc<Counters>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new(DEFAULT_MEMORY_LIMIT)
    }
}

impl Monitor {
    /// A monitor of no resources; a resource's store gets
    /// `default_memory_limit` bytes unless its spec says otherwise.
    pub fn new(default_memory_limit: usize) -> Monitor {
        let counters = Arc::new(Counters::default());
        let (events, record) = EventBus::new(counters.clone());
        let (changes, changes_rx) = mpsc::unbounded_channel();
        Monitor {
            resources: BTreeMap::new(),
            events,
            record: Some(record),
            changes,
            changes_rx: Some(changes_rx),
            default_memory_limit,
            checkpoints: None,
            removing: BTreeMap::new(),
            removals: tokio::task::JoinSet::new(),
            counters,
        }
    }

    /// What the metrics count, counted by every actor and the event bus:
    /// how late the checks start against their schedule, the checks, the
    /// other events.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Keep the checkpoints of resources inserted from now on in `store`
    /// (the cluster's) instead of a file in each data directory.
    pub fn keep_checkpoints_in(&mut self, store: Arc<dyn CheckpointStore>) {
        self.checkpoints = Some(store);
    }

    /// Every state change and copy answer of every resource, lossless and
    /// in order per resource, for the one reader that drives the resources
    /// (the group policy). `None` after the first call.
    pub fn take_state_changes(&mut self) -> Option<mpsc::UnboundedReceiver<Report>> {
        self.changes_rx.take()
    }

    /// Publish an event that concerns the resources of this monitor (the
    /// group policy's decisions), to the same subscribers.
    pub fn publish(&self, event: Event) {
        self.events.send(event);
    }

    /// Every non-routine event, lossless, for the one writer of the event
    /// history. `None` after the first call.
    pub fn take_record(&mut self) -> Option<Record> {
        self.record.take()
    }

    /// Every event of every resource from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Subscribes later, without listening (and so without making every
    /// passing check an event) meanwhile.
    pub fn subscriber(&self) -> Subscriber {
        self.events.subscriber()
    }

    /// The resource of this name, if there is one.
    pub fn get(&self, name: &str) -> Option<&ResourceHandle> {
        self.resources.get(name)
    }

    /// Every resource.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceHandle> {
        self.resources.values()
    }

    /// Validate `spec` against `plugin` and start its actor. The resource
    /// starts Offline; nothing is instantiated until it is asked online.
    /// On error nothing changes.
    pub async fn add(
        &mut self,
        plugin: Arc<Plugin>,
        spec: ResourceSpec,
    ) -> Result<ResourceHandle, SpecError> {
        let prepared = self.prepare(plugin, spec).await?;
        self.insert(prepared)
    }

    /// The checking half of [`Monitor::add`]: validate `spec` (calls the
    /// plugin's `validate`) without changing anything.
    pub async fn prepare(
        &self,
        plugin: Arc<Plugin>,
        spec: ResourceSpec,
    ) -> Result<Prepared, SpecError> {
        if self.resources.contains_key(&spec.name) {
            return Err(SpecError::Duplicate(spec.name));
        }
        let properties = spec::validate(&spec, &plugin).await?;
        Ok(Prepared {
            plugin,
            spec,
            properties,
        })
    }

    /// [`Monitor::prepare`] for a spec whose properties
    /// [`validate_spec`] accepted already (off the node's loop): checks
    /// only that the name is free.
    pub fn prepare_validated(
        &self,
        plugin: Arc<Plugin>,
        spec: ResourceSpec,
        properties: Vec<(String, String)>,
    ) -> Result<Prepared, SpecError> {
        if self.resources.contains_key(&spec.name) {
            return Err(SpecError::Duplicate(spec.name));
        }
        Ok(Prepared {
            plugin,
            spec,
            properties,
        })
    }

    /// The doing half of [`Monitor::add`]: start the actor of a resource
    /// that [`Monitor::prepare`] accepted.
    pub fn insert(&mut self, prepared: Prepared) -> Result<ResourceHandle, SpecError> {
        let Prepared {
            plugin,
            spec,
            properties,
        } = prepared;
        if self.resources.contains_key(&spec.name) {
            return Err(SpecError::Duplicate(spec.name));
        }
        // Created only now: checking a resource (prepare) changes nothing.
        spec.dirs.create().map_err(|e| SpecError::Directory {
            resource: spec.name.clone(),
            reason: format!(
                "creating {} and {}: {e}",
                spec.dirs.data.display(),
                spec.dirs.private.display()
            ),
        })?;
        let timers = Timers::resolve(&plugin, &spec.timing);
        let plugin_version = plugin.info().version.clone();
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let context = self.context_of(&spec, plugin.name(), exits_tx);
        let (cancel, cancel_rx) = watch::channel(0u64);
        let config = InstanceConfig {
            memory_limit: spec.memory_limit.unwrap_or(self.default_memory_limit),
            // Open only parses and prepares: as quick as a health check.
            open_timeout: timers.check_timeout,
        };
        let instance = Instance::new(plugin, context, properties, config, cancel_rx);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        // A resource of this name removed a moment ago may still be
        // stopping its service: this one starts once that has ended.
        let predecessor = self.removing.remove(&spec.name);
        let (status_tx, status) = watch::channel(ResourceStatus::offline(&plugin_version));
        let status_waiters = Arc::new(AtomicUsize::new(0));
        let actor = actor::Actor {
            name: spec.name.clone(),
            instance,
            timers,
            overrides: spec.timing.clone(),
            commands,
            exits,
            status: status_tx,
            status_waiters: status_waiters.clone(),
            events: self.events.clone(),
            changes: self.changes.clone(),
            monitoring: true,
            next_looks_alive: None,
            next_is_alive: None,
            copy: None,
            copy_filter: StatusFilter::default(),
            next_copy_status: None,
            counters: self.counters.clone(),
        };
        let actor = async move {
            if let Some(stopping) = predecessor {
                Stopping(stopping).stopped().await;
            }
            actor.run().await;
        };
        tokio::spawn(actor);
        let handle = ResourceHandle {
            name: spec.name.as_str().into(),
            commands: commands_tx,
            status,
            status_waiters,
            cancel: Arc::new(cancel),
        };
        self.resources.insert(spec.name, handle.clone());
        Ok(handle)
    }

    /// What outlives the resource's instances: its name and type, the
    /// grants (only the properties the operator configured grant, not the
    /// defaults the plugin declared), its directories, where its process
    /// exits go, and where its checkpoints are kept.
    fn context_of(
        &self,
        spec: &ResourceSpec,
        type_name: &str,
        exits_tx: mpsc::UnboundedSender<ProcessExit>,
    ) -> Arc<ResourceContext> {
        let grants = Grants {
            configured: spec.properties.clone(),
            ..spec.grants.clone()
        };
        match &self.checkpoints {
            Some(store) => ResourceContext::with_checkpoint_store(
                &spec.name,
                type_name,
                grants,
                spec.dirs.clone(),
                exits_tx,
                store.clone(),
            ),
            None => {
                ResourceContext::new(&spec.name, type_name, grants, spec.dirs.clone(), exits_tx)
            }
        }
    }

    /// Forget a resource and stop its actor (taking it offline first if it
    /// is not) in a task of its own: the caller (the node's loop) does not
    /// wait on a plugin. Bounded: past [`REMOVE_WAIT`] the call in flight
    /// is cancelled (see [`ResourceHandle::shutdown_within`]). A resource of
    /// the same name inserted meanwhile starts once this one has stopped;
    /// [`Monitor::shutdown`] waits for every removal.
    pub fn remove(&mut self, name: &str) -> Option<Stopping> {
        while self.removals.try_join_next().is_some() {}
        self.removing
            .retain(|_, stopping| stopping.has_changed().is_ok());
        let handle = self.resources.remove(name)?;
        let (stopped, stopping) = watch::channel(());
        self.removing.insert(name.to_string(), stopping.clone());
        self.removals.spawn(async move {
            handle.shutdown_within(REMOVE_WAIT).await;
            drop(stopped);
        });
        Some(Stopping(stopping))
    }

    /// Take every resource offline and stop its actor, all at once. Bounded:
    /// past [`SHUTDOWN_WAIT`] the calls still in flight are cancelled, and an
    /// actor that still does not stop is left behind.
    pub async fn shutdown(&mut self) {
        let handles: Vec<_> = std::mem::take(&mut self.resources).into_values().collect();
        let mut stopping = tokio::task::JoinSet::new();
        for handle in handles {
            stopping.spawn(async move {
                handle.shutdown_within(SHUTDOWN_WAIT).await;
            });
        }
        // Removals under way stop alongside, within their own bound.
        let removals = std::mem::take(&mut self.removals);
        stopping.spawn(async move {
            removals.join_all().await;
        });
        while stopping.join_next().await.is_some() {}
    }
}
