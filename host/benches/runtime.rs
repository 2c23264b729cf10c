//! What the plugin runtime costs, measured on the `chaos` test plugin.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p warden --bench runtime
//! ```
//!
//! It prints a markdown table (docs/benchmarks.md explains each row) of:
//!
//! 1. **Call overhead**: `looks-alive`, `is-alive` and `control` into a live,
//!    healthy instance, through [`Instance`] exactly as the monitor calls
//!    them (deadline, cancel channel, `bounded`). The instance is opened
//!    first, so instantiation is not counted.
//! 2. **Instantiation**: [`Instance::discard`] then [`Instance::open`], that
//!    is a fresh store from the pooling allocator, instantiation and the
//!    guest's `open`. Dropping the store is reported on its own row.
//! 3. **Loading a type**: [`Plugin::load`] (compile, contract check, link,
//!    `describe`) and [`Plugin::load_precompiled`] of an artifact made once
//!    with `Engine::precompile_component`.
//! 4. **Cut-off precision**: how long after its 50 ms deadline a hung
//!    `is-alive` really returns, for a guest spinning in wasm (`hang`, cut
//!    off at an epoch yield) and one blocked in a host sleep (`block`). The
//!    instance is opened before each timed call, so only the call is timed
//!    (it includes throwing the store away). A last row runs three hung
//!    calls at once, more than the two worker threads.
//! 5. **Memory**: the growth of the process's resident set per opened
//!    resource, a rough figure.
//!
//! Everything runs on a tokio multi-thread runtime with two workers, like a
//! small node, and takes well under a minute in release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use warden::contract::Health;
use warden::runtime::{
    Allocator, CallError, Grants, Instance, InstanceConfig, Plugin, ResourceContext, ResourceDirs,
    Runtime, RuntimeConfig,
};

#[path = "support/stats.rs"]
mod stats;
use stats::human;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");

/// Calls per health-check row, after `WARMUP` untimed ones.
const CALLS: usize = 20_000;
const WARMUP: usize = 1_000;
/// Discard + open rounds.
const INSTANTIATIONS: usize = 2_000;
/// `Plugin::load` rounds: each compiles the component from scratch.
const COMPILES: usize = 10;
const PRECOMPILED_LOADS: usize = 50;
/// Hung calls per cut-off row, and the deadline they are given.
const CUTOFFS: usize = 100;
const CUTOFF_TIMEOUT: Duration = Duration::from_millis(50);
/// Hung calls run at once in the contention row, and how many rounds.
const CONCURRENT_HANGS: usize = 3;
const CONTENTION_ROUNDS: usize = 34;
/// Resources held open at once for the memory figure.
const MEMORY_RESOURCES: usize = 40;

/// Generous: the healthy calls must never be cut off.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(run());
}

