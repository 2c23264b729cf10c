//! What a health check through the `probe` import (contract 0.4.0, and
//! 0.5.0's `http-check`) costs
//! the agent, beside the same check through the plugin's own WASI socket.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p warden --bench probe
//! ```
//!
//! `plugins/prober` is opened once per row with its `check` property set,
//! then is-alive is called `CALLS` times on a tokio current-thread runtime
//! (in `ROUNDS` rounds taking the rows in turn, so that the machine's other
//! load weighs on every row alike),
//! so that every instruction of the call (host bookkeeping, the guest, the
//! probe's socket I/O in the host or the guest's through WASI) runs on this
//! thread: its CPU time is the difference of `CLOCK_THREAD_CPUTIME_ID`
//! around the call. The services (redis-server, nginx) are Debian's, on
//! loopback; their own CPU is not counted. Rows:
//!
//! - `exchange-line` to redis, `PING` answered `+PONG` (the host's probe);
//! - the same dialogue through WASI sockets (`warden_sdk::net::ask_once`);
//! - `connect` to redis (the host's probe);
//! - `http-get` of `/` from nginx, expecting 200 (the host's probe);
//! - `http-check` of the same, 2xx, on a new connection each time and on
//!   one the host keeps (0.5.0);
//! - the built-in `http-instance` type's is-alive against the same nginx
//!   (`/`, answered 2xx), whatever way the type makes its GET; with
//!   `WARDEN_BENCH_HTTP_INSTANCE=/path/to/http_instance.wasm`, another
//!   build of it beside (one from before a change).
//!
//! `WARDEN_BENCH_PAUSE_MS=10` leaves 10 ms between two timed calls (the
//! thread sleeping, as an agent's worker idles between checks; a tenth of
//! the calls): what a check costs when it finds the caches cold.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use warden::contract::Health;
use warden::runtime::{
    Grants, Instance, InstanceConfig, Plugin, ResourceContext, ResourceDirs, Runtime, RuntimeConfig,
};

#[path = "support/machine.rs"]
mod machine;
use machine::load_average;

#[path = "support/stats.rs"]
mod stats;
use stats::{human, quantile};

const PROBER: &str = env!("WARDEN_PLUGIN_PROBER");
const HTTP_INSTANCE: &str = env!("WARDEN_PLUGIN_HTTP_INSTANCE");
/// Milliseconds to leave between two timed calls (none: back to back).
const PAUSE: &str = "WARDEN_BENCH_PAUSE_MS";
/// Names another `http-instance.wasm` to measure beside this build's.
const OTHER_HTTP_INSTANCE: &str = "WARDEN_BENCH_HTTP_INSTANCE";
const REDIS: &str = "/usr/bin/redis-server";

/// Timed is-alive calls per row, after `WARMUP` untimed ones.
const CALLS: usize = 5_000;
const WARMUP: usize = 200;
/// The timed calls of each row are made in this many rounds, the rows
/// taking turns.
const ROUNDS: usize = 10;
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[path = "../tests/common/process.rs"]
#[allow(dead_code)]
mod process;
use process::{Killed, Stopped};

#[path = "../tests/common/nginx.rs"]
#[allow(dead_code)]
mod nginx;

fn main() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_redis, redis_port) = redis(dir.path());
    let (_nginx, web_port) = nginx(dir.path());
    let redis_at = format!("127.0.0.1:{redis_port}");
    let web_at = format!("127.0.0.1:{web_port}");
    let prober = |check: String| {
        (
            PROBER,
            vec![
                ("address".to_string(), redis_at.clone()),
                ("address-2".to_string(), web_at.clone()),
                ("check".to_string(), check),
            ],
        )
    };
    let rows = [
        (
            "`exchange-line` to redis (`PING`, `+PONG`), the host's probe",
            prober(format!("line\t{redis_at}\t2000\tPING\t+PONG")),
        ),
        (
            "the same through the plugin's WASI socket (`warden_sdk::net`)",
            prober(format!("net-line\t{redis_at}\t2000\tPING\t+PONG")),
        ),
        (
            "`connect` to redis, the host's probe",
            prober(format!("connect\t{redis_at}\t2000")),
        ),
        (
            "`http-get` of `/` from nginx (200), the host's probe",
            prober(format!("http\t{web_at}\t2000\t/\t200")),
        ),
        (
            "`http-check` of `/` from nginx (2xx), a new connection each",
            prober(format!("http-check\t{web_at}\t2000\t/\t2xx\t-\tfresh")),
        ),
        (
            "`http-check` of `/` from nginx (2xx), the connection kept",
            prober(format!("http-check\t{web_at}\t2000\t/\t2xx\t-\treuse")),
        ),
        (
            "`http-instance` (built in, its defaults): GET `/` from nginx (2xx)",
            (
                HTTP_INSTANCE,
                vec![
                    ("address".to_string(), web_at.clone()),
                    ("path".to_string(), "/".to_string()),
                ],
            ),
        ),
    ];
    // Another build of `http-instance` (one from before a change), to
    // compare in the same rounds.
    let other = std::env::var(OTHER_HTTP_INSTANCE).ok();
    let rows = rows.into_iter().chain(other.as_deref().map(|path| {
        (
            "`http-instance` as built at `$WARDEN_BENCH_HTTP_INSTANCE`",
            (
                path,
                vec![
                    ("address".to_string(), web_at.clone()),
                    ("path".to_string(), "/".to_string()),
                ],
            ),
        )
    }));
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current-thread runtime");
    let mut resources: Vec<Resource> = rows
        .into_iter()
        .enumerate()
        .map(|(n, (what, (plugin, properties)))| {
            current.block_on(Resource::open(
                what,
                &dir.path().join(format!("r{n}")),
                plugin,
                properties,
            ))
        })
        .collect();
    // Round-robin, so that what else runs on the machine weighs on every
    // row alike.
    let pause = std::env::var(PAUSE)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    // Spaced calls are fewer, or the bench would take minutes.
    let calls = if pause.is_some() { CALLS / 10 } else { CALLS };
    for _ in 0..ROUNDS {
        for resource in &mut resources {
            current.block_on(resource.measure(calls / ROUNDS, pause));
        }
    }
    println!("| is-alive | CPU median / p99 | wall median / p99 |");
    println!("|---|---:|---:|");
    for resource in &mut resources {
        resource.cpu.sort_unstable();
        resource.wall.sort_unstable();
        println!(
            "| {} | {} / {} | {} / {} |",
            resource.what,
            human(quantile(&resource.cpu, 0.5)),
            human(quantile(&resource.cpu, 0.99)),
            human(quantile(&resource.wall, 0.5)),
            human(quantile(&resource.wall, 0.99)),
        );
    }
    println!();
    println!(
        "- {calls} is-alive calls per row after {WARMUP} untimed, in {ROUNDS} rounds taking \
         the rows in turn, {}; nearest-rank quantiles; {} CPUs, {}; load average {}; \
         run time {:.1} s",
        pause.map_or("back to back".to_string(), |p| format!("{p:?} apart")),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load_average(),
        started.elapsed().as_secs_f64()
    );
}

