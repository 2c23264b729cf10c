//! The wasmtime engine, its linker and the epoch ticker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::epoch::{EpochTicker, Ticking};
use super::fiber_stacks::{IdleStacks, ReleasingStacks};
use super::host_state::HostState;
use super::limits;
use super::{data_preopen, data_quota};
use crate::contract::bindings::current;

/// Where the linear memories, tables and stacks of instances come from.
///
/// The choice trades address space for bounds checks; docs/operating.md and
/// docs/benchmarks.md ("The instance allocator at 50 000 resources") give
/// the measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allocator {
    /// Each store maps its memories when it is made and unmaps them when it
    /// is dropped, reserving [`ON_DEMAND_RESERVATION`] of address space per
    /// memory (more only for a memory that grows past it). Nothing is set
    /// aside up front, so the number of instances is bounded by what they
    /// use (and the kernel's `vm.max_map_count`), not by a slot count.
    /// Guest code checks its memory accesses explicitly.
    #[default]
    OnDemand,
    /// A pool of [`RuntimeConfig::max_instances`] slots reserved when the
    /// runtime starts, each memory slot the full 4 GiB a 32-bit memory can
    /// address plus guard pages: guest code needs no bounds checks, and a
    /// store reuses a slot instead of mapping memory. About 8 GiB of address
    /// space per slot, so a few thousand slots at most (about 10 500 on a
    /// 47-bit address space).
    Pool,
}

/// The address space reserved for each linear memory by the on-demand
/// allocator: the default per-resource memory limit, so a resource within
/// the default limit never moves its memory as it grows. A memory that
/// outgrows it is moved to a new mapping with this much room again
/// ([`Config::memory_reservation_for_growth`]).
pub const ON_DEMAND_RESERVATION: u64 = 64 << 20;

/// The unmapped guard after each linear memory with the on-demand
/// allocator: an access at a constant offset below it needs no check of
/// its own once its base address was checked.
const ON_DEMAND_GUARD: u64 = 64 << 10;

/// Settings of the runtime, shared by every plugin and resource on a node.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How often the engine's epoch advances while a call into a plugin is
    /// in flight (it does not advance otherwise). A guest in a pure-wasm
    /// loop yields to the scheduler once per tick, so this is also the
    /// precision with which a hung call is cut off.
    pub epoch_tick: Duration,
    /// Where instances' memories come from.
    pub allocator: Allocator,
    /// How many resource instances the pool has room for; used only with
    /// [`Allocator::Pool`].
    pub max_instances: u32,
    /// The largest memory limit any resource may be given, in bytes. Each
    /// resource's own limit (default 64 MiB) is enforced per store.
    pub max_memory_bytes: usize,
    /// Whether a store's fiber stack gives its pages back to the kernel
    /// once the store has made no call for two to three seconds (on-demand
    /// allocator only; `fiber_stacks`): the resident memory of an idle
    /// resource against a few page faults on its next call.
    pub release_stacks: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(1),
            allocator: Allocator::default(),
            max_instances: 1024,
            max_memory_bytes: 1 << 30,
            release_stacks: true,
        }
    }
}

/// The on-demand allocator's memories: [`ON_DEMAND_RESERVATION`] each, a
/// small guard, moved when they outgrow it. Each resource's own limit is
/// enforced by its store's limiter (`limits.rs`) whichever allocator.
fn on_demand(wasm: &mut Config) {
    wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(ON_DEMAND_RESERVATION)
        .memory_reservation_for_growth(ON_DEMAND_RESERVATION)
        .memory_guard_size(ON_DEMAND_GUARD)
        .memory_may_move(true)
        // A memory initialised by copying its data segments is one mapping;
        // mapping the module's image copy-on-write splits it into three
        // (the image, the rest of its first page, the rest). Mappings, not
        // bytes, are what runs out first at tens of thousands of resources
        // (`vm.max_map_count`, 65 530 by default), and a plugin's data
        // segments are a few KiB.
        .memory_init_cow(false);
}

/// The pool for `config.max_instances` instances.
fn pool(config: &RuntimeConfig) -> PoolingAllocationConfig {
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
        .max_core_instances_per_component(limits::MAX_CORE_INSTANCES as u32)
        .max_tables_per_component(limits::MAX_TABLES as u32)
        .max_memories_per_component(limits::MAX_MEMORIES as u32)
        .max_memory_size(config.max_memory_bytes);
    pool
}

/// The engine, the linker with every host capability, and the ticker that
/// drives epoch interruption. Cheap to share: clone the `Arc`.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: RuntimeConfig,
    ticker: EpochTicker,
    /// The sweep that gives idle stores' stacks back (`fiber_stacks`),
    /// when `config.release_stacks`.
    idle_stacks: Option<IdleStacks>,
}

impl Runtime {
    /// The engine, linker and epoch ticker for `config`.
    pub fn new(mut config: RuntimeConfig) -> Result<Arc<Runtime>> {
        // The pool's stacks are its own: nothing to release.
        config.release_stacks &= config.allocator == Allocator::OnDemand;
        let mut wasm = Config::new();
        wasm.wasm_component_model(true).epoch_interruption(true);
        match config.allocator {
            Allocator::OnDemand => {
                on_demand(&mut wasm);
                if config.release_stacks {
                    // With concurrency support (wasmtime's default) a call
                    // runs as a guest task whose worker fiber may stay
                    // suspended on its stack after the call returns, to be
                    // reused: such a stack must never be released. Without
                    // it each call is one fiber that has finished when the
                    // call returns (`fiber_stacks`'s invariant). No plugin
                    // contract uses the component model's async ABI.
                    wasm.concurrency_support(false)
                        .with_host_stack(Arc::new(ReleasingStacks));
                }
            }
            Allocator::Pool => {
                wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(&config)));
            }
        }
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
        // `/data`, its descriptor held only while a call uses it.
        data_preopen::add_to_linker(&mut linker, HostState::preopens)
            .map_err(anyhow::Error::from)
            .context("linking wasi:filesystem/preopens")?;
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
        let idle_stacks = config
            .release_stacks
            .then(IdleStacks::start)
            .transpose()
            .context("starting the idle stacks' sweep thread")?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            config,
            ticker,
            idle_stacks,
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

    /// The sweep that gives idle stores' stacks back, if this runtime
    /// releases them (on-demand allocator, `release_stacks`): `bounded`
    /// tells it when each call begins and returns.
    pub(crate) fn idle_stacks(&self) -> Option<&IdleStacks> {
        self.idle_stacks.as_ref()
    }
}
