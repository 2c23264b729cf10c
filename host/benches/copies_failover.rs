//! Issue #16's benchmark in the network lab: the mail store with a copy on
//! each of three nodes (`tests/common/store_copies.rs`), in synchronous
//! and in asynchronous mode (`max-async-lag` 100, `max_lag_on_failover`
//! 200, so a failover never waits for the operator), under a steady write
//! load: a client sending one SMTP message after another through the
//! virtual server.
//!
//! For each mode it measures:
//! - the replication lag: every 10 ms each store's `COPY-STATUS` is read on
//!   its own node; in positions, the active's `lag` (records on no passive
//!   copy: what a failover would lose now); in milliseconds, for each new
//!   position the active reports, until a passive reports it copied (10 ms
//!   granularity);
//! - the SMTP write latency (connect to 250) under that load;
//! - kill -9 of the active copy's agent to the first message answered 250
//!   by the new active, over `WARDEN_BENCH_ROUNDS` rounds (default 3); the
//!   killed agent is started again and its copy (reseeded if it diverged)
//!   is caught up before the next round.
//!
//! Run as root (the lab needs namespaces): `cargo bench -p warden --bench
//! copies_failover`. Without it, it says why and exits 0.

#[path = "support/machine.rs"]
mod machine;
use machine::load_average;

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::NODES;
use common::lab_cluster::LabCluster;
use common::store_copies::{Mode, STORE_PORT, Writer, settled, setup, smtp_probe};
use common::virtual_server::{Answer, index, wait_answered, wait_served_by};
use common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);
/// How long the lag is sampled under the steady load.
const LOAD: Duration = Duration::from_secs(15);
/// How often each store's `COPY-STATUS` is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// One `COPY-STATUS` reading.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    written: u64,
    copied: u64,
    lag: Option<u64>,
}

/// Figures of one mode.
struct Figures {
    lag_positions: Vec<u64>,
    lag_ms: Vec<f64>,
    write_ms: Vec<f64>,
    failover_ms: Vec<f64>,
}

