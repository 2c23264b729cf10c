//! The node agent: configuration in, a running monitor out.
//!
//! Start-up is all or nothing: every plugin is loaded and every resource is
//! validated before any resource is asked online, so a bad configuration
//! is reported whole and starts nothing. A broken file in the plugins
//! directory is reported and skipped; it cannot take the agent down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::{AgentConfig, ResourceConfig, parse_failback};
use crate::contract::TypeFlags;
use crate::monitor::{Event, Monitor, ResourceHandle, ResourceSpec, SpecError};
use crate::node::Node;
use crate::runtime::{Grants, Plugin, Runtime, RuntimeConfig};

/// A running node.
pub struct Agent {
    pub node: Node,
    /// Every resource's handle, for status.
    pub resources: BTreeMap<String, ResourceHandle>,
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    pub runtime: Arc<Runtime>,
    pub data_dir: PathBuf,
    history: JoinHandle<()>,
}

/// A plugin file that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub file: PathBuf,
    pub reason: String,
}

impl Agent {
    /// Load the plugins, validate every resource, then bring online the
    /// ones configured online.
    pub async fn start(config: AgentConfig) -> Result<Agent> {
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(data_dir.join("resources"))
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: config.runtime.max_instances,
            ..RuntimeConfig::default()
        })?;
        let (plugins, rejected) =
            load_plugins(&runtime, config.node.plugins_dir.as_deref()).await?;
        for r in &rejected {
            tracing::error!("plugin {} rejected: {}", r.file.display(), r.reason);
        }

        // The policy checks the shape first (dependency cycles, dangling
        // or cross-group dependencies), before any resource exists.
        let cluster = cluster_config(&config, &plugins)?;
        let engine = warden_policy::Engine::new(cluster)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the configuration's groups are not valid; nothing was started")?;

        let mut monitor = Monitor::new((config.runtime.memory_limit_mib as usize) << 20);
        let history = spawn_history(monitor.subscribe(), data_dir.join("events.jsonl")).await?;

        let mut errors = Vec::new();
        for resource in &config.resources {
            let added = add_resource(&mut monitor, &plugins, &config, resource, &data_dir).await;
            if let Err(err) = added {
                errors.push(err.to_string());
            }
        }
        if !errors.is_empty() {
            monitor.shutdown().await;
            history.abort();
            bail!(
                "the configuration has {} error(s); nothing was started:\n  {}",
                errors.len(),
                errors.join("\n  ")
            );
        }
        let resources: BTreeMap<String, ResourceHandle> = monitor
            .resources()
            .map(|h| (h.name().to_string(), h.clone()))
            .collect();
        let node = Node::start(&config.node.name, engine, monitor);
        for group in groups_to_start(&config) {
            node.group_online(&group)?;
        }
        tracing::info!(
            node = %config.node.name,
            resources = config.resources.len(),
            plugins = plugins.len(),
            "agent started; event history in {}",
            data_dir.join("events.jsonl").display()
        );
        Ok(Agent {
            node,
            resources,
            plugins,
            runtime,
            data_dir,
            history,
        })
    }

    /// Take every group offline (in reverse dependency order), close every
    /// resource, and stop.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: taking every group offline");
        self.node.shutdown().await;
        // Let the history writer catch up with the last events.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.history.abort();
        tracing::info!("agent stopped");
    }
}

