//! The node agent: configuration in, a running node out.
//!
//! Start-up is all or nothing: every plugin is loaded and every resource is
//! validated before any resource is asked online, so a bad configuration
//! is reported whole and starts nothing. A broken file in the plugins
//! directory is reported (log and event history, naming the file) and
//! skipped; it cannot take the agent down. Of several versions of one type
//! the pinned or highest that passes a swap's checks runs, never merely the
//! last file in name order (`crate::plugin_versions`).
//!
//! Groups and resources come from the embedded store when it has them (it
//! holds every change made through the admin API); the configuration
//! file's `[[group]]` and `[[resource]]` entries seed an empty store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::api::Serving;
use crate::config::{AgentConfig, AllocatorChoice, PluginGrants, RuntimeSection};
use crate::desired::Desired;
use crate::monitor::{Event, EventKind};
use crate::node::{Node, NodeSettings};
use crate::plugin_versions::{Candidate, Origin, VersionRecord, choose, rank};
use crate::runtime::process_limits::{self, MapBudget};
use crate::runtime::{Allocator, CompileCache, Plugin, Runtime, RuntimeConfig};
use crate::starting::{Phase, StartProgress};
use crate::store::Store;
use crate::type_sources::TypeSources;

/// A running node.
pub struct Agent {
    /// The node's handle: status, operations and swaps go through it.
    pub node: Node,
    /// The types this node runs, by name, at the version start-up chose.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// The runtime every plugin of this agent is loaded into.
    pub runtime: Arc<Runtime>,
    /// Where the agent keeps its store, history, compiled plugins and the
    /// resources' directories.
    pub data_dir: PathBuf,
    history: crate::history::Writer,
    watcher: Option<JoinHandle<()>>,
    events: crate::monitor::Subscriber,
    on_shutdown: crate::config::OnShutdown,
}

/// A plugin file that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The file that was refused.
    pub file: PathBuf,
    /// Why, naming what is wrong with it.
    pub reason: String,
}

impl Agent {
    /// Load the plugins, validate every resource, then bring online the
    /// groups that should be.
    ///
    /// One function of about ninety lines, on purpose: it is the agent's
    /// start-up sequence, each step a call to a function below it, and the
    /// order is the point (nothing starts before everything that can
    /// refuse the configuration has been checked; the API is bound and
    /// answering first, so a taken port starts nothing and the status says
    /// how far the start is while it runs). Split further, the
    /// order would be spread over functions that only pass values along.
    pub async fn start(config: AgentConfig) -> Result<Agent> {
        let (runtime, cache) = prepare(&config)?;
        let data_dir = config.node.data_dir.clone();
        let progress = Arc::new(StartProgress::new(&config.node.name));
        // Bound before starting anything, so a taken port starts nothing;
        // answering at once, with how far the start is (`crate::starting`).
        let api = match &config.api {
            Some(api) => Some(Serving::start(
                crate::api::bind(api.listen).await?,
                api.token_or_create()?,
                progress.clone(),
            )?),
            None => None,
        };
        let store = Store::open(&data_dir.join("warden.redb"))?;
        let desired = saved_or_seeded(&store, &config)?;
        // In a cluster the configuration is the cluster's, known once joined.
        if config.cluster.is_none() {
            progress.configuration(&desired);
        }
        let Loaded {
            candidates,
            rejected,
            seen: seen_at_start,
            sources,
            ..
        } = load_plugins(
            &runtime,
            config.node.plugins_dir.as_deref(),
            Some(&cache),
            &config.plugins,
        )
        .await?;
        for r in &rejected {
            tracing::error!("plugin {} rejected: {}", r.file.display(), r.reason);
        }
        let files_by_sha = files_by_sha(&candidates);
        let settings = node_settings(&config)?;
        let started = start_node(
            &config, &runtime, candidates, settings, desired, store, &progress,
        )
        .await?;
        let node = started.node;
        record_start_notes(&node, &rejected, started.notes);
        let plugins = started.plugins;
        let metrics = Arc::new(crate::metrics::Metrics::new(started.events.counters));
        let subscription = started.events.live;
        let (history, readable_history) =
            crate::history::spawn_writer(started.events.record, &data_dir).await?;
        // In a cluster: what this node runs published, builds rolled out.
        let rollout = started.cluster_plugins.map(|cluster_plugins| {
            start_rollout(
                cluster_plugins,
                &node,
                &config,
                &sources,
                &plugins,
                &files_by_sha,
            )
        });
        if let Some(api) = api {
            api.started(node.clone(), readable_history, metrics, rollout.clone());
        }
        let watcher = config.node.plugins_dir.clone().map(|dir| {
            crate::plugins_dir::spawn(
                dir,
                runtime.clone(),
                node.clone(),
                cache.clone(),
                sources,
                seen_at_start,
                rollout,
            )
        });
        crate::systemd::notify_or_log("READY=1\nSTATUS=resources supervised");
        feed_systemd_watchdog(&node);
        tracing::info!(
            node = %config.node.name,
            plugins = plugins.len(),
            "agent started; event history in {}",
            data_dir.join(crate::history::FILE).display()
        );
        Ok(Agent {
            node,
            plugins,
            runtime,
            data_dir,
            history,
            watcher,
            events: subscription,
            on_shutdown: config.node.on_shutdown,
        })
    }

