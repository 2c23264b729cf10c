//! The cluster log's append throughput: how many events a second etcd
//! orders through the log's one compare-and-swap on its head, and what one
//! append costs, as the number of agents appending at once grows.
//!
//! A real 3-member etcd on loopback (the harness of `tests/cluster/cluster.rs`).
//! Each writer is what an agent is to the log: a client of every member of
//! its own, appending with `warden::cluster::log::append` (read the head,
//! then a transaction that writes the entry and moves the head only if the
//! head is still the one read; a writer that lost the race reads again). The
//! event is a `ResourceOnline`, the most common report of a mass failover.
//! All writers start together and each appends as fast as it can.
//!
//! Prints a markdown table: writers, events appended, wall time, events a
//! second, and one append's latency (median, 99th percentile, max) as its
//! writer saw it, retries after a lost race included. Each writer count
//! runs twice: through the log (`log append`), and as plain puts of keys of
//! the writer's own (`plain put`): no order, no compare-and-swap — what
//! etcd itself takes on this machine, the ceiling of any log on it.
//!
//! Run: `cargo bench -p warden --bench log_append`.
//! `WARDEN_BENCH_WRITERS=1,3,10` chooses the writer counts (default 1, 3,
//! 10, 30); `WARDEN_BENCH_EVENTS` the events a round appends in all
//! (default 2000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::start_etcd;
use warden::cluster::Keys;
use warden::cluster::etcd::Etcd;
use warden::cluster::log::{LogEvent, append};

fn numbers(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|text| {
            text.split(',')
                .map(|n| n.trim().parse().expect("a number"))
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// One round: `writers` clients append `events` entries in all to a log of
/// its own (a cluster name per round); the latency of every append.
async fn round(
    endpoints: &[String],
    writers: usize,
    events: usize,
    unordered: bool,
) -> (Duration, Vec<Duration>) {
    let keys = Keys::new(&format!("bench-{writers}-{unordered}"));
    let mut clients = Vec::new();
    for _ in 0..writers {
        clients.push(Etcd::connect(endpoints).await.expect("connects"));
    }
    let each = events.div_ceil(writers);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, etcd) in clients.into_iter().enumerate() {
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let origin = format!("n{w}");
            let mut latencies = Vec::with_capacity(each);
            for i in 0..each {
                let event = LogEvent::Policy(warden_policy::Event::ResourceOnline {
                    resource: format!("r{w}-{i}"),
                    node: origin.clone(),
                });
                let one = Instant::now();
                if unordered {
                    // What etcd does without the head's compare-and-swap:
                    // a put of its own key (the order would be etcd's
                    // revision). Not what the log does; its ceiling.
                    let (_, mut client) = etcd.preferred();
                    let body = serde_json::to_vec(&event).expect("encodes");
                    client
                        .put(format!("{}/{origin}/{i}", keys.log_prefix()), body, None)
                        .await
                        .expect("puts");
                } else {
                    append(&etcd, &keys, &origin, &event)
                        .await
                        .expect("appends");
                }
                latencies.push(one.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a writer"));
    }
    (started.elapsed(), latencies)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(dir.path());
    let endpoints: Vec<String> = etcd.clients.iter().map(|c| format!("http://{c}")).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let events = numbers("WARDEN_BENCH_EVENTS", &[2000])[0];
    let mut rows = Vec::new();
    for (writers, unordered) in numbers("WARDEN_BENCH_WRITERS", &[1, 3, 10, 30])
        .into_iter()
        .flat_map(|w| [(w, false), (w, true)])
    {
        let (took, mut latencies) = runtime.block_on(round(&endpoints, writers, events, unordered));
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let row = format!(
            "| {writers} | {} | {} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
            if unordered {
                "plain put (ceiling)"
            } else {
                "log append"
            },
            latencies.len(),
            took.as_secs_f64(),
            latencies.len() as f64 / took.as_secs_f64(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0)),
        );
        eprintln!("{row}");
        rows.push(row);
    }
    println!();
    println!("| writers | how | events | wall time | events/s | p50 | p99 | max |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
