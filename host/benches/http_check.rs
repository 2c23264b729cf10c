//! What an HTTP is-alive costs a running agent: a real `warden agent`
//! process with `http-instance` resources watching one nginx (started by
//! the bench, not by the agent, so that its CPU is not the agent's),
//! checked so often, against the same agent with its checks off.
//!
//! Each case starts the agent on a fresh data directory; once every
//! resource is Online and `SETTLE` has passed, the agent's counters are
//! read twice, a window apart, as `benches/idle.rs` does: each thread's
//! time on a CPU and the times it was switched in
//! (`/proc/PID/task/TID/schedstat`). The checks made in the window are
//! counted from the agent's own metrics (`warden_health_checks_total` of
//! is-alive, read just outside the window). What a check costs is the
//! agent's CPU a second with checks, less the same agent's with checks off
//! (is-alive once an hour, looks-alive off), divided by the checks a second.
//!
//! Run: `cargo bench -p warden --bench http_check` (release, about two
//! minutes), or `cargo test -p warden --bench http_check` (the debug
//! build). `WARDEN_HTTP_CHECK_AGENT=/path/to/warden` measures another
//! build (to compare with one from before a change).
//! `WARDEN_HTTP_CHECK_REUSE=false` (or `true`) sets the resources'
//! `reuse-connection` property (unset: the type's default, true, a new
//! connection every tenth check).

#[path = "support/machine.rs"]
mod machine;

#[path = "support/threads.rs"]
mod threads;
use threads::{ThreadSample, threads_of};

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent_process::{AgentProcess, TOKEN, WARDEN, api_get};
use common::nginx::{nginx_config, spawn};
use common::process::Stopped;
use common::{free_address, wait_until};

/// Each case: resources, their is-alive interval (`None`: checks off) and
/// how long the counters are watched.
const CASES: [(usize, Option<u64>, u64); 4] = [
    (100, Some(1_000), 20),
    (100, None, 20),
    (1, Some(10), 20),
    (1, None, 20),
];
/// How long the agent is left alone before the window opens.
const SETTLE: Duration = Duration::from_secs(3);
/// The is-alive interval of "checks off".
const OFF_MS: u64 = 3_600_000;