async fn run() {
    let started = Instant::now();
    let allocator = match std::env::var("WARDEN_BENCH_ALLOCATOR").as_deref() {
        Ok("pool") => Allocator::Pool,
        _ => Allocator::OnDemand,
    };
    let release_stacks = std::env::var("WARDEN_BENCH_RELEASE_STACKS").as_deref() != Ok("0");
    let runtime = Runtime::new(RuntimeConfig {
        allocator,
        release_stacks,
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let bytes = std::fs::read(CHAOS).expect("chaos.wasm, built by host/build.rs");
    let plugin = Arc::new(Plugin::load(&runtime, &bytes).await.expect("chaos loads"));
    let mut rows = Vec::new();

    // 1. Call overhead into a live, healthy instance.
    let mut healthy = Resource::new(&plugin, "healthy", "none");
    healthy.instance.open().await.expect("open");
    let generation = healthy.instance.generations();
    for call in [Call::LooksAlive, Call::IsAlive, Call::Control] {
        for _ in 0..WARMUP {
            healthy.call(call).await;
        }
        let mut times = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let t = Instant::now();
            healthy.call(call).await;
            times.push(t.elapsed());
        }
        rows.push(Row::new(
            format!("{} call, live instance", call.name()),
            times,
        ));
    }
    assert_eq!(
        healthy.instance.generations(),
        generation,
        "the healthy instance was rebuilt during the call benchmark"
    );

    // 2. Instantiation from the pool, and giving the slot back.
    for _ in 0..WARMUP / 10 {
        healthy.instance.discard();
        healthy.instance.open().await.expect("open");
    }
    let mut opens = Vec::with_capacity(INSTANTIATIONS);
    let mut discards = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        let t = Instant::now();
        healthy.instance.discard();
        discards.push(t.elapsed());
        let t = Instant::now();
        healthy.instance.open().await.expect("open");
        opens.push(t.elapsed());
    }
    rows.push(Row::new("instantiate + `open` (`Instance::open`)", opens));
    rows.push(Row::new("drop the store (`Instance::discard`)", discards));
    drop(healthy);

    // 3. Loading the type: from the .wasm, and from a precompiled artifact.
    let mut compiles = Vec::with_capacity(COMPILES);
    for _ in 0..COMPILES {
        let t = Instant::now();
        let loaded = Plugin::load(&runtime, &bytes).await.expect("chaos loads");
        compiles.push(t.elapsed());
        drop(loaded);
    }
    rows.push(Row::new(
        "`Plugin::load` (compile + check + link + `describe`)",
        compiles,
    ));
    let t = Instant::now();
    let artifact = runtime
        .engine()
        .precompile_component(&bytes)
        .expect("precompile");
    rows.push(Row::new(
        "`Engine::precompile_component`",
        vec![t.elapsed()],
    ));
    let mut loads = Vec::with_capacity(PRECOMPILED_LOADS);
    for _ in 0..PRECOMPILED_LOADS {
        let t = Instant::now();
        // SAFETY: the artifact was made just above by this very engine.
        let loaded = unsafe { Plugin::load_precompiled(&runtime, &artifact) }
            .await
            .expect("precompiled chaos loads");
        loads.push(t.elapsed());
        drop(loaded);
    }
    rows.push(Row::new(
        "`Plugin::load_precompiled` (deserialize + check + link + `describe`)",
        loads,
    ));

    // 4. Cut-off precision: time past the deadline until the call returns.
    for fault in ["hang:is-alive", "block:is-alive"] {
        let mut hung = Resource::new(&plugin, fault, fault);
        let mut late = Vec::with_capacity(CUTOFFS);
        for _ in 0..CUTOFFS {
            late.push(hung.cut_off().await);
        }
        rows.push(Row::new(
            format!("`{fault}` returns this long after its 50 ms deadline"),
            late,
        ));
    }
    let mut hung: Vec<Resource> = (0..CONCURRENT_HANGS)
        .map(|i| Resource::new(&plugin, &format!("hang-{i}"), "hang:is-alive"))
        .collect();
    let mut late = Vec::with_capacity(CONTENTION_ROUNDS * CONCURRENT_HANGS);
    for _ in 0..CONTENTION_ROUNDS {
        let calls = hung.drain(..).map(|mut resource| {
            tokio::spawn(async move {
                let late = resource.cut_off().await;
                (resource, late)
            })
        });
        for call in calls.collect::<Vec<_>>() {
            let (resource, one) = call.await.expect("cut-off task");
            late.push(one);
            hung.push(resource);
        }
    }
    rows.push(Row::new(
        format!("same for `hang:is-alive`, {CONCURRENT_HANGS} at once on 2 workers"),
        late,
    ));
    drop(hung);

    // 5. Guest code that does nothing but load and store at computed
    // addresses: what the on-demand allocator's explicit bounds checks cost.
    rows.push(Row::new(
        format!("{SWEEP_MIB} MiB load-add-store sweep in wasm"),
        memory_sweeps(&runtime),
    ));

    // 6. Resident memory per open resource (rough: the pool reserves address
    // space up front; this counts only the pages the instances touch).
    let before = resident_bytes();
    let mut held = Vec::with_capacity(MEMORY_RESOURCES);
    for i in 0..MEMORY_RESOURCES {
        let mut resource = Resource::new(&plugin, &format!("held-{i}"), "none");
        resource.instance.open().await.expect("open");
        resource.call(Call::IsAlive).await;
        held.push(resource);
    }
    let after = resident_bytes();
    drop(held);

    println!("{}", table(&rows));
    println!();
    println!(
        "- chaos.wasm: {} KiB; precompiled artifact: {} KiB",
        bytes.len() / 1024,
        artifact.len() / 1024
    );
    match (before, after) {
        (Some(before), Some(after)) => println!(
            "- resident memory per open resource: ~{} KiB ({MEMORY_RESOURCES} resources opened)",
            after.saturating_sub(before) / MEMORY_RESOURCES as u64 / 1024
        ),
        _ => println!("- resident memory per open resource: /proc/self/status not readable"),
    }
    println!("- allocator: {allocator:?} (WARDEN_BENCH_ALLOCATOR=pool for the pool)");
    println!(
        "- machine: {} CPUs, {}; tokio multi-thread, 2 workers; epoch tick {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        runtime.config().epoch_tick
    );
    println!("- total run time: {:.1} s", started.elapsed().as_secs_f64());
}

/// The memory one sweep walks, and how many sweeps are timed.
const SWEEP_MIB: u32 = 16;
const SWEEPS: usize = 30;

