//! Failover time with a fence device against lease expiry alone: SIGSTOP
//! of the agent that owns a group, to the group's service answering from
//! another node, at the same lease TTL.
//!
//! A real 3-member etcd and three real agents (the harness of
//! `tests/cluster/cluster.rs`). Lease expiry alone: the other nodes learn of the
//! frozen owner when etcd expires its lease (its fence guard has stopped
//! its service before). With a fence device (sushy-tools' Redfish
//! emulator, `tests/common/redfish.rs`, whose power-off the lab turns into
//! kill -9 of that node's processes): a survivor sees the owner's lease
//! lapse past half its TTL, powers it off through the device, and moves
//! its group once the device confirms it off, before the lease expires.
//! After each round the frozen node is killed (lease alone) or powered on
//! again (fence device) and its agent restarted.
//!
//! Run: `cargo bench -p warden --bench fence` (`WARDEN_FENCE_ROUNDS`,
//! default 5 per mode).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, NODES, Setup, served_by};
use common::redfish::{Emulator, Lab, fence_device_config, power_on};
use common::wait_until;

/// The lease TTL of both modes.
const LEASE_TTL_S: u64 = 6;

fn main() {
    let rounds: usize = std::env::var("WARDEN_FENCE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let scratch = tempfile::tempdir().expect("tempdir");
    let lease_alone = measure("lease expiry alone", rounds, None);
    let fenced = measure("fence device", rounds, Some(scratch.path()));

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| failover after SIGSTOP of the owner | lease TTL | rounds | min | median | max |");
    println!("|---|---|---|---|---|---|");
    for (mode, mut times) in [
        ("lease expiry alone", lease_alone),
        ("fence device (Redfish)", fenced),
    ] {
        times.sort();
        println!(
            "| {mode} | {LEASE_TTL_S} s | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            times.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

/// `rounds` failovers in a cluster of its own; with `fence`, through an
/// emulator kept in that directory.
fn measure(mode: &str, rounds: usize, fence: Option<&std::path::Path>) -> Vec<Duration> {
    let mut cluster = Cluster::with(Setup {
        lease_ttl_s: LEASE_TTL_S,
        ..Setup::default()
    });
    let lab = Lab::start((0..3).map(|i| cluster.node_dir(i)).collect());
    let emulator = fence.map(|dir| {
        let emulator = Emulator::start(&dir.join("emulator"), &NODES, Some(lab.address));
        cluster.setup.extra_config = fence_device_config(emulator.address);
        emulator
    });
    let start = |cluster: &mut Cluster, i: usize| {
        let before = cluster.joins(i);
        cluster.start_agent(i);
        lab.agents.lock().expect("the agents")[i] =
            cluster.agents[i].as_ref().map(|a| a.0.id() as i32);
        cluster.wait_joined(i, before);
    };
    for i in 0..NODES.len() {
        start(&mut cluster, i);
    }
    let mut times = Vec::new();
    for round in 0..rounds {
        let (owner, _) = wait_until("the service to answer", Duration::from_secs(60), || {
            served_by(cluster.service)
        });
        let frozen = NODES.iter().position(|n| *n == owner).expect("a node");
        // Joined and settled before the freeze.
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        cluster.freeze_agent(frozen);
        let (next, _) = wait_until("another node to serve", Duration::from_secs(60), || {
            served_by(cluster.service).filter(|(n, _)| *n != owner)
        });
        let took = started.elapsed();
        println!("{mode}, round {round}: {owner} frozen, {next} serving after {took:?}");
        times.push(took);
        cluster.kill_agent(frozen);
        if let Some(emulator) = &emulator {
            wait_until("the system to power on", Duration::from_secs(20), || {
                power_on(emulator.address, &owner).then_some(())
            });
        }
        start(&mut cluster, frozen);
    }
    times
}
