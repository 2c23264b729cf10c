//! What a resource type written in Python costs beside the same type in
//! Rust: examples/redis-type-py (componentize-py, a whole CPython per
//! component) against examples/redis-type. Prints one markdown table.
//!
//! Run with (the components are built first if missing; componentize-py
//! as host/tests/all/lang_py.rs finds it):
//!
//! ```text
//! cargo bench -p warden --bench lang_py
//! ```
//!
//! For each component:
//! - **size**: the `.wasm` file;
//! - **first load**: `CompileCache::load` into an empty cache (compile,
//!   store the artifact, instantiate and `describe`), wall time and the
//!   process's CPU (the compile runs on several threads);
//! - **cached load**: the same again, the artifact now in the cache;
//! - **memory per open resource**: the process's resident memory before
//!   and after `RESOURCES` resources are opened and called once (a
//!   looks-alive: the store, the instance and the interpreter's state are
//!   made), divided by `RESOURCES`;
//! - **CPU per is-alive**: one resource online against a real
//!   `redis-server`, `CALLS` is-alive calls (after `WARMUP`) on a
//!   current-thread runtime, this thread's CPU per call
//!   (`CLOCK_THREAD_CPUTIME_ID`), median and p99.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use warden::contract::Health;
use warden::monitor::{ResourceSpec, TimingOverrides, validate_spec};
use warden::runtime::{
    CacheOutcome, CallDeadline, CompileCache, Grants, Instance, InstanceConfig, Plugin,
    ResourceContext, ResourceDirs, Runtime, RuntimeConfig,
};

#[path = "../tests/common/ports.rs"]
#[allow(dead_code)]
mod ports;

const REDIS: &str = "/usr/bin/redis-server";
const RESOURCES: usize = 20;
const CALLS: usize = 1_000;
const WARMUP: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf();
    let components = [
        ("Rust (`examples/redis-type`)", rust_component(&root)),
        ("Python (`examples/redis-type-py`)", python_component(&root)),
    ];
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current-thread runtime");
    println!(
        "| Redis type in | size | first load: wall / CPU | cached load: wall / CPU | \
         memory per open resource | CPU per is-alive: median / p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, wasm) in &components {
        let row = tokio.block_on(measure(wasm));
        println!(
            "| {what} | {:.1} MB | {} / {} | {} / {} | {:.1} MiB | {} / {} |",
            row.size as f64 / 1e6,
            human(row.first.0),
            human(row.first.1),
            human(row.cached.0),
            human(row.cached.1),
            row.memory_per_resource as f64 / (1024.0 * 1024.0),
            human(quantile(&row.is_alive, 0.5)),
            human(quantile(&row.is_alive, 0.99)),
        );
    }
    println!();
    println!(
        "- {RESOURCES} resources for the memory column; {CALLS} is-alive calls after {WARMUP}; \
         profile: {}; {} CPUs; total run time {:.1} s",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
}

struct Row {
    size: u64,
    first: (Duration, Duration),
    cached: (Duration, Duration),
    memory_per_resource: u64,
    is_alive: Vec<Duration>,
}