    /// Every event of the node from now on, routine ones (passing health
    /// checks) included.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Take every group offline (in reverse dependency order), close every
    /// resource, and stop; or, with `on_shutdown = "leave-running"`, stop
    /// the agent alone and leave the services for the next agent to adopt.
    pub async fn shutdown(self) {
        if self.on_shutdown == crate::config::OnShutdown::LeaveRunning {
            tracing::info!(
                "shutting down, leaving every service running for the next agent to adopt"
            );
            crate::systemd::notify_or_log("STOPPING=1\nSTATUS=leaving the services running");
            crate::runtime::leave_running_on_exit();
            crate::fence_guard::goodbye(true);
            if let Some(watcher) = &self.watcher {
                watcher.abort();
            }
            self.history.abort();
            return;
        }
        tracing::info!("shutting down: taking every group offline");
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        crate::systemd::notify_or_log("STOPPING=1\nSTATUS=taking every group offline");
        self.node.shutdown().await;
        crate::fence_guard::goodbye(false);
        // Let the history writer take the last events (those of the groups
        // going offline), bounded in case the disk does not answer.
        self.history.finish(std::time::Duration::from_secs(2)).await;
        tracing::info!("agent stopped");
    }
}

/// What every start-up needs before plugins load: the open-file limit
/// raised, the watchdog checked (an operator who configured one must not
/// run without it), the data directory, the runtime, and the compile
/// cache (compiled plugins kept by content and engine: a restart
/// recompiles nothing).
fn prepare(config: &AgentConfig) -> Result<(Arc<Runtime>, CompileCache)> {
    let resources = config.resources.len();
    // Every resource may hold up to `runtime::MAX_HANDLES` handles and its
    // service log besides its /data directory: the soft limit (1024 by
    // default) would let a few busy plugins starve the agent of
    // descriptors, and the hard one may be short of what the resources
    // need. Failing to raise is logged, not fatal.
    if let Err(e) = process_limits::raise_open_files(resources) {
        tracing::warn!("could not read or raise the open-file limit: {e}");
    }
    if let Some(watchdog) = config.cluster.as_ref().and_then(|c| c.watchdog()) {
        crate::fence_guard::watchdog::check(&watchdog)?;
    }
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir.join("resources"))
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    if let Some(budget) = MapBudget::read(resources, Path::new(process_limits::MAX_MAP_COUNT))
        && !budget.fits()
    {
        tracing::warn!("{}", budget.shortfall(resources));
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        && let Some(shortfall) = process_limits::open_files_shortfall(resources, soft)
    {
        tracing::warn!("{shortfall}");
    }
    let runtime = Runtime::new(runtime_config(&config.runtime))?;
    let cache = CompileCache::open(data_dir.join("compiled"))?;
    Ok((runtime, cache))
}

/// The runtime `[runtime]` asks for. `max_instances` sizes the pool only;
/// given with the on-demand allocator it is said once and ignored, so that
/// a configuration written for the pool still starts (with no cap).
fn runtime_config(section: &RuntimeSection) -> RuntimeConfig {
    let allocator = match section.allocator {
        AllocatorChoice::OnDemand => {
            if let Some(n) = section.max_instances {
                tracing::warn!(
                    "[runtime] max_instances = {n} sizes the pool allocator only; the on-demand \
                     allocator has no slots to size, so it is ignored (set allocator = \"pool\" \
                     to reserve slots, or remove it)"
                );
            }
            Allocator::OnDemand
        }
        AllocatorChoice::Pool => Allocator::Pool,
    };
    RuntimeConfig {
        allocator,
        max_instances: section.pool_instances(),
        release_stacks: section.release_idle_stacks,
        ..RuntimeConfig::default()
    }
}

