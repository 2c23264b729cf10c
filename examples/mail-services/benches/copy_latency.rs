//! Write latency of the store with no replication, with an async passive
//! copy and with a sync passive copy: real mail-store processes over
//! loopback, clients sending `PUT`s of 1 KiB and timing each answer.
//! Prints a table (docs/benchmarks.md, "The store's copies"); asserts nothing.
//!
//! `cargo bench -p warden-mail-services --bench copy_latency`
//! (`COPY_BENCH_WRITES`, default 1000 per client).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::{Line, STORE, Service, TempDir};

/// One setting: an active store, and its passive copy if it has one.
struct Setup {
    _dir: TempDir,
    active: Service,
    _passive: Option<Service>,
}

fn start(mode: Option<&str>) -> Setup {
    let dir = TempDir::new("copy-bench");
    let a = dir.arg("a");
    let p = dir.arg("p");
    let Some(mode) = mode else {
        let active = Service::start(STORE, &["--data", &a, "--listen", "127.0.0.1:0"]);
        return Setup {
            _dir: dir,
            active,
            _passive: None,
        };
    };
    let mut active = Service::start(
        STORE,
        &[
            "--data",
            &a,
            "--listen",
            "127.0.0.1:0",
            "--replication-listen",
            "127.0.0.1:0",
            "--sync-mode",
            mode,
        ],
    );
    let line = active.wait_log("replication on ");
    let repl = line.rsplit(' ').next().unwrap_or_default().to_string();
    let mut passive = Service::start(
        STORE,
        &[
            "--data",
            &p,
            "--listen",
            "127.0.0.1:0",
            "--role",
            "passive",
            "--replicate-from",
            &repl,
        ],
    );
    passive.wait_log("following the active copy");
    Setup {
        _dir: dir,
        active,
        _passive: Some(passive),
    }
}

/// `writes` PUTs on one connection; the latency of each.
fn client(addr: SocketAddr, mailbox: String, writes: usize) -> Vec<Duration> {
    let mut c = Line::connect(addr).expect("connect to the store");
    let body = vec![b'x'; 1024];
    (0..writes)
        .map(|_| {
            let t = Instant::now();
            let reply = c.put(&mailbox, &body).expect("PUT");
            assert!(reply.starts_with("OK "), "{reply}");
            t.elapsed()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Rounds the settings take turns in, so that a machine whose load drifts
/// (other builds on the same cores) weighs on each setting alike.
const ROUNDS: usize = 5;

fn main() {
    let writes: usize = std::env::var("COPY_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let per_round = writes.div_ceil(ROUNDS);
    let settings = [
        ("none", None),
        ("async", Some("async")),
        ("sync", Some("sync")),
    ];
    println!("| replication | clients | writes | messages/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for clients in [1usize, 4] {
        let setups: Vec<Setup> = settings.iter().map(|(_, mode)| start(*mode)).collect();
        let mut latencies = vec![Vec::new(); settings.len()];
        let mut busy = vec![Duration::ZERO; settings.len()];
        for round in 0..ROUNDS {
            for (i, setup) in setups.iter().enumerate() {
                let addr = setup.active.addr;
                let started = Instant::now();
                let handles: Vec<_> = (0..clients)
                    .map(|c| {
                        let mailbox = format!("bench{round}-{c}");
                        thread::spawn(move || client(addr, mailbox, per_round))
                    })
                    .collect();
                for h in handles {
                    latencies[i].extend(h.join().expect("a client panicked"));
                }
                busy[i] += started.elapsed();
            }
        }
        for (i, (name, _)) in settings.iter().enumerate() {
            let all = &mut latencies[i];
            all.sort();
            let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
            println!(
                "| {name} | {clients} | {} | {:.0} | {} | {} |",
                all.len(),
                all.len() as f64 / busy[i].as_secs_f64(),
                ms(percentile(all, 0.50)),
                ms(percentile(all, 0.99)),
            );
        }
    }
}
