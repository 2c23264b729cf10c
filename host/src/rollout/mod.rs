//! Plugin builds across a cluster: what this node runs is published, a
//! build dropped into this node's plugins directory is rolled out to every
//! node, and a build another node rolled out is taken here.
//!
//! The rollout never swaps anything itself. A node that takes a build
//! fetches it from etcd (`cluster::plugins`), checks its SHA-256, and
//! writes it atomically into its own plugins directory as
//! `STEM@SHA12.wasm` (the name [`TypeSources::file_for`] gives, which the
//! directory's rules accept); the directory's watcher then takes it as it
//! takes any dropped file: the load's checks, the name's owner, a pin, and
//! the swap's checks on this node's resources. So a version a swap
//! rejects on some node is rejected there with the usual reason, rolled
//! back there, remembered there (not run again after a restart), and
//! visible per node in `warden plugin list`.
//!
//! Only a build that this node's directory took from the operator (not
//! one the rollout wrote) and installed is announced, and only if no
//! higher version of the type is announced. A build the node runs since
//! it started from such a file (dropped while the agent was stopped) is
//! offered too, once the task exists (`start.rs`), but replaces only a
//! lower announced version, not another build of its own version. A node
//! takes an announced build only if it does not run a higher version. So
//! two nodes never hand a type back and forth, and a downgrade stays the
//! operator's decision on each node (`warden plugin rollback`, `pin`).
//!
//! Everything runs in one task that looks every [`EVERY`]: publish this
//! node's record if it changed, read every node's record (the view
//! `GET /v1/plugins` shows) and log an error for a type whose contract
//! versions are incompatible across nodes, and look for announced builds
//! to take. Polling keeps it simple and robust (a few small reads a
//! second; a watch on a dead connection can hang without an error).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinHandle;

mod pins;
mod start;
mod take;

use crate::cluster::plugins::{
    BUILT_IN, ClusterPlugins, FILE, NodePlugins, Replace, RunningType, Stored,
    contracts_compatible, sha256_hex,
};
use crate::monitor::{Event, EventKind};
use crate::node::Node;
use crate::runtime::Plugin;
use crate::type_sources::TypeSources;

/// How often the task looks.
pub const EVERY: Duration = Duration::from_secs(1);

/// This node's side of the cluster's plugin builds.
pub struct Rollout {
    plugins: Arc<ClusterPlugins>,
    node: Node,
    /// The plugins directory; `None`: builds of others cannot be taken.
    dir: Option<PathBuf>,
    sources: TypeSources,
    /// The SHA-256 of every built-in component, to tell a built-in apart.
    builtins: HashSet<String>,
    /// Builds this run has dealt with (taken, refused, or written here):
    /// not looked at again until the agent restarts.
    done: Mutex<HashSet<String>>,
    /// Builds the rollout wrote into the directory: never announced again.
    written: Mutex<HashSet<String>>,
    /// The last contract mismatch logged, so it is logged once.
    mismatch: Mutex<String>,
    /// The types this node holds pinned for the cluster (`pins/TYPE`),
    /// with the version: unpinned here when the key goes.
    cluster_pins: Mutex<BTreeMap<String, String>>,
    /// Cluster pins tried here once already (type, version).
    pins_tried: Mutex<HashSet<(String, String)>>,
}

impl Rollout {
    /// The rollout of node `node`: `plugins` is what the cluster keeps, `dir`
    /// the plugins directory builds are written to, `sources` which file may
    /// hold which type.
    pub fn new(
        plugins: Arc<ClusterPlugins>,
        node: Node,
        dir: Option<PathBuf>,
        sources: TypeSources,
    ) -> Arc<Rollout> {
        let builtins = crate::builtin::BUILTIN_PLUGINS
            .iter()
            .map(|(_, bytes)| sha256_hex(bytes))
            .collect();
        Arc::new(Rollout {
            plugins,
            node,
            dir,
            sources,
            builtins,
            done: Mutex::new(HashSet::new()),
            written: Mutex::new(HashSet::new()),
            mismatch: Mutex::new(String::new()),
            cluster_pins: Mutex::new(BTreeMap::new()),
            pins_tried: Mutex::new(HashSet::new()),
        })
    }

    /// Every node's record as last read.
    pub fn nodes(&self) -> BTreeMap<String, NodePlugins> {
        self.plugins.nodes()
    }

