//! `[node]` and `[runtime]`: this agent's own name, directories and
//! shutdown, and the room its plugins get.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Deserialize;

/// `[node]`: this agent's name, directories and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name: in a cluster, one of `[cluster] nodes`.
    pub name: String,
    /// Where the agent keeps its store, history, compiled plugins and the
    /// resources' directories.
    pub data_dir: PathBuf,
    /// A directory of `.wasm` resource types to load and watch; none: the
    /// built-in types only.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// What SIGTERM does to the services: take every group offline in
    /// reverse dependency order ("offline", the default), or leave them
    /// running for the next agent to adopt ("leave-running": restart the
    /// agent alone).
    #[serde(default)]
    pub on_shutdown: OnShutdown,
}

/// What SIGTERM does to the services (`[node] on_shutdown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnShutdown {
    /// Take every group offline in reverse dependency order (the default).
    #[default]
    Offline,
    /// Leave the services running for the next agent to adopt: restart the
    /// agent alone.
    LeaveRunning,
}

/// `[runtime]`: the room plugins get.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Where instances' memories come from: "on-demand" (the default),
    /// mapped per store with no count set aside up front, or "pool", slots
    /// reserved at start (see docs/operating.md).
    #[serde(default)]
    pub allocator: AllocatorChoice,
    /// With `allocator = "pool"`: its room, how many resources' stores
    /// may exist at once (default 1024; about 10 500 at most, each slot
    /// reserving 8 GiB of address space). Ignored, with a warning at
    /// start, by the on-demand allocator, which has no slots.
    #[serde(default)]
    pub max_instances: Option<u32>,
    /// The default memory limit of a resource's store, in MiB (default 64).
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// With the on-demand allocator: give each resource's call stack back
    /// to the kernel once the resource has made no call into its plugin
    /// for two to three seconds (default true), so an idle resource holds
    /// none of it resident while one checked every second keeps it; false
    /// keeps every stack's pages for the next call.
    #[serde(default = "default_release_idle_stacks")]
    pub release_idle_stacks: bool,
}

/// `[runtime] allocator`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Memories mapped per store: no cap on the count (the default).
    #[default]
    OnDemand,
    /// Slots reserved at start: no bounds checks in guest code.
    Pool,
}

impl RuntimeSection {
    /// The pool's room: `max_instances`, or 1024.
    pub fn pool_instances(&self) -> u32 {
        self.max_instances.unwrap_or(DEFAULT_POOL_INSTANCES)
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            allocator: AllocatorChoice::default(),
            max_instances: None,
            memory_limit_mib: default_memory_limit_mib(),
            release_idle_stacks: default_release_idle_stacks(),
        }
    }
}

/// The pool's room when `max_instances` is not given.
const DEFAULT_POOL_INSTANCES: u32 = 1024;

fn default_memory_limit_mib() -> u64 {
    64
}

fn default_release_idle_stacks() -> bool {
    true
}

/// The largest memory limit, in MiB, that a resource may be given: what
/// the runtime's instance pool gives any one store.
pub fn max_memory_limit_mib() -> u64 {
    (crate::runtime::RuntimeConfig::default().max_memory_bytes >> 20) as u64
}

/// A memory limit in MiB is 1 to [`max_memory_limit_mib`]: 0 would let no
/// plugin instantiate, and more than the pool gives is never reached.
pub(super) fn check_memory_limit_mib(mib: u64) -> Result<()> {
    let max = max_memory_limit_mib();
    if !(1..=max).contains(&mib) {
        bail!("{mib} is not a memory limit: give 1 to {max} (MiB)");
    }
    Ok(())
}
