//! What a resource type written in Python or JavaScript costs beside the
//! same type in Rust: examples/redis-type-py (componentize-py: a whole
//! CPython in the component) and examples/redis-type-js (componentize-js: a
//! whole SpiderMonkey engine) against examples/redis-type (Rust,
//! wit-bindgen). Prints one markdown table (docs/benchmarks.md, "Resource
//! types in Python and JavaScript").
//!
//! ```text
//! cargo bench -p warden --bench lang
//! ```
//!
//! Per type:
//! - **size**: the `.wasm` file;
//! - **first load**: [`CompileCache::load`] into an empty cache (compile,
//!   link, describe, store the artifact), wall time and the process's CPU
//!   time (the compiler runs on several threads);
//! - **cached load**: the same file again from that cache (no compile);
//! - **memory per open resource**: the growth of this process's `VmRSS`
//!   over `OPEN` resources, each instantiated and opened (a first
//!   looks-alive makes the instance; it fails, none of them started its
//!   server), divided by `OPEN`;
//! - **CPU per is-alive**: one resource online (its own redis-server), then
//!   `CALLS` is-alive calls (a `PING` answered `+PONG`: through WASI sockets
//!   in Rust, through the `probe` import in Python and JavaScript), each timed by the
//!   process's CPU time (`getrusage(RUSAGE_SELF)`, so host threads are
//!   counted) and by the wall clock; medians and p99.
//!
//! The Rust type is built with cargo (as host/tests/all/sdk.rs does), the
//! Python one with its build.sh and the pinned componentize-py (as
//! host/tests/all/lang_py.rs finds it: `$WARDEN_COMPONENTIZE_PY`, else
//! /opt/warden-componentize-py, which .ci/run installs), the JavaScript
//! one with sdk/js/build.sh (the pinned toolchain; npm needed). A type
//! whose tool is missing is skipped, saying why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use warden::contract::Health;
use warden::monitor::{ResourceSpec, TimingOverrides, validate_spec};
use warden::runtime::{
    CallDeadline, CompileCache, Grants, Instance, InstanceConfig, Plugin, ResourceContext,
    ResourceDirs, Runtime, RuntimeConfig,
};

#[path = "support/stats.rs"]
mod stats;
use stats::{human, quantile};

const REDIS: &str = "/usr/bin/redis-server";
const SLEEP: &str = "/usr/bin/sleep";
/// Resources opened for the memory figure.
const OPEN: usize = 20;
/// Timed is-alive calls, after `WARMUP` untimed ones.
const CALLS: usize = 1_000;
const WARMUP: usize = 50;
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

fn main() {
    assert!(
        Path::new(REDIS).exists(),
        "{REDIS} is missing (apt-get install redis-server)"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let redis = |address: &str| vec![("address".to_string(), address.to_string())];
    let sleeper = |_: &str| vec![("args".to_string(), "600".to_string())];
    let process = |_: &str| vec![("args".to_string(), "600".to_string())];
    let subjects = [
        Subject {
            label: "Rust `redis` (examples/redis-type): PING over WASI sockets",
            wasm: Ok(build_rust()),
            program: REDIS,
            props: &redis,
        },
        Subject {
            label: "Python `redis` (examples/redis-type-py): PING through the probe import",
            wasm: build_python(),
            program: REDIS,
            props: &redis,
        },
        Subject {
            label: "JavaScript `redis` (examples/redis-type-js): PING through the probe import",
            wasm: build_js("examples/redis-type-js/src/redis.js", "redis"),
            program: REDIS,
            props: &redis,
        },
        Subject {
            label: "Rust `process` (built in): the process's state",
            wasm: Ok(PathBuf::from(format!(
                "{}/process.wasm",
                env!("WARDEN_PLUGIN_DIR")
            ))),
            program: SLEEP,
            props: &process,
        },
        Subject {
            label: "JavaScript `js-thrower` (tests/all/lang_js): the process's state",
            wasm: build_js("host/tests/all/lang_js/thrower.js", "thrower"),
            program: SLEEP,
            props: &sleeper,
        },
    ];
    let mut rows = Vec::new();
    for subject in &subjects {
        match runtime.block_on(measure(subject)) {
            Ok(row) => rows.push(row),
            Err(why) => eprintln!("SKIPPED {}: {why}", subject.label),
        }
    }
    println!(
        "| type | component | first load: wall / CPU | cached load: wall / CPU | memory per open resource | is-alive CPU median / p99 | is-alive wall median / p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.1} MB | {} / {} | {} / {} | {:.2} MB | {} / {} | {} / {} |",
            row.label,
            row.size as f64 / 1e6,
            human(row.first_wall),
            human(row.first_cpu),
            human(row.cached_wall),
            human(row.cached_cpu),
            row.memory_per_resource as f64 / 1e6,
            human(quantile(&row.check_cpu, 0.5)),
            human(quantile(&row.check_cpu, 0.99)),
            human(quantile(&row.check_wall, 0.5)),
            human(quantile(&row.check_wall, 0.99)),
        );
    }
}

struct Row {
    label: &'static str,
    size: u64,
    first_wall: Duration,
    first_cpu: Duration,
    cached_wall: Duration,
    cached_cpu: Duration,
    memory_per_resource: u64,
    check_cpu: Vec<Duration>,
    check_wall: Vec<Duration>,
}

/// One type to measure: its file, the program its resources run, and
/// their properties for a resource at an address.
struct Subject<'a> {
    label: &'static str,
    wasm: Result<PathBuf, String>,
    program: &'static str,
    props: &'a dyn Fn(&str) -> Vec<(String, String)>,
}

