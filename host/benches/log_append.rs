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
//! second, one append's latency (median, 99th percentile, max) as its
//! writer saw it, retries after a lost race included, and those retries
//! (attempts refused because another writer moved the head first, each a
//! raft proposal spent for nothing). Each writer count runs three ways:
//! through the log one event an append (`log append`); through the log in
//! batches of [`BATCH`] events an append (`log append, batched`: what an
//! agent's link does with the reports queued behind an append in flight,
//! `log::append_batch`); and as plain puts of keys of the writer's own
//! (`plain put`): no order, no compare-and-swap — what etcd itself takes
//! on this machine, the ceiling of any log on it.
//!
//! Run: `cargo bench -p warden --bench log_append`.
//! `WARDEN_BENCH_WRITERS=1,3,10` chooses the writer counts (default 1, 3,
//! 10); `WARDEN_BENCH_EVENTS` the events a round appends in all (default
//! 2000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::start_etcd;
use warden::cluster::Keys;
use warden::cluster::etcd::Etcd;
use warden::cluster::log::{LogEvent, append_batch};

/// Events a batched writer puts in one append: what a burst fills (the
/// link takes up to `log::BATCH_ENTRIES` queued reports at once).
const BATCH: usize = 64;

/// How a round's writers write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// `append_batch` of one event: the log, one entry a CAS.
    Append,
    /// `append_batch` of `BATCH` events: the log, a burst a CAS.
    Batched,
    /// A put of a key of the writer's own: no order; etcd's ceiling.
    PlainPut,
}

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
/// its own (a cluster name per round); the latency of every append (of a
/// batch, for `How::Batched`, counted once per event) and the races lost.
async fn round(
    endpoints: &[String],
    writers: usize,
    events: usize,
    how: How,
) -> (Duration, Vec<Duration>, usize) {
    let keys = Keys::new(&format!("bench-{writers}-{how:?}"));
    let mut clients = Vec::new();
    for _ in 0..writers {
        clients.push(Etcd::connect(endpoints).await.expect("connects"));
    }
    let each = events.div_ceil(writers);
    let per_append = per_append(how);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, etcd) in clients.into_iter().enumerate() {
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let origin = format!("n{w}");
            let mut latencies = Vec::with_capacity(each);
            let mut races = 0;
            let mut i = 0;
            while i < each {
                let n = per_append.min(each - i);
                let batch: Vec<LogEvent> = (i..i + n)
                    .map(|k| {
                        LogEvent::Policy(warden_policy::Event::ResourceOnline {
                            resource: format!("r{w}-{k}"),
                            node: origin.clone(),
                        })
                    })
                    .collect();
                let one = Instant::now();
                if how == How::PlainPut {
                    // What etcd does without the head's compare-and-swap:
                    // a put of its own key (the order would be etcd's
                    // revision). Not what the log does; its ceiling.
                    let (_, mut client) = etcd.preferred();
                    let body = serde_json::to_vec(&batch[0]).expect("encodes");
                    client
                        .put(format!("{}/{origin}/{i}", keys.log_prefix()), body, None)
                        .await
                        .expect("puts");
                } else {
                    let appended = append_batch(&etcd, &keys, &origin, &batch)
                        .await
                        .expect("appends");
                    races += appended.races;
                }
                latencies.extend(std::iter::repeat_n(one.elapsed(), n));
                i += n;
            }
            (latencies, races)
        }));
    }
    let mut latencies = Vec::new();
    let mut races = 0;
    for task in tasks {
        let (theirs, lost) = task.await.expect("a writer");
        latencies.extend(theirs);
        races += lost;
    }
    (started.elapsed(), latencies, races)
}

/// Events in one append of this kind.
fn per_append(how: How) -> usize {
    if how == How::Batched { BATCH } else { 1 }
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
    for (writers, how) in numbers("WARDEN_BENCH_WRITERS", &[1, 3, 10])
        .into_iter()
        .flat_map(|w| [(w, How::Append), (w, How::Batched), (w, How::PlainPut)])
    {
        let (took, mut latencies, races) =
            runtime.block_on(round(&endpoints, writers, events, how));
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let row = format!(
            "| {writers} | {} | {} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            match how {
                How::Append => "log append",
                How::Batched => "log append, batched",
                How::PlainPut => "plain put (ceiling)",
            },
            latencies.len(),
            took.as_secs_f64(),
            latencies.len() as f64 / took.as_secs_f64(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0)),
            if how == How::PlainPut {
                "-".to_string()
            } else {
                format!(
                    "{races} ({:.2} an append)",
                    races as f64 * per_append(how) as f64 / latencies.len() as f64
                )
            },
        );
        eprintln!("{row}");
        rows.push(row);
    }
    println!();
    println!("| writers | how | events | wall time | events/s | p50 | p99 | max | races lost |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        println!("{row}");
    }
}
