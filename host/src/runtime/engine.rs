//! The wasmtime engine, its linker and the epoch ticker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::data_quota;
use super::epoch::{EpochTicker, Ticking};
use super::host_state::HostState;
use crate::contract::bindings::current;

/// Settings of the runtime, shared by every plugin and resource on a node.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How often the engine's epoch advances while a call into a plugin is
    /// in flight (it does not advance otherwise). A guest in a pure-wasm
    /// loop yields to the scheduler once per tick, so this is also the
    /// precision with which a hung call is cut off.
    pub epoch_tick: Duration,
    /// How many resource instances the pooling allocator has room for.
    pub max_instances: u32,
    /// The largest memory limit any resource may be given, in bytes. Each
    /// resource's own limit (default 64 MiB) is enforced per store.
    pub max_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(1),
            max_instances: 1024,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// The most core instances one component may have. A Rust component has
/// about five (its module and wit-component's adapters); an interpreter
/// packaged as a component (componentize-py, componentize-js) a dozen or so.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// The most tables one component may have (about two per core instance).
const MAX_TABLES_PER_COMPONENT: u32 = 64;

/// The engine, the linker with every host capability, and the ticker that
/// drives epoch interruption. Cheap to share: clone the `Arc`.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: RuntimeConfig,
    ticker: EpochTicker,
}

impl Runtime {
    /// The engine, linker and epoch ticker for `config`.
    pub fn new(config: RuntimeConfig) -> Result<Arc<Runtime>> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = config.max_instances;
        // A Rust component has one component instance, a few core instances
        // (the module plus wit-component's shims), one memory and a couple of
        // tables. Leave headroom: a plugin that needs more than this fails to
        // instantiate with wasmtime's message, it does not corrupt others.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            // One component's share of the pool: without these a single
            // plugin could take every core instance and table slot (the
            // defaults are unlimited per component) and no other resource
            // could instantiate.
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_memories_per_component(2)
            .max_memory_size(config.max_memory_bytes);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // The same filesystem, with each resource's /data quota checked
        // before every call that grows it.
        data_quota::add_to_linker(&mut linker, HostState::quota_filesystem)
            .map_err(anyhow::Error::from)
            .context("linking the quota-checked wasi:filesystem/types")?;
        current::Plugin::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("linking the warden:resource host interfaces")?;
        super::older_contracts::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the host interfaces of the older contract versions")?;

        let ticker = EpochTicker::start(&engine, config.epoch_tick)
            .context("starting the epoch ticker thread")?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            config,
            ticker,
        }))
    }

    /// The wasmtime engine, for compiling.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings it was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Keep the epoch advancing while the guard lives: held by `bounded`
    /// for every call into a plugin, and nowhere else.
    pub(crate) fn ticking(&self) -> Ticking<'_> {
        self.ticker.hold()
    }
}