/// A core module, compiled by `runtime`'s engine (so with its memory
/// settings), that walks its memory four bytes at a time: load, add,
/// store. Guest code, so optimised by Cranelift whatever the host's build.
fn memory_sweeps(runtime: &Runtime) -> Vec<Duration> {
    let pages = SWEEP_MIB * 16;
    let bytes = SWEEP_MIB << 20;
    let wat = format!(
        r#"(module
          (memory {pages})
          (func (export "sweep") (result i32)
            (local $i i32) (local $acc i32)
            (loop $next
              (local.set $acc (i32.add (local.get $acc) (i32.load (local.get $i))))
              (i32.store (local.get $i) (local.get $acc))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br_if $next (i32.lt_u (local.get $i) (i32.const {bytes}))))
            (local.get $acc)))"#
    );
    let module = wasmtime::Module::new(runtime.engine(), wat).expect("the sweep compiles");
    let mut store = wasmtime::Store::new(runtime.engine(), ());
    // The epoch advances only while a `bounded` call holds the ticker; none
    // does here, and a sweep is never cut off.
    store.set_epoch_deadline(1 << 40);
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiate");
    let sweep = instance
        .get_typed_func::<(), i32>(&mut store, "sweep")
        .expect("sweep export");
    sweep.call(&mut store, ()).expect("warm-up sweep");
    (0..SWEEPS)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(sweep.call(&mut store, ()).expect("sweep"));
            t.elapsed()
        })
        .collect()
}

/// One chaos resource: its sandbox and the channels the sandbox needs.
struct Resource {
    instance: Instance,
    /// Held so the cancel channel stays open, as the monitor's is.
    _cancel: watch::Sender<u64>,
    _exits: mpsc::UnboundedReceiver<warden::runtime::ProcessExit>,
}

impl Resource {
    fn new(plugin: &Arc<Plugin>, name: &str, fault: &str) -> Resource {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let root = tempfile::tempdir().expect("a temporary directory").keep();
        let dirs = ResourceDirs::inside(&root);
        dirs.create().expect("resource directories");
        let context = ResourceContext::new(name, "chaos", Grants::default(), dirs, exits_tx);
        // What the monitor would pass: the fault plus every default.
        let properties = [("fault", fault), ("online-ms", "0"), ("progress-ms", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec();
        let (cancel, cancel_rx) = watch::channel(0u64);
        Resource {
            instance: Instance::new(
                plugin.clone(),
                context,
                properties,
                InstanceConfig::default(),
                cancel_rx,
            ),
            _cancel: cancel,
            _exits: exits,
        }
    }

    /// Make one call into a healthy resource, checking its answer.
    async fn call(&mut self, call: Call) {
        match call {
            Call::LooksAlive => {
                let health = self.instance.looks_alive(CALL_TIMEOUT).await;
                assert!(matches!(health, Ok(Health::Healthy)), "{health:?}");
            }
            Call::IsAlive => {
                let health = self.instance.is_alive(CALL_TIMEOUT).await;
                assert!(matches!(health, Ok(Health::Healthy)), "{health:?}");
            }
            Call::Control => {
                let answer = self.instance.control("heal", "", CALL_TIMEOUT).await;
                assert!(matches!(answer, Ok(Ok(_))), "{answer:?}");
            }
        }
    }

    /// Open the (faulty) resource, then time one `is-alive` that hangs until
    /// it is cut off. Returns how long after the deadline the call returned.
    async fn cut_off(&mut self) -> Duration {
        self.instance.open().await.expect("open");
        let t = Instant::now();
        let result = self.instance.is_alive(CUTOFF_TIMEOUT).await;
        let elapsed = t.elapsed();
        assert!(
            matches!(result, Err(CallError::TimedOut { .. })),
            "expected a time-out, got {result:?}"
        );
        elapsed.saturating_sub(CUTOFF_TIMEOUT)
    }
}

/// The calls whose overhead is measured.
#[derive(Debug, Clone, Copy)]
enum Call {
    LooksAlive,
    IsAlive,
    Control,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::LooksAlive => "`looks-alive`",
            Call::IsAlive => "`is-alive`",
            Call::Control => "`control(\"heal\", \"\")`",
        }
    }
}

/// One line of the table: a measurement and its samples, sorted.
struct Row {
    what: String,
    samples: Vec<Duration>,
}

impl Row {
    fn new(what: impl Into<String>, mut samples: Vec<Duration>) -> Row {
        samples.sort_unstable();
        Row {
            what: what.into(),
            samples,
        }
    }

    /// The nearest-rank `q` quantile.
    fn quantile(&self, q: f64) -> Duration {
        let n = self.samples.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.samples[rank - 1]
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | n | min | median | p99 | max |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.what,
            row.samples.len(),
            human(row.quantile(0.0)),
            human(row.quantile(0.5)),
            human(row.quantile(0.99)),
            human(row.quantile(1.0)),
        ));
    }
    out.pop();
    out
}

/// VmRSS of this process, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