/// Which file holds which build (by the component's SHA-256), for the
/// rollout to offer what this node runs from the operator's files
/// (`rollout::start`).
fn files_by_sha(
    candidates: &BTreeMap<String, Vec<Candidate<Arc<Plugin>>>>,
) -> BTreeMap<String, Vec<PathBuf>> {
    let mut files_by_sha: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for candidate in candidates.values().flatten() {
        if let (Origin::File(path), Some(sha)) = (&candidate.origin, &candidate.sha256) {
            files_by_sha
                .entry(sha.clone())
                .or_default()
                .push(path.clone());
        }
    }
    files_by_sha
}

/// The groups and resources the store holds (every change made through
/// the admin API), or, in an empty store, the configuration file's.
fn saved_or_seeded(store: &Store, config: &AgentConfig) -> Result<Desired> {
    Ok(match store.load_desired()? {
        Some(saved) => {
            tracing::info!(
                groups = saved.groups.len(),
                resources = saved.resources.len(),
                "configuration loaded from the store; the file's groups and resources only seed an empty store"
            );
            saved
        }
        None => Desired::from_file(config),
    })
}

/// The node's settings from the configuration; its plugins are chosen
/// later (`start_node`), once the configuration they are checked against
/// is known (in a cluster, the cluster's).
fn node_settings(config: &AgentConfig) -> Result<NodeSettings> {
    Ok(NodeSettings {
        name: config.node.name.clone(),
        data_dir: config.node.data_dir.clone(),
        plugins: BTreeMap::new(),
        alternatives: BTreeMap::new(),
        grants: config
            .plugins
            .iter()
            .map(|(plugin, grants)| Ok((plugin.clone(), grants.resolve(plugin)?)))
            .collect::<Result<_>>()?,
        memory_limit: (config.runtime.memory_limit_mib as usize) << 20,
    })
}

/// What [`start_node`] started.
struct Started {
    node: Node,
    events: crate::node::NodeEvents,
    /// The types the node runs, by name, at the version it chose (taken
    /// here: asking the node would wait behind every group's online).
    plugins: BTreeMap<String, Arc<Plugin>>,
    /// What the choice of versions passed over, for the event history.
    notes: Vec<crate::plugin_versions::Note>,
    /// In a cluster, what the cluster keeps about plugin builds.
    cluster_plugins: Option<Arc<crate::cluster::plugins::ClusterPlugins>>,
}

/// Choose each type's version and start the node: alone, or, with
/// `[cluster]`, after starting the fence guard, loading the fence devices
/// and joining (the configuration is then the cluster's).
async fn start_node(
    config: &AgentConfig,
    runtime: &Arc<Runtime>,
    candidates: BTreeMap<String, Vec<Candidate<Arc<Plugin>>>>,
    mut settings: NodeSettings,
    desired: Desired,
    store: Store,
    progress: &StartProgress,
) -> Result<Started> {
    let record = store.load_versions()?;
    let Some(section) = &config.cluster else {
        progress.enter(Phase::ChoosingVersions);
        let chosen = choose(candidates, &record, &desired.resources, &settings).await;
        settings.plugins = chosen.plugins;
        settings.alternatives = chosen.alternatives;
        let plugins = settings.plugins.clone();
        let (node, events) = Node::start(settings, desired, store, progress).await?;
        return Ok(Started {
            node,
            events,
            plugins,
            notes: chosen.notes,
            cluster_plugins: None,
        });
    };
    progress.enter(Phase::JoiningCluster);
    // Services must not outlive an agent whose groups the cluster moves
    // elsewhere once its lease expires.
    crate::runtime::die_with_agent();
    // Before the lease: the first answered renewal vouches.
    if section.fence_guard {
        crate::fence_guard::start(section.watchdog()).context(
            "starting the fence guard ([cluster] fence_guard = false runs without one, \
             and without watchdog_device)",
        )?;
    }
    // Before joining: a device that does not load or whose properties are
    // refused is a configuration error.
    let fencing = Arc::new(crate::fencing::Fencing::load(runtime, &section.fence_device).await?);
    let joined = crate::cluster::link::join(section, &config.node.name, &desired, fencing)
        .await
        .with_context(|| format!("joining cluster {:?}", section.name))?;
    tracing::info!(
        cluster = %section.name,
        created = joined.created,
        "joined; the configuration is the cluster's"
    );
    progress.configuration(&joined.desired);
    progress.enter(Phase::ChoosingVersions);
    let chosen = choose(candidates, &record, &joined.desired.resources, &settings).await;
    settings.plugins = chosen.plugins;
    settings.alternatives = chosen.alternatives;
    let cluster_plugins = joined.plugins.clone();
    let plugins = settings.plugins.clone();
    let (node, events) = Node::start_in_cluster(settings, joined, store, progress).await?;
    Ok(Started {
        node,
        events,
        plugins,
        notes: chosen.notes,
        cluster_plugins: Some(cluster_plugins),
    })
}