async fn measure(wasm: &Path) -> Row {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("read {}: {e}", wasm.display()));
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let cache = CompileCache::open(dir.path().join("compiled")).expect("compile cache");

    let timed = || (Instant::now(), process_cpu());
    let (w, c) = timed();
    let (_, outcome) = cache.load(&runtime, &bytes).await.expect("first load");
    let first = (w.elapsed(), process_cpu().saturating_sub(c));
    assert!(matches!(outcome, CacheOutcome::Miss), "{outcome:?}");
    let (w, c) = timed();
    let (plugin, outcome) = cache.load(&runtime, &bytes).await.expect("cached load");
    let cached = (w.elapsed(), process_cpu().saturating_sub(c));
    assert!(matches!(outcome, CacheOutcome::Hit), "{outcome:?}");
    let plugin = Arc::new(plugin);

    // Memory: resources opened and called once, no service needed (the
    // looks-alive finds no process and says so).
    let before = resident_bytes();
    let mut open = Vec::new();
    for i in 0..RESOURCES {
        let address = ports::free_port().to_string();
        let mut resource = Resource::open(&plugin, dir.path(), &format!("m{i}"), &address).await;
        let health = resource.instance.looks_alive(TIMEOUT).await;
        assert!(matches!(health, Ok(Health::Failed(_))), "{health:?}");
        open.push(resource);
    }
    let memory_per_resource = resident_bytes().saturating_sub(before) / RESOURCES as u64;
    drop(open);

    // CPU per is-alive against a real Redis.
    let address = ports::free_port().to_string();
    let mut resource = Resource::open(&plugin, dir.path(), "cpu", &address).await;
    let online = resource
        .instance
        .online(CallDeadline::fixed(Duration::from_secs(60)))
        .await;
    assert!(matches!(online, Ok(Ok(()))), "online: {online:?}");
    for _ in 0..WARMUP {
        resource.is_alive().await;
    }
    let mut is_alive = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let c = thread_cpu();
        resource.is_alive().await;
        is_alive.push(thread_cpu().saturating_sub(c));
    }
    is_alive.sort_unstable();
    let _ = resource.instance.terminate(TIMEOUT).await;
    Row {
        size: bytes.len() as u64,
        first,
        cached,
        memory_per_resource,
        is_alive,
    }
}

/// One resource of the Redis type, its sandbox and the channels it needs.
struct Resource {
    instance: Instance,
    _cancel: watch::Sender<u64>,
    _exits: mpsc::UnboundedReceiver<warden::runtime::ProcessExit>,
}

impl Resource {
    async fn open(plugin: &Arc<Plugin>, dir: &Path, name: &str, address: &str) -> Resource {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        let properties = vec![("address".to_string(), address.to_string())];
        let spec = ResourceSpec {
            name: name.to_string(),
            type_name: plugin.name().to_string(),
            properties: properties.clone(),
            timing: TimingOverrides::default(),
            memory_limit: None,
            dirs: ResourceDirs {
                data: data.clone(),
                private: data.with_extension("private"),
            },
            grants: Grants {
                allow_programs: vec![PathBuf::from(REDIS)],
                configured: properties,
                ..Grants::default()
            },
        };
        let full = validate_spec(&spec, plugin).await.expect("valid spec");
        spec.dirs.create().expect("resource directories");
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let context = ResourceContext::new(
            &spec.name,
            plugin.name(),
            spec.grants.clone(),
            spec.dirs.clone(),
            exits_tx,
        );
        let (cancel, cancel_rx) = watch::channel(0u64);
        let instance = Instance::new(
            plugin.clone(),
            context,
            full,
            InstanceConfig::default(),
            cancel_rx,
        );
        Resource {
            instance,
            _cancel: cancel,
            _exits: exits,
        }
    }

    async fn is_alive(&mut self) {
        let health = self.instance.is_alive(TIMEOUT).await;
        assert!(matches!(health, Ok(Health::Healthy)), "{health:?}");
    }
}

/// examples/redis-type, built for wasm32-wasip2 if missing.
fn rust_component(root: &Path) -> PathBuf {
    let target = root.join("target/wasm-examples");
    let wasm = target.join("wasm32-wasip2/release/redis_type.wasm");
    if !wasm.exists() {
        let status = Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .arg("--manifest-path")
            .arg(root.join("examples/redis-type/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo");
        assert!(status.success(), "building examples/redis-type failed");
    }
    wasm
}

/// examples/redis-type-py, built by its build.sh if missing.
fn python_component(root: &Path) -> PathBuf {
    let wasm = root.join("target/wasm-examples/redis_type_py.wasm");
    if !wasm.exists() {
        let tool = std::env::var_os("WARDEN_COMPONENTIZE_PY")
            .unwrap_or_else(|| "/opt/warden-componentize-py/bin/componentize-py".into());
        let status = Command::new(root.join("examples/redis-type-py/build.sh"))
            .arg(&wasm)
            .env("COMPONENTIZE_PY", tool)
            .status()
            .expect("run build.sh");
        assert!(status.success(), "building examples/redis-type-py failed");
    }
    wasm
}

/// The process's resident memory, from /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in statm");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The nearest-rank `q` quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let n = samples.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    samples[rank - 1]
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}