/// One open resource of a row, and what its timed calls took.
struct Resource {
    what: &'static str,
    instance: Instance,
    /// Kept, as the agent keeps it: a call whose canceller is gone takes
    /// another turn of `bounded`'s loop.
    _cancel: watch::Sender<u64>,
    cpu: Vec<Duration>,
    wall: Vec<Duration>,
}

impl Resource {
    /// Open a resource of the plugin at `path` with `properties` (its
    /// addresses granted), on a runtime of its own, and warm it up with
    /// `WARMUP` untimed is-alive calls.
    async fn open(
        what: &'static str,
        dir: &Path,
        path: &str,
        properties: Vec<(String, String)>,
    ) -> Resource {
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
        let bytes = std::fs::read(path).expect("the plugin");
        let plugin = Arc::new(Plugin::load(&runtime, &bytes).await.expect("plugin loads"));
        let dirs = ResourceDirs::inside(dir);
        dirs.create().expect("resource directories");
        let grants = Grants {
            configured: properties.clone(),
            ..Grants::default()
        };
        let (exits, _) = mpsc::unbounded_channel();
        let context = ResourceContext::new("bench", plugin.name(), grants, dirs, exits);
        let (cancel_sender, cancel) = watch::channel(0);
        let mut instance = Instance::new(
            plugin,
            context,
            properties,
            InstanceConfig::default(),
            cancel,
        );
        for _ in 0..WARMUP {
            is_alive(&mut instance, what).await;
        }
        Resource {
            what,
            instance,
            _cancel: cancel_sender,
            cpu: Vec::with_capacity(CALLS),
            wall: Vec::with_capacity(CALLS),
        }
    }

    /// `calls` timed is-alive calls, `pause` apart if given (the thread
    /// idles between them, as an agent's between its checks): the CPU and
    /// wall time of each.
    async fn measure(&mut self, calls: usize, pause: Option<Duration>) {
        for _ in 0..calls {
            if let Some(pause) = pause {
                std::thread::sleep(pause);
            }
            let (c, w) = (thread_cpu(), Instant::now());
            is_alive(&mut self.instance, self.what).await;
            self.wall.push(w.elapsed());
            self.cpu.push(thread_cpu().saturating_sub(c));
        }
    }
}

async fn is_alive(instance: &mut Instance, what: &str) {
    match instance.is_alive(CHECK_TIMEOUT).await {
        Ok(Health::Healthy) => {}
        other => panic!("{what}: {other:?}"),
    }
}

/// redis-server on 127.0.0.1 (no persistence); its port.
fn redis(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(REDIS)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let redis = Killed(child);
    wait_for("redis", || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.write_all(b"PING\r\n").ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).ok()?;
        (&answer == b"+PONG\r\n").then_some(())
    });
    (redis, port)
}

/// nginx on 127.0.0.1 answering `/` with 200 (`tests/common/nginx.rs`'s
/// configuration); its port. Stopped with SIGTERM when dropped, which takes
/// its worker with it (a SIGKILL of the master leaves the worker running).
fn nginx(dir: &Path) -> (Stopped, u16) {
    let port = free_port();
    let d = dir.join("nginx");
    std::fs::create_dir(&d).expect("nginx dir");
    let conf = nginx::nginx_config_with(
        &d,
        &[&format!("127.0.0.1:{port}")],
        r#"location = / { return 200 "ok\n"; }"#,
    );
    let child = nginx::spawn(&d, &conf);
    let nginx = Stopped(child);
    wait_for("nginx", || TcpStream::connect(("127.0.0.1", port)).ok());
    (nginx, port)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