    /// Run until aborted.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let rollout = self.clone();
        tokio::spawn(async move {
            loop {
                rollout.round().await;
                tokio::time::sleep(EVERY).await;
            }
        })
    }

    async fn round(&self) {
        if let Err(err) = self.publish().await {
            tracing::debug!("{err:#}");
        }
        match self.plugins.refresh().await {
            Ok(nodes) => self.check_contracts(&nodes),
            Err(err) => tracing::debug!("{err:#}"),
        }
        match self.plugins.announcements().await {
            Ok(list) => {
                for announcement in list {
                    self.take(&announcement).await;
                }
            }
            Err(err) => tracing::debug!("{err:#}"),
        }
        if let Err(err) = self.follow_pins().await {
            tracing::debug!("{err:#}");
        }
    }

    /// Put this node's record at `plugins/NODE` if it changed.
    async fn publish(&self) -> Result<()> {
        let running = self.node.plugins().await?;
        let pinned = self.node.pinned().await?;
        let record = NodePlugins {
            agent_contract: crate::contract::VERSION.to_string(),
            types: running
                .iter()
                .map(|p| self.running_type(p, &pinned))
                .collect(),
        };
        self.plugins.publish(&record).await
    }

    fn running_type(&self, plugin: &Plugin, pinned: &BTreeSet<String>) -> RunningType {
        let sha256 = plugin.source_sha256();
        let builtin = sha256.as_ref().is_some_and(|s| self.builtins.contains(s));
        RunningType {
            type_name: plugin.name().to_string(),
            version: plugin.info().version.clone(),
            contract: plugin.contract().to_string(),
            sha256,
            source: if builtin { BUILT_IN } else { FILE }.to_string(),
            pinned: pinned.contains(plugin.name()),
        }
    }

    /// Log an error, once per situation, for every type whose contract
    /// versions on two nodes cannot run side by side.
    fn check_contracts(&self, nodes: &BTreeMap<String, NodePlugins>) {
        let mut by_type: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (node, record) in nodes {
            for t in &record.types {
                by_type
                    .entry(&t.type_name)
                    .or_default()
                    .push((node, &t.contract));
            }
        }
        let mut found = Vec::new();
        for (type_name, contracts) in by_type {
            let Some((_, first)) = contracts.first() else {
                continue;
            };
            if contracts
                .iter()
                .all(|(_, c)| contracts_compatible(first, c))
            {
                continue;
            }
            let list: Vec<String> = contracts
                .iter()
                .map(|(node, c)| format!("{node} {c}"))
                .collect();
            found.push(format!(
                "type {type_name} runs against incompatible contracts: {}",
                list.join(", ")
            ));
        }
        let text = found.join("; ");
        let mut last = self.mismatch.lock().unwrap_or_else(|p| p.into_inner());
        if *last != text {
            if !text.is_empty() {
                tracing::error!(
                    "{text}; a group failing over between these nodes may not run the same \
                     type: roll one build out to every node"
                );
            }
            *last = text;
        }
    }

    /// The plugins directory installed `plugin` from `file`: store and
    /// announce it, unless the rollout wrote it. In a task of its own, so
    /// the directory's watcher does not wait on etcd.
    pub fn offer(self: &Arc<Self>, file: &Path, bytes: Vec<u8>, plugin: Arc<Plugin>) {
        self.offer_as(file, bytes, plugin, Offered::Installed);
    }

    fn offer_as(self: &Arc<Self>, file: &Path, bytes: Vec<u8>, plugin: Arc<Plugin>, how: Offered) {
        let sha = sha256_hex(&bytes);
        let ours = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&sha);
        if ours {
            return;
        }
        let rollout = self.clone();
        let file = file.display().to_string();
        tokio::spawn(async move {
            let name = plugin.name().to_string();
            let version = plugin.info().version.clone();
            let contract = plugin.contract().to_string();
            let answer = match rollout
                .plugins
                .store(&name, &version, &contract, &bytes, how.replace())
                .await
            {
                Ok(Stored::Announced) => {
                    rollout.first_look(&sha);
                    tracing::info!(
                        "{name} {version} from {file} stored in etcd and announced to every node"
                    );
                    Ok(format!(
                        "stored in etcd (SHA-256 {sha}) and announced to every node"
                    ))
                }
                Ok(Stored::AlreadyAnnounced) => return,
                // At start a node may simply be behind: it takes the
                // announced build at its next look, nothing to report.
                Ok(Stored::NewerAnnounced(announced)) if how == Offered::AtStart => {
                    tracing::info!(
                        "{name} {version} from {file} not announced: {announced} is announced already"
                    );
                    return;
                }
                Ok(Stored::SameVersionAnnounced) => {
                    tracing::info!(
                        "{name} {version} from {file} not announced: another build of {version} \
                         is announced already"
                    );
                    return;
                }
                Ok(Stored::NewerAnnounced(newer)) => Err(format!(
                    "not rolled out: {newer} of {name} is announced to every node already"
                )),
                Err(err) => Err(format!("not rolled out: {err:#}")),
            };
            let (action, reason) = match answer {
                Ok(note) => ("announced", note),
                Err(reason) => {
                    tracing::error!("{file}: {reason}");
                    ("rollout-refused", reason)
                }
            };
            rollout.node.record(Event::now(
                &name,
                EventKind::Plugin {
                    action: action.to_string(),
                    version: Some(version),
                    reason: Some(reason),
                },
            ));
        });
    }
}

/// How a build came to be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    /// The plugins directory installed it while the agent ran.
    Installed,
    /// The agent runs it since it started (`start.rs`).
    AtStart,
}

impl Offered {
    fn replace(self) -> Replace {
        match self {
            Offered::Installed => Replace::LowerOrRebuild,
            Offered::AtStart => Replace::LowerOnly,
        }
    }
}

/// A lock, even if a holder panicked (the sets stay usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
