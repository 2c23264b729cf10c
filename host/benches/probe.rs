//! What a health check through the `probe` import (contract 0.4.0) costs
//! the agent, beside the same check through the plugin's own WASI socket.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p warden --bench probe
//! ```
//!
//! `plugins/prober` is opened once per row with its `check` property set,
//! then is-alive is called `CALLS` times on a tokio current-thread runtime,
//! so that every instruction of the call (host bookkeeping, the guest, the
//! probe's socket I/O in the host or the guest's through WASI) runs on this
//! thread: its CPU time is the difference of `CLOCK_THREAD_CPUTIME_ID`
//! around the call. The services (redis-server, nginx) are Debian's, on
//! loopback; their own CPU is not counted. Rows:
//!
//! - `exchange-line` to redis, `PING` answered `+PONG` (the host's probe);
//! - the same dialogue through WASI sockets (`warden_sdk::net::ask_once`);
//! - `connect` to redis (the host's probe);
//! - `http-get` of `/` from nginx, expecting 200 (the host's probe).

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

#[path = "support/stats.rs"]
mod stats;
use stats::{human, quantile};

const PROBER: &str = env!("WARDEN_PLUGIN_PROBER");
const REDIS: &str = "/usr/bin/redis-server";

/// Timed is-alive calls per row, after `WARMUP` untimed ones.
const CALLS: usize = 5_000;
const WARMUP: usize = 200;
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
    let rows = [
        (
            "`exchange-line` to redis (`PING`, `+PONG`), the host's probe",
            format!("line\t{redis_at}\t2000\tPING\t+PONG"),
        ),
        (
            "the same through the plugin's WASI socket (`warden_sdk::net`)",
            format!("net-line\t{redis_at}\t2000\tPING\t+PONG"),
        ),
        (
            "`connect` to redis, the host's probe",
            format!("connect\t{redis_at}\t2000"),
        ),
        (
            "`http-get` of `/` from nginx (200), the host's probe",
            format!("http\t{web_at}\t2000\t/\t200"),
        ),
    ];
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current-thread runtime");
    println!("| is-alive of `prober` | CPU median / p99 | wall median / p99 |");
    println!("|---|---:|---:|");
    for (n, (what, check)) in rows.iter().enumerate() {
        let (cpu, wall) = current.block_on(measure(
            &dir.path().join(format!("r{n}")),
            check,
            &redis_at,
            &web_at,
        ));
        println!(
            "| {what} | {} / {} | {} / {} |",
            human(quantile(&cpu, 0.5)),
            human(quantile(&cpu, 0.99)),
            human(quantile(&wall, 0.5)),
            human(quantile(&wall, 0.99)),
        );
    }
    println!();
    println!(
        "- {CALLS} is-alive calls per row after {WARMUP} untimed, nearest-rank quantiles; \
         {} CPUs, {}; run time {:.1} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        started.elapsed().as_secs_f64()
    );
}

/// Open a prober whose is-alive runs `check`, granted `redis_at` and
/// `web_at`; the CPU and wall time of each timed is-alive, sorted.
async fn measure(
    dir: &Path,
    check: &str,
    redis_at: &str,
    web_at: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let bytes = std::fs::read(PROBER).expect("the prober plugin");
    let plugin = Arc::new(Plugin::load(&runtime, &bytes).await.expect("prober loads"));
    let properties: Vec<(String, String)> = [
        ("address", redis_at),
        ("address-2", web_at),
        ("check", check),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let dirs = ResourceDirs::inside(dir);
    dirs.create().expect("resource directories");
    let grants = Grants {
        configured: properties.clone(),
        ..Grants::default()
    };
    let (exits, _) = mpsc::unbounded_channel();
    let context = ResourceContext::new("bench", plugin.name(), grants, dirs, exits);
    let (_cancel, cancel) = watch::channel(0);
    let mut instance = Instance::new(
        plugin,
        context,
        properties,
        InstanceConfig::default(),
        cancel,
    );
    for _ in 0..WARMUP {
        is_alive(&mut instance, check).await;
    }
    let mut cpu = Vec::with_capacity(CALLS);
    let mut wall = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let (c, w) = (thread_cpu(), Instant::now());
        is_alive(&mut instance, check).await;
        wall.push(w.elapsed());
        cpu.push(thread_cpu().saturating_sub(c));
    }
    cpu.sort_unstable();
    wall.sort_unstable();
    (cpu, wall)
}

async fn is_alive(instance: &mut Instance, check: &str) {
    match instance.is_alive(CHECK_TIMEOUT).await {
        Ok(Health::Healthy) => {}
        other => panic!("{check}: {other:?}"),
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
    let child = Command::new(nginx::NGINX)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(d.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
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