fn main() {
    let rounds: usize = std::env::var("WARDEN_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let load_before = load_average();
    let modes = [
        ("sync", Mode::Sync),
        (
            "async",
            Mode::Async {
                max_async_lag: Some(100),
                max_lag_on_failover: Some(200),
            },
        ),
    ];
    let mut results = Vec::new();
    for (name, mode) in modes {
        let Some(figures) = run(name, mode, rounds) else {
            return;
        };
        results.push((name, figures));
    }
    let load_after = load_average();

    println!();
    println!("load average before {load_before}, after {load_after}");
    println!(
        "| mode | lag (positions) median / p95 / max | lag (ms) median / p95 / max | SMTP write (ms) median / p95 | kill -9 -> first write on the new active (ms) median / p95 (rounds) |"
    );
    println!("|---|---|---|---|---|");
    for (name, mut f) in results {
        f.lag_positions.sort_unstable();
        let positions = f.lag_positions.iter().map(|&p| p as f64).collect();
        println!(
            "| {name} | {} | {} | {} | {} ({}) |",
            spread(positions, true),
            spread(f.lag_ms, true),
            spread(f.write_ms, false),
            spread(f.failover_ms.clone(), false),
            f.failover_ms.len()
        );
    }
}

/// One mode on a fresh lab cluster; `None` when the lab cannot run here.
fn run(name: &str, mode: Mode, rounds: usize) -> Option<Figures> {
    let mut cluster = LabCluster::new(&format!("copies-bench-{name}"), setup(mode, "\"all\""))?;
    cluster.start_three();
    wait_until("n1 active, n2 and n3 following", MINUTE * 2, || {
        settled(&cluster, 0, "n1", &["n2", "n3"], 1).then_some(())
    });
    let probe = smtp_probe();
    wait_served_by(&cluster.lab, &probe, "n1");

    // The lag under a steady load, with the active on n1.
    let stop = AtomicBool::new(false);
    let (samples, answers) = Writer::writing(&cluster.lab, |_| {
        std::thread::scope(|scope| {
            let samplers: Vec<_> = NODES
                .iter()
                .map(|&node| {
                    let (lab, stop) = (&cluster.lab, &stop);
                    scope.spawn(move || lab.within(node, || sample(stop)))
                })
                .collect();
            std::thread::sleep(LOAD);
            stop.store(true, Ordering::Relaxed);
            samplers
                .into_iter()
                .map(|s| s.join().unwrap_or_default())
                .collect::<Vec<_>>()
        })
    });
    let active = &samples[0];
    let passives = &samples[1..];
    let lag_positions: Vec<u64> = active.iter().filter_map(|s| s.lag).collect();
    let lag_ms = lag_times(active, passives);
    let write_ms = write_latencies(&answers);
    eprintln!(
        "{name}: {} writes answered 250 in {LOAD:?}, {} samples of the active",
        write_ms.len(),
        active.len()
    );

    // kill -9 of the active's agent -> first write the new active accepts.
    let mut failover_ms = Vec::new();
    for round in 0..rounds {
        // Generation 1 was the first activation; each round's failover
        // takes the next.
        let generation = round as u64 + 2;
        let owner = wait_answered(&cluster.lab, &probe, "the store to take writes", |_| true);
        let i = index(&owner);
        let pid = cluster.agents[i]
            .as_ref()
            .expect("the owner's agent")
            .0
            .id();
        let (first, _) = Writer::writing(&cluster.lab, |writer| {
            wait_until("a few writes before the kill", MINUTE, || {
                (writer.accepted().len() >= 5).then_some(())
            });
            let killed_at = Instant::now();
            let status = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -9 of {owner}'s agent");
            wait_until("the writer's first write on another node", MINUTE, || {
                writer.first_accepted_elsewhere(killed_at, &owner)
            })
            .duration_since(killed_at)
        });
        let ms = first.as_secs_f64() * 1000.0;
        eprintln!("{name}, round {round}: {owner} killed, first write elsewhere after {ms:.0} ms");
        failover_ms.push(ms);
        // The killed agent back; every copy caught up before the next round.
        cluster.kill_agent(i);
        let before = cluster.joins(i);
        cluster.start_agent(i);
        cluster.wait_joined(i, before);
        let next = wait_answered(&cluster.lab, &probe, "the new active", |n| n != owner);
        let others: Vec<&str> = NODES.into_iter().filter(|n| *n != next).collect();
        wait_until("every copy caught up", MINUTE * 2, || {
            settled(&cluster, index(&next), &next, &others, generation).then_some(())
        });
    }
    Some(Figures {
        lag_positions,
        lag_ms,
        write_ms,
        failover_ms,
    })
}

/// `COPY-STATUS` of the store on this thread's node every [`SAMPLE_EVERY`]
/// until `stop`.
fn sample(stop: &AtomicBool) -> Vec<Sample> {
    let address = SocketAddr::from(([127, 0, 0, 1], STORE_PORT));
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    });
    let mut writer = stream;
    let mut samples = Vec::new();
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        if writer.write_all(b"COPY-STATUS\n").is_err() || reader.read_line(&mut line).is_err() {
            break;
        }
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(written), Some(copied)) = (field("written"), field("copied")) {
            samples.push(Sample {
                at: Instant::now(),
                written,
                copied,
                lag: field("lag"),
            });
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    samples
}

/// For each position the active first reports, how long until a passive
/// reports it copied (the first passive to, as a failover would use).
fn lag_times(active: &[Sample], passives: &[Vec<Sample>]) -> Vec<f64> {
    let mut times = Vec::new();
    let mut seen = 0;
    for s in active {
        if s.written <= seen {
            continue;
        }
        seen = s.written;
        let copied_at = passives
            .iter()
            .filter_map(|p| {
                p.iter()
                    .find(|q| q.copied >= s.written)
                    .map(|q| q.at.max(s.at))
            })
            .min();
        if let Some(at) = copied_at {
            times.push(at.duration_since(s.at).as_secs_f64() * 1000.0);
        }
    }
    times
}

/// Connect to 250 of every accepted message.
fn write_latencies(answers: &[Answer]) -> Vec<f64> {
    answers
        .iter()
        .filter_map(|a| {
            a.good
                .map(|g| g.duration_since(a.started).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// "median / p95" (and "/ max" with `max`) of `values`, or "-".
fn spread(mut values: Vec<f64>, max: bool) -> String {
    if values.is_empty() {
        return "-".to_string();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let mut text = format!("{:.0} / {:.0}", at(0.5), at(0.95));
    if max {
        text.push_str(&format!(" / {:.0}", values[values.len() - 1]));
    }
    text
}
