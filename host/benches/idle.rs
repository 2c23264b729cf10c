//! What an idle agent costs: CPU time and thread wake-ups a second of a real
//! `warden agent` process with little to do: no resource; 100 `process`
//! resources (each keeping a `/usr/bin/sleep` running) checked 60 s apart,
//! watched for 60 s so that each is checked about once; and the same 100
//! checked every second.
//!
//! Each agent is started on a fresh data directory and, once every resource
//! is Online, left alone for `SETTLE`; then its counters are read twice,
//! a window apart, from `/proc`: the process's `utime + stime` from
//! `/proc/PID/stat` (clock ticks, 10 ms each: coarse), and for each of its
//! threads the time on a CPU and the number of times it was switched in
//! (`/proc/PID/task/TID/schedstat`: nanoseconds, and one count per wake-up).
//! The services (`sleep`) are other processes and not counted.
//!
//! Run: `cargo bench -p warden --bench idle` (release), or
//! `cargo test -p warden --bench idle` (the debug build, quicker to get).
//! `WARDEN_IDLE_AGENT=/path/to/warden` measures another build of the agent
//! (to compare with a build from before a change); the default is this
//! package's own.

#[path = "support/threads.rs"]
mod threads;
use threads::{ThreadSample, threads_of};

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent_process::{AgentProcess, WARDEN};
use common::wait_until;

/// Each row: resources, their checks' interval (is-alive and looks-alive,
/// seconds), and how long the counters are watched (seconds).
const CASES: [(usize, u64, u64); 3] = [(0, 60, 10), (100, 60, 60), (100, 1, 10)];
/// How long the agent is left alone before the window opens.
const SETTLE: Duration = Duration::from_secs(3);

fn main() {
    let binary = std::env::var_os("WARDEN_IDLE_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(WARDEN));
    println!("agent: {}", binary.display());
    let rows: Vec<Row> = CASES
        .iter()
        .map(|&(resources, every, window)| {
            measure(
                &binary,
                resources,
                Duration::from_secs(every),
                Duration::from_secs(window),
            )
        })
        .collect();
    println!();
    println!(
        "| resources | checks every | window | CPU, utime + stime | CPU, threads' run time | wake-ups | most wakeful thread |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.2} ms/s | {:.3} ms/s | {:.1} /s | `{}`: {:.1} /s, {:.3} ms/s |",
            row.resources,
            if row.resources == 0 {
                "-".to_string()
            } else {
                format!("{} s", row.every.as_secs())
            },
            format_args!("{} s", row.window.as_secs()),
            row.stat_ms_per_s,
            row.run_ms_per_s,
            row.wakes_per_s,
            row.top.name,
            row.top.wakes_per_s,
            row.top.run_ms_per_s,
        );
    }
    println!();
    println!(
        "- each window opens {SETTLE:?} after every resource is Online; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

/// One line of the table.
struct Row {
    resources: usize,
    every: Duration,
    window: Duration,
    stat_ms_per_s: f64,
    run_ms_per_s: f64,
    wakes_per_s: f64,
    top: ThreadRow,
}

/// The thread that woke most often in the window.
struct ThreadRow {
    name: String,
    wakes_per_s: f64,
    run_ms_per_s: f64,
}

fn measure(binary: &Path, resources: usize, every: Duration, window: Duration) -> Row {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let agent = AgentProcess::start_binary(binary, dir.path(), &config(resources, every));
    if resources > 0 {
        wait_until("every resource Online", Duration::from_secs(120), || {
            (agent.resources_online() == resources).then_some(())
        });
    }
    std::thread::sleep(SETTLE);
    let pid = agent.pid();
    let before = Sample::take(pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let after = Sample::take(pid);
    let secs = started.elapsed().as_secs_f64();
    agent.stop();

    let mut threads: Vec<ThreadRow> = after
        .threads
        .iter()
        .map(|(tid, now)| {
            let then = before.threads.get(tid).cloned().unwrap_or_default();
            ThreadRow {
                name: now.name.clone(),
                wakes_per_s: now.slices.saturating_sub(then.slices) as f64 / secs,
                run_ms_per_s: now.run_ns.saturating_sub(then.run_ns) as f64 / 1e6 / secs,
            }
        })
        .collect();
    threads.sort_by(|a, b| b.wakes_per_s.total_cmp(&a.wakes_per_s));
    let row = Row {
        resources,
        every,
        window,
        stat_ms_per_s: (after.cpu_ticks.saturating_sub(before.cpu_ticks)) as f64 * 1000.0
            / clock_ticks_per_second()
            / secs,
        run_ms_per_s: threads.iter().map(|t| t.run_ms_per_s).sum(),
        wakes_per_s: threads.iter().map(|t| t.wakes_per_s).sum(),
        top: threads.into_iter().next().unwrap_or(ThreadRow {
            name: "(none)".to_string(),
            wakes_per_s: 0.0,
            run_ms_per_s: 0.0,
        }),
    };
    println!(
        "{resources} resources checked every {every:?}, {window:?}: {:.2} ms/s (stat), {:.3} ms/s (threads), {:.1} wake-ups/s",
        row.stat_ms_per_s, row.run_ms_per_s, row.wakes_per_s
    );
    row
}

/// A node with `resources` sleepers, checked `every` so often.
fn config(resources: usize, every: Duration) -> String {
    let every = every.as_millis();
    let mut config = String::from(
        "[node]\nname = \"idle\"\ndata_dir = \"data\"\n\n\
         [plugins.process]\nallow_programs = [\"/usr/bin/sleep\"]\n",
    );
    for i in 0..resources {
        config.push_str(&format!(
            "\n[[resource]]\nname = \"sleeper-{i}\"\ntype = \"process\"\n\
             is_alive_interval_ms = {every}\nlooks_alive_interval_ms = {every}\n\
             properties = {{ program = \"/usr/bin/sleep\", args = \"3600\" }}\n"
        ));
    }
    config
}

/// The agent's counters at one moment.
struct Sample {
    /// `utime + stime` of the whole process, in clock ticks.
    cpu_ticks: u64,
    threads: HashMap<u64, ThreadSample>,
}

impl Sample {
    fn take(pid: i32) -> Sample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
        // Fields after the command name, which is in parentheses: state is
        // field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a stat line")
            .1
            .split_whitespace()
            .collect();
        let field = |n: usize| -> u64 { fields[n - 3].parse().expect("a number") };
        let threads = threads_of(pid);
        Sample {
            cpu_ticks: field(14) + field(15),
            threads,
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