/// Publish what this node runs and take the builds announced to every
/// node (`crate::rollout`), for as long as the process runs; offer the
/// builds it runs from the operator's files, so a build dropped while the
/// agent was stopped is rolled out as one dropped while it runs would be.
fn start_rollout(
    cluster_plugins: Arc<crate::cluster::plugins::ClusterPlugins>,
    node: &Node,
    config: &AgentConfig,
    sources: &TypeSources,
    plugins: &BTreeMap<String, Arc<Plugin>>,
    files_by_sha: &BTreeMap<String, Vec<PathBuf>>,
) -> Arc<crate::rollout::Rollout> {
    let rollout = crate::rollout::Rollout::new(
        cluster_plugins,
        node.clone(),
        config.node.plugins_dir.clone(),
        sources.clone(),
    );
    // Runs as long as the process: it only reads and publishes.
    drop(rollout.spawn());
    rollout.offer_running(plugins.values(), files_by_sha);
    rollout
}

/// What start-up refused or chose goes into the event history too.
fn record_start_notes(
    node: &Node,
    rejected: &[Rejected],
    notes: Vec<crate::plugin_versions::Note>,
) {
    for r in rejected {
        node.record(Event::now(
            &r.file.display().to_string(),
            EventKind::Plugin {
                action: "rejected".to_string(),
                version: None,
                reason: Some(format!("not loaded at start: {}", r.reason)),
            },
        ));
    }
    for note in notes {
        node.record(Event::now(
            &note.subject,
            EventKind::Plugin {
                action: note.action.to_string(),
                version: note.version,
                reason: Some(note.reason),
            },
        ));
    }
}

/// Ready once the node answers; systemd's watchdog is fed only while it
/// keeps answering, so a wedged policy loop gets the agent restarted.
fn feed_systemd_watchdog(node: &Node) {
    let Some(interval) = crate::systemd::watchdog_interval() else {
        return;
    };
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match tokio::time::timeout(interval, node.status()).await {
                Ok(Ok(_)) => crate::systemd::notify_or_log("WATCHDOG=1"),
                Ok(Err(_)) => return,
                Err(_) => tracing::error!(
                    "the node loop did not answer within {interval:?}; not feeding the watchdog"
                ),
            }
        }
    });
}

/// What [`load_plugins`] loaded.
pub struct Loaded {
    /// Every type, by name, at the version it would run if no build of it
    /// were rejected and every version passed its checks (see
    /// [`crate::plugin_versions::choose`] for the real choice).
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// Every loaded version of every type, the built-in included.
    pub candidates: BTreeMap<String, Vec<Candidate<Arc<Plugin>>>>,
    /// The files that could not be loaded, or that describe a type whose
    /// name they do not hold.
    pub rejected: Vec<Rejected>,
    /// Every file read, with a hash of what was read, so the directory
    /// watcher takes up exactly what start-up did not.
    pub seen: Vec<(PathBuf, u64)>,
    /// Which source holds which type name, for the directory watcher.
    pub sources: TypeSources,
}