/// The row of `subject`, or why it could not load here (a contract this
/// agent does not run yet, say).
async fn measure(subject: &Subject<'_>) -> Result<Row, String> {
    let label = subject.label;
    let bytes =
        std::fs::read(subject.wasm.as_ref().map_err(String::clone)?).expect("read the component");
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            max_instances: 64,
            ..RuntimeConfig::default()
        })
        .expect("runtime"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CompileCache::open(dir.path().join("compiled")).expect("compile cache");

    let (wall, cpu) = (Instant::now(), process_cpu());
    let (plugin, _) = cache
        .load(&runtime, &bytes)
        .await
        .map_err(|e| format!("it does not load: {e}"))?;
    let (first_wall, first_cpu) = (wall.elapsed(), process_cpu() - cpu);
    drop(plugin);
    let (wall, cpu) = (Instant::now(), process_cpu());
    let (plugin, _) = cache.load(&runtime, &bytes).await.expect("cached load");
    let (cached_wall, cached_cpu) = (wall.elapsed(), process_cpu() - cpu);
    let plugin = Arc::new(plugin);

    // One resource online, with its own redis-server, for the checks.
    let address = free_address();
    let mut online = Resource::open(subject, &plugin, dir.path(), "online", &address).await;
    let started = online
        .instance
        .online(CallDeadline::fixed(Duration::from_secs(60)))
        .await;
    assert!(matches!(started, Ok(Ok(()))), "{label} online: {started:?}");
    for _ in 0..WARMUP {
        online.is_alive().await;
    }
    let mut check_cpu = Vec::with_capacity(CALLS);
    let mut check_wall = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let (wall, cpu) = (Instant::now(), process_cpu());
        online.is_alive().await;
        check_wall.push(wall.elapsed());
        check_cpu.push(process_cpu() - cpu);
    }
    check_cpu.sort_unstable();
    check_wall.sort_unstable();

    // Memory: OPEN more resources, each instantiated and opened.
    let before = rss();
    let mut opened = Vec::with_capacity(OPEN);
    for i in 0..OPEN {
        let mut resource = Resource::open(
            subject,
            &plugin,
            dir.path(),
            &format!("r{i}"),
            &free_address(),
        )
        .await;
        let _ = resource.instance.looks_alive(CHECK_TIMEOUT).await;
        opened.push(resource);
    }
    let memory_per_resource = rss().saturating_sub(before) / OPEN as u64;
    drop(opened);
    let _ = online.instance.terminate(CHECK_TIMEOUT).await;

    Ok(Row {
        label,
        size: bytes.len() as u64,
        first_wall,
        first_cpu,
        cached_wall,
        cached_cpu,
        memory_per_resource,
        check_cpu,
        check_wall,
    })
}

/// One resource of the plugin, as the monitor would make it.
struct Resource {
    instance: Instance,
    _cancel: watch::Sender<u64>,
    _exits: mpsc::UnboundedReceiver<warden::runtime::ProcessExit>,
}

impl Resource {
    async fn open(
        subject: &Subject<'_>,
        plugin: &Arc<Plugin>,
        dir: &Path,
        name: &str,
        address: &str,
    ) -> Resource {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        let mut properties = vec![("program".to_string(), subject.program.to_string())];
        properties.extend((subject.props)(address));
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
                allow_programs: vec![PathBuf::from(subject.program)],
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
        Resource {
            instance: Instance::new(
                plugin.clone(),
                context,
                full,
                InstanceConfig::default(),
                cancel_rx,
            ),
            _cancel: cancel,
            _exits: exits,
        }
    }

    async fn is_alive(&mut self) {
        let health = self.instance.is_alive(CHECK_TIMEOUT).await;
        assert!(
            matches!(health, Ok(Health::Healthy)),
            "is-alive: {health:?}"
        );
    }
}

/// examples/redis-type, built as host/tests/all/sdk.rs builds it.
fn build_rust() -> PathBuf {
    let target = root().join("target/wasm-examples");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root().join("examples/redis-type/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name == "RUSTFLAGS"
        {
            cargo.env_remove(&var);
        }
    }
    assert!(
        cargo.status().expect("run cargo").success(),
        "building examples/redis-type"
    );
    target.join("wasm32-wasip2/release/redis_type.wasm")
}

/// examples/redis-type-py, built by its build.sh with the pinned
/// componentize-py.
fn build_python() -> Result<PathBuf, String> {
    let out = root().join("target/lang-py/redis_type_py.wasm");
    let tool = std::env::var_os("WARDEN_COMPONENTIZE_PY")
        .unwrap_or_else(|| "/opt/warden-componentize-py/bin/componentize-py".into());
    if !Path::new(&tool).exists() {
        return Err(format!(
            "{} is missing (.ci/run installs the pinned componentize-py there)",
            Path::new(&tool).display()
        ));
    }
    let status = Command::new(root().join("examples/redis-type-py/build.sh"))
        .arg(&out)
        .env("COMPONENTIZE_PY", tool)
        .current_dir(root())
        .status()
        .map_err(|e| format!("run examples/redis-type-py/build.sh: {e}"))?;
    if !status.success() {
        return Err("building examples/redis-type-py failed (its output is above)".to_string());
    }
    Ok(out)
}

/// A JavaScript type under the repository, built with sdk/js/build.sh.
fn build_js(source: &str, name: &str) -> Result<PathBuf, String> {
    let out = root().join(format!("target/lang-js/{name}.wasm"));
    let status = Command::new(root().join("sdk/js/build.sh"))
        .arg(root().join(source))
        .arg(&out)
        .current_dir(root())
        .status()
        .expect("run sdk/js/build.sh");
    if !status.success() {
        return Err(format!("building {source} failed (its output is above)"));
    }
    Ok(out)
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}

/// User + system CPU time of this process, every thread.
fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for the call to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the call to fill in.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// VmRSS of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}