fn main() {
    let binary = std::env::var_os("WARDEN_HTTP_CHECK_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(WARDEN));
    // With RUST_BACKTRACE set, every `wasmtime::Error` (a WASI socket's
    // would-block among them) captures a backtrace: say which was measured.
    println!(
        "agent: {}; RUST_BACKTRACE={:?}; reuse-connection: {}",
        binary.display(),
        std::env::var("RUST_BACKTRACE").unwrap_or_default(),
        reuse_property().unwrap_or_else(|| "the type's default".to_string())
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let address = free_address();
    let _nginx = nginx(dir.path(), &address);

    let rows: Vec<Row> = CASES
        .iter()
        .enumerate()
        .map(|(n, &(resources, every_ms, window))| {
            let case = dir.path().join(format!("case-{n}"));
            std::fs::create_dir(&case).expect("case dir");
            measure(
                &binary,
                &case,
                &address,
                resources,
                every_ms,
                Duration::from_secs(window),
            )
        })
        .collect();

    println!();
    println!(
        "| resources | is-alive every | checks/s | agent CPU | wake-ups | workers' CPU | `warden-epoch` CPU, wake-ups |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} | {:.3} ms/s | {:.1} /s | {:.3} ms/s | {:.3} ms/s, {:.1} /s |",
            row.resources,
            row.every_ms
                .map_or("off".to_string(), |ms| format!("{ms} ms")),
            row.checks_per_s,
            row.run_ms_per_s,
            row.wakes_per_s,
            row.workers_ms_per_s,
            row.epoch_ms_per_s,
            row.epoch_wakes_per_s,
        );
    }
    println!();
    println!("| resources | is-alive every | CPU per check | wake-ups per check |");
    println!("|---:|---:|---:|---:|");
    for on in rows.iter().filter(|r| r.every_ms.is_some()) {
        let Some(off) = rows
            .iter()
            .find(|r| r.resources == on.resources && r.every_ms.is_none())
        else {
            continue;
        };
        if on.checks_per_s <= 0.0 {
            continue;
        }
        let cpu_us = (on.run_ms_per_s - off.run_ms_per_s) * 1000.0 / on.checks_per_s;
        let wakes = (on.wakes_per_s - off.wakes_per_s) / on.checks_per_s;
        println!(
            "| {} | {} ms | {cpu_us:.1} µs | {wakes:.2} |",
            on.resources,
            on.every_ms.unwrap_or_default(),
        );
    }
    println!();
    println!(
        "- each window opens {SETTLE:?} after every resource is Online; {} CPUs; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine::load_average()
    );
}

/// One line of the table.
struct Row {
    resources: usize,
    every_ms: Option<u64>,
    checks_per_s: f64,
    run_ms_per_s: f64,
    wakes_per_s: f64,
    workers_ms_per_s: f64,
    epoch_ms_per_s: f64,
    epoch_wakes_per_s: f64,
}

fn measure(
    binary: &Path,
    dir: &Path,
    address: &str,
    resources: usize,
    every_ms: Option<u64>,
    window: Duration,
) -> Row {
    let agent = AgentProcess::start_binary(binary, dir, &config(address, resources, every_ms));
    wait_until("every resource Online", Duration::from_secs(120), || {
        (agent.resources_online() == resources).then_some(())
    });
    std::thread::sleep(SETTLE);
    let pid = agent.pid();
    let checks_before = is_alive_checks(&agent);
    let before = Sample::take(pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let after = Sample::take(pid);
    let secs = started.elapsed().as_secs_f64();
    let checks = is_alive_checks(&agent) - checks_before;
    agent.stop();

    let mut row = Row {
        resources,
        every_ms,
        checks_per_s: checks / secs,
        run_ms_per_s: 0.0,
        wakes_per_s: 0.0,
        workers_ms_per_s: 0.0,
        epoch_ms_per_s: 0.0,
        epoch_wakes_per_s: 0.0,
    };
    for (tid, now) in &after.threads {
        let then = before.threads.get(tid).cloned().unwrap_or_default();
        let ms = now.run_ns.saturating_sub(then.run_ns) as f64 / 1e6 / secs;
        let wakes = now.slices.saturating_sub(then.slices) as f64 / secs;
        row.run_ms_per_s += ms;
        row.wakes_per_s += wakes;
        if now.name.starts_with("tokio-rt-worker") {
            row.workers_ms_per_s += ms;
        } else if now.name == "warden-epoch" {
            row.epoch_ms_per_s += ms;
            row.epoch_wakes_per_s += wakes;
        }
    }
    println!(
        "{resources} resources, is-alive every {every_ms:?} ms, {window:?}: {:.1} checks/s, {:.3} ms/s, {:.1} wake-ups/s",
        row.checks_per_s, row.run_ms_per_s, row.wakes_per_s
    );
    row
}

/// nginx on `address` answering `/` with 200, run by the bench (its CPU is
/// not the agent's); stopped when dropped.
fn nginx(dir: &Path, address: &str) -> Stopped {
    let d = dir.join("nginx");
    std::fs::create_dir(&d).expect("nginx dir");
    let conf = nginx_config(&d, address);
    let child = spawn(&d, &conf);
    let nginx = Stopped(child);
    wait_until("nginx", Duration::from_secs(10), || {
        std::net::TcpStream::connect(address).ok()
    });
    nginx
}

/// A node with `resources` `http-instance` resources watching the nginx
/// on `address` (no program: they only check it), is-alive `every_ms`
/// apart (or once an hour), looks-alive off.
fn config(address: &str, resources: usize, every_ms: Option<u64>) -> String {
    let every = every_ms.unwrap_or(OFF_MS);
    let reuse = reuse_property()
        .map(|reuse| format!(", \"reuse-connection\" = \"{reuse}\""))
        .unwrap_or_default();
    let mut config = String::from("[node]\nname = \"http-check\"\ndata_dir = \"data\"\n");
    for i in 0..resources {
        config.push_str(&format!(
            "\n[[resource]]\nname = \"web-{i}\"\ntype = \"http-instance\"\n\
             is_alive_interval_ms = {every}\nlooks_alive_interval_ms = 0\n\
             properties = {{ address = \"{address}\", path = \"/\"{reuse} }}\n"
        ));
    }
    config
}

/// `WARDEN_HTTP_CHECK_REUSE`, checked: the `reuse-connection` to set.
fn reuse_property() -> Option<String> {
    let reuse = std::env::var("WARDEN_HTTP_CHECK_REUSE").ok()?;
    assert!(
        reuse == "true" || reuse == "false",
        "WARDEN_HTTP_CHECK_REUSE is true or false, not {reuse:?}"
    );
    Some(reuse)
}

/// The is-alive checks the agent has made, whatever their result, from its
/// metrics.
fn is_alive_checks(agent: &AgentProcess) -> f64 {
    let (code, body) = api_get(agent.api, TOKEN, "/metrics").expect("the agent's metrics");
    assert_eq!(code, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| l.starts_with("warden_health_checks_total{check=\"is-alive\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The agent's counters at one moment.
struct Sample {
    threads: HashMap<u64, ThreadSample>,
}

impl Sample {
    fn take(pid: i32) -> Sample {
        let threads = threads_of(pid);
        Sample { threads }
    }
}