async fn add_resource(
    monitor: &mut Monitor,
    plugins: &BTreeMap<String, Arc<Plugin>>,
    config: &AgentConfig,
    resource: &ResourceConfig,
    data_dir: &Path,
) -> Result<(), SpecError> {
    let Some(plugin) = plugins.get(&resource.type_name) else {
        return Err(SpecError::UnknownType {
            resource: resource.name.clone(),
            type_name: resource.type_name.clone(),
            known: plugins.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    let resource_dir = data_dir.join("resources").join(&resource.name);
    if crate::monitor::valid_resource_name(&resource.name) {
        // Best effort: the process capability reports a missing directory.
        let _ = std::fs::create_dir_all(&resource_dir);
    }
    let grants = config
        .plugins
        .get(&resource.type_name)
        .map(|g| Grants {
            allow_programs: g.allow_programs.clone(),
        })
        .unwrap_or_default();
    let spec = ResourceSpec {
        name: resource.name.clone(),
        type_name: resource.type_name.clone(),
        properties: resource.properties(),
        timing: resource.timing(),
        memory_limit: resource.memory_limit_mib.map(|mib| (mib as usize) << 20),
        data_dir: resource_dir,
        grants,
    };
    monitor.add(plugin.clone(), spec).await.map(drop)
}

/// The groups to bring online at start: the configured ones that say so,
/// and every implicit one-resource group.
fn groups_to_start(config: &AgentConfig) -> Vec<String> {
    let mut groups: Vec<String> = config
        .groups
        .iter()
        .filter(|g| g.online)
        .map(|g| g.name.clone())
        .collect();
    groups.extend(
        config
            .resources
            .iter()
            .filter(|r| r.group.is_none())
            .map(|r| r.name.clone()),
    );
    groups
}

/// The policy's view of the configuration: this node, the groups (a
/// resource without one gets a group of its own), the singleton types.
fn cluster_config(
    config: &AgentConfig,
    plugins: &BTreeMap<String, Arc<Plugin>>,
) -> Result<warden_policy::ClusterConfig> {
    let me = config.node.name.clone();
    let mut groups = Vec::new();
    for group in &config.groups {
        let mut g = warden_policy::GroupConfig::new(group.name.clone());
        g.preferred_owners = if group.preferred_owners.is_empty() {
            vec![me.clone()]
        } else {
            group.preferred_owners.clone()
        };
        g.failover_threshold = group.failover_threshold;
        g.failover_period = warden_policy::Millis::from_secs(group.failover_period_s);
        g.failback = parse_failback(&group.failback)?;
        groups.push(g);
    }
    for resource in &config.resources {
        let mut r =
            warden_policy::ResourceConfig::new(resource.name.clone(), resource.type_name.clone());
        r.depends_on = resource.depends_on.clone();
        r.restart = resource.restart_policy()?;
        match groups.iter_mut().find(|g| g.name == resource.group_name()) {
            Some(group) => group.resources.push(r),
            None => {
                let mut g = warden_policy::GroupConfig::new(resource.name.clone());
                g.preferred_owners = vec![me.clone()];
                g.resources.push(r);
                groups.push(g);
            }
        }
    }
    let singleton_types = plugins
        .values()
        .filter(|p| p.info().flags.contains(TypeFlags::CLUSTER_SINGLETON))
        .map(|p| p.name().to_string())
        .collect();
    Ok(warden_policy::ClusterConfig {
        nodes: vec![me],
        singleton_types,
        groups,
    })
}

/// Load the built-in types, then every `.wasm` file in `dir`. A file that
/// fails is reported in the second list and skipped. A file whose type has
/// the name of a built-in replaces the built-in.
pub async fn load_plugins(
    runtime: &Arc<Runtime>,
    dir: Option<&Path>,
) -> Result<(BTreeMap<String, Arc<Plugin>>, Vec<Rejected>)> {
    let mut plugins = BTreeMap::new();
    for (file, bytes) in crate::builtin::BUILTIN_PLUGINS {
        let plugin = Plugin::load(runtime, bytes)
            .await
            .with_context(|| format!("loading the built-in plugin {file}"))?;
        plugins.insert(plugin.name().to_string(), Arc::new(plugin));
    }
    let mut rejected = Vec::new();
    let Some(dir) = dir else {
        return Ok((plugins, rejected));
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the plugins directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    for file in files {
        let loaded = match std::fs::read(&file) {
            Ok(bytes) => Plugin::load(runtime, &bytes)
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(format!("could not read it: {err}")),
        };
        match loaded {
            Ok(plugin) => {
                let name = plugin.name().to_string();
                if plugins.contains_key(&name) {
                    tracing::warn!(
                        "{} replaces the type {name} loaded before it",
                        file.display()
                    );
                }
                tracing::info!(
                    "loaded type {name} {} from {}",
                    plugin.info().version,
                    file.display()
                );
                plugins.insert(name, Arc::new(plugin));
            }
            Err(reason) => rejected.push(Rejected { file, reason }),
        }
    }
    Ok((plugins, rejected))
}

/// Append every non-routine event to `path`, one JSON object per line.
async fn spawn_history(
    mut events: broadcast::Receiver<Event>,
    path: PathBuf,
) -> Result<JoinHandle<()>> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .with_context(|| format!("opening the event history {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let line = match events.recv().await {
                Ok(event) if event.is_routine() => continue,
                Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    format!("{{\"event\":\"history-lagged\",\"missed\":{missed}}}")
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let written = async {
                file.write_all(line.as_bytes()).await?;
                file.write_all(b"\n").await?;
                file.flush().await
            };
            if let Err(err) = written.await {
                tracing::error!("writing the event history {}: {err}", path.display());
            }
        }
    }))
}
