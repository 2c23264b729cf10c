//! Failover time of a cluster on etcd: `kill -9` of the agent that owns a
//! group, to the group's service answering again from another node.
//!
//! A real 3-member etcd and three real agents on loopback (the harness of
//! `tests/cluster/cluster.rs`). Each round kills the current owner, waits until
//! another node serves, then starts the killed agent again so that three
//! nodes are up for the next round. The time is dominated by the lease
//! TTL: the other nodes learn of the death when etcd expires the lease.
//!
//! Run: `cargo bench -p warden --bench failover`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, NODES, Setup, served_by};
use common::wait_until;

const ROUNDS: usize = 8;
/// The lease TTL the agents use: failover time follows it.
const LEASE_TTL_S: u64 = 3;

fn main() {
    let mut cluster = Cluster::with(Setup {
        lease_ttl_s: LEASE_TTL_S,
        ..Setup::default()
    });
    for i in 0..NODES.len() {
        cluster.start_agent(i);
    }
    let (mut owner, _) = wait_until("the service to answer", Duration::from_secs(60), || {
        served_by(cluster.service)
    });
    // Every agent joined before the first kill.
    std::thread::sleep(Duration::from_secs(2));
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let killed = NODES
            .iter()
            .position(|n| *n == owner)
            .expect("the owner is one of the nodes");
        let started = Instant::now();
        cluster.kill_agent(killed);
        let (next, _) = wait_until("another node to serve", Duration::from_secs(60), || {
            served_by(cluster.service).filter(|(n, _)| *n != owner)
        });
        let took = started.elapsed();
        println!("round {round}: {owner} killed, {next} serving after {took:?}");
        times.push(took);
        cluster.start_agent(killed);
        owner = next;
        std::thread::sleep(Duration::from_secs(2));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| lease TTL | rounds | min | median | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| {LEASE_TTL_S} s | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
