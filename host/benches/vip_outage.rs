//! The client-visible outage through a virtual address: from the last good
//! answer before a change of owner to the first good answer after, seen
//! by a client in the network lab that asks the address every 100 ms.
//!
//! The lab's three-node cluster (`tests/common/lab_cluster.rs`) with the
//! group `web` of `tests/cluster/virtual_address.rs`: an `ip-address`
//! (198.18.0.200/24) beside the demo service, which answers on every
//! address of its host and names its node. Three modes, each for
//! `WARDEN_BENCH_ROUNDS` rounds (default 10):
//! - planned move: `warden group move web --to NEXT`;
//! - kill -9 of the owning agent (its services die with it, its fence
//!   guard takes the address off; the others wait for its lease to
//!   expire), which is then started again and rejoins;
//! - partitioned owner: nftables rules drop everything between the owner
//!   and the two other nodes (not the client); it fences itself, the
//!   majority takes the group at the lease's expiry; healed, it rejoins.
//!
//! The probes and the judge are the tests' (`tests/common/virtual_server.rs`):
//! a round where two nodes answered for the address panics.
//!
//! Run (root, as the lab needs): `cargo bench -p warden --bench vip_outage`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::cluster::{LEASE_TTL_S, NODES, Setup};
use common::lab_cluster::{LabCluster, SERVICE_PORT};
use common::virtual_server::{
    Probe, VIP, index, judge, probing, vip_config, wait_answered, wait_held_by, wait_served_by,
};

/// The modes, in the order they run and are printed.
const MODES: [&str; 3] = [
    "planned move",
    "kill -9 of the owning agent",
    "partitioned owner",
];

fn main() {
    let rounds: usize = std::env::var("WARDEN_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let Some(mut cluster) = LabCluster::new("vip-outage", setup()) else {
        return;
    };
    let probe = Probe::Http(SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT));
    cluster.start_three();
    wait_served_by(&cluster.lab, &probe, "n1");

    let mut outages: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
    for (mode, name) in MODES.iter().enumerate() {
        for round in 0..rounds {
            let owner = wait_answered(&cluster.lab, &probe, "the address to answer", |_| true);
            wait_held_by(&cluster.lab, &owner);
            // Settled (every agent joined, checks running) before the fault.
            std::thread::sleep(Duration::from_secs(2));
            let (to, outage) = match mode {
                0 => planned_move(&cluster, &probe, &owner),
                1 => killed_agent(&mut cluster, &probe, &owner),
                _ => partitioned(&cluster, &probe, &owner),
            };
            match outage {
                Some(outage) => {
                    eprintln!("{name}, round {round}: {owner} -> {to}, outage {outage:?}");
                    outages[mode].push(outage);
                }
                None => eprintln!("{name}, round {round}: {owner} -> {to}, no outage measured"),
            }
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| client-visible outage through {VIP} | lease TTL | rounds | min | median | max |");
    println!("|---|---|---|---|---|---|");
    for (name, mut times) in MODES.iter().zip(outages) {
        if times.is_empty() {
            println!("| {name} | {LEASE_TTL_S} s | 0 | | | |");
            continue;
        }
        times.sort();
        println!(
            "| {name} | {LEASE_TTL_S} s | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            times.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}

/// The group `web` of `tests/cluster/virtual_address.rs`: the address beside the
/// demo service, granted on every node.
fn setup() -> Setup {
    Setup {
        extra_config: vip_config("vip", "web"),
        // Every round is a failover; the default threshold (10 within
        // 6 h) would leave the group Failed in the second mode.
        failover_threshold: 1000,
        ..Setup::default()
    }
}

/// `warden group move web` from `owner` to the next node; that node and
/// the outage.
fn planned_move(cluster: &LabCluster, probe: &Probe, owner: &str) -> (String, Option<Duration>) {
    let to = NODES[(index(owner) + 1) % NODES.len()];
    let ((), answers) = probing(&cluster.lab, probe, || {
        cluster.ok(index(owner), &["group", "move", "web", "--to", to]);
        wait_served_by(&cluster.lab, probe, to);
    });
    (to.to_string(), judge(&answers, to).outage)
}

/// kill -9 of `owner`'s agent, until another node answers; the agent is
/// then started again and has joined on return.
fn killed_agent(
    cluster: &mut LabCluster,
    probe: &Probe,
    owner: &str,
) -> (String, Option<Duration>) {
    let i = index(owner);
    let (lab, agents) = (&cluster.lab, &mut cluster.agents);
    let (to, answers) = probing(lab, probe, || {
        // Killed (SIGKILL) as it is dropped.
        drop(agents[i].take());
        wait_answered(lab, probe, "another node to answer", |n| n != owner)
    });
    let outage = judge(&answers, &to).outage;
    let before = cluster.joins(i);
    cluster.start_agent(i);
    cluster.wait_joined(i, before);
    (to, outage)
}

/// `owner` partitioned from the other nodes until one of them answers;
/// healed, it has rejoined on return.
fn partitioned(cluster: &LabCluster, probe: &Probe, owner: &str) -> (String, Option<Duration>) {
    let i = index(owner);
    let others: Vec<&str> = NODES.into_iter().filter(|n| *n != owner).collect();
    let before = cluster.joins(i);
    let (to, answers) = probing(&cluster.lab, probe, || {
        cluster.lab.partition(&[owner], &others);
        wait_answered(&cluster.lab, probe, "the majority to answer", |n| {
            n != owner
        })
    });
    let outage = judge(&answers, &to).outage;
    cluster.lab.heal();
    cluster.wait_joined(i, before);
    (to, outage)
}