/// Load the built-in types, then every `.wasm` file in `dir`. A file that
/// fails, or that describes a type whose name it does not hold (see
/// [`TypeSources`]: a built-in's name only with the operator's
/// `[plugins.NAME] source`), is reported in `rejected` and skipped. Several
/// files of one type are all kept, as candidates: which one runs is not
/// decided by their order. With a `cache`, compiled code is reused, and
/// artifacts of plugins no longer loaded are pruned.
pub async fn load_plugins(
    runtime: &Arc<Runtime>,
    dir: Option<&Path>,
    cache: Option<&CompileCache>,
    configured: &BTreeMap<String, PluginGrants>,
) -> Result<Loaded> {
    let mut candidates: BTreeMap<String, Vec<Candidate<Arc<Plugin>>>> = BTreeMap::new();
    let mut seen = Vec::new();
    let mut keep = std::collections::HashSet::new();
    for (file, bytes) in crate::builtin::BUILTIN_PLUGINS {
        let plugin = load_one(runtime, bytes, cache, &mut keep)
            .await
            .with_context(|| format!("loading the built-in plugin {file}"))?;
        candidates
            .entry(plugin.name().to_string())
            .or_default()
            .push(candidate(Origin::BuiltIn, plugin));
    }
    let sources = TypeSources::new(configured, candidates.keys().cloned());
    let mut rejected = Vec::new();
    if let Some(dir) = dir {
        let loaded = load_directory(runtime, dir, cache, &sources, &mut keep).await?;
        for (file, plugin) in loaded.plugins {
            candidates
                .entry(plugin.name().to_string())
                .or_default()
                .push(candidate(Origin::File(file), plugin));
        }
        seen = loaded.seen;
        rejected = loaded.rejected;
    }
    if let Some(cache) = cache {
        let cache = cache.clone();
        let pruned = tokio::task::spawn_blocking(move || cache.prune(&keep))
            .await
            .unwrap_or(0);
        if pruned > 0 {
            tracing::info!("pruned {pruned} compiled plugin(s) no longer loaded");
        }
    }
    let unchecked = VersionRecord::default();
    let plugins = candidates
        .iter()
        .filter_map(|(name, of_type)| {
            let first = rank(name, of_type.clone(), &unchecked).into_iter().next()?;
            Some((name.clone(), first.candidate.plugin))
        })
        .collect();
    Ok(Loaded {
        plugins,
        candidates,
        rejected,
        seen,
        sources,
    })
}

/// What [`load_directory`] read from the plugins directory.
#[derive(Default)]
struct DirectoryLoad {
    /// Each file that loaded, with its plugin.
    plugins: Vec<(PathBuf, Plugin)>,
    /// Each file that did not, and why.
    rejected: Vec<Rejected>,
    /// Every file read, with a hash of what was read.
    seen: Vec<(PathBuf, u64)>,
}

/// Load every `.wasm` file in `dir`, in name order; a file that fails, or
/// that describes a type whose name it does not hold (`sources`), is
/// rejected, never registered.
async fn load_directory(
    runtime: &Arc<Runtime>,
    dir: &Path,
    cache: Option<&CompileCache>,
    sources: &TypeSources,
    keep: &mut std::collections::HashSet<String>,
) -> Result<DirectoryLoad> {
    let mut found = DirectoryLoad::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the plugins directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    for file in files {
        let loaded = match std::fs::read(&file) {
            Ok(bytes) => {
                found
                    .seen
                    .push((file.clone(), crate::plugins_dir::content_hash(&bytes)));
                load_one(runtime, &bytes, cache, keep)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(err) => Err(format!("could not read it: {err}")),
        };
        // Refused before the type is registered: nothing of it runs
        // beyond the bounded `describe` that told its name.
        let loaded = loaded.and_then(|plugin| sources.check(&file, plugin.name()).map(|()| plugin));
        match loaded {
            Ok(plugin) => {
                tracing::info!(
                    "loaded type {} {} from {}",
                    plugin.name(),
                    plugin.info().version,
                    file.display()
                );
                found.plugins.push((file, plugin));
            }
            Err(reason) => found.rejected.push(Rejected { file, reason }),
        }
    }
    Ok(found)
}

fn candidate(origin: Origin, plugin: Plugin) -> Candidate<Arc<Plugin>> {
    Candidate {
        origin,
        version: plugin.info().version.clone(),
        sha256: plugin.source_sha256(),
        plugin: Arc::new(plugin),
    }
}

/// Load one plugin, through the cache when there is one.
async fn load_one(
    runtime: &Arc<Runtime>,
    bytes: &[u8],
    cache: Option<&CompileCache>,
    keep: &mut std::collections::HashSet<String>,
) -> Result<Plugin, crate::runtime::LoadError> {
    match cache {
        Some(cache) => {
            keep.insert(CompileCache::key(runtime, bytes));
            cache.load(runtime, bytes).await.map(|(plugin, _)| plugin)
        }
        None => Plugin::load(runtime, bytes).await,
    }
}
