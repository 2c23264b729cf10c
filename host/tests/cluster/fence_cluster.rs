//! Fence devices in a cluster: three real agents on a real 3-member etcd
//! (`common/cluster.rs`), a Redfish emulator (sushy-tools' fake driver,
//! `common/redfish.rs`) with one system per node, and a lab that turns a
//! system's power-off into `kill -9` of that node's agent, its fence guard
//! and its services — before the emulator can say the system is off (the
//! fake driver tells the lab synchronously, see `Lab`).
//!
//! - A frozen owner (SIGSTOP) is powered off through the emulator before
//!   its group comes online on another node, judged from the lab's record
//!   of the power-off and the services' own records.
//!   A node stopped cleanly (SIGTERM) is not powered off.
//! - With the device unreachable, the group does not move (the frozen
//!   node's lease expires, but nothing confirmed it off); once the device
//!   answers again the node is fenced and only then does the group move.

use std::time::Duration;

use crate::common::cluster::{
    Cluster, NODES, Run, Setup, alive, overlapping, runs, serving_now, unix_ms,
};
use crate::common::redfish::{Emulator, Lab, fence_device_config, system_id};
use crate::common::wait_until;

/// The agents' lease TTL.
const TTL_S: u64 = 6;

/// A cluster whose agents share one fence device, the emulator, and the
/// lab behind it.
fn fenced_cluster(scratch: &std::path::Path) -> (Cluster, Lab, Emulator) {
    let mut cluster = Cluster::with(Setup {
        recorded: true,
        lease_ttl_s: TTL_S,
        ..Setup::default()
    });
    let lab = Lab::start((0..3).map(|i| cluster.node_dir(i)).collect());
    let emulator = Emulator::start(&scratch.join("emulator"), &NODES, Some(lab.address));
    cluster.setup.extra_config = fence_device_config(emulator.address);
    (cluster, lab, emulator)
}

/// Start the three agents, tell the lab their pids, and wait until every
/// agent has joined and one serves: its index and its run.
fn start_all(cluster: &mut Cluster, lab: &Lab) -> (usize, Run) {
    for i in 0..NODES.len() {
        cluster.start_agent(i);
        let pid = cluster.agents[i].as_ref().map(|a| a.0.id() as i32);
        lab.agents.lock().expect("the agents")[i] = pid;
    }
    for i in 0..NODES.len() {
        cluster.wait_joined(i, 0);
    }
    let run = wait_until("the group to be served", Duration::from_secs(60), || {
        serving_now(&cluster.records_file(), 1000)
    });
    let owner = NODES.iter().position(|n| *n == run.node).expect("a node");
    (owner, run)
}

/// The first run of a node other than `node` that started after `after`.
fn next_run(cluster: &Cluster, node: &str, after: u64) -> Option<Run> {
    runs(&cluster.records_file())
        .into_iter()
        .find(|r| r.node != node && r.from >= after)
}

/// The survivors' logs, as one text.
fn survivors_logs(cluster: &Cluster, owner: usize) -> String {
    (0..3)
        .filter(|&i| i != owner)
        .map(|i| std::fs::read_to_string(cluster.agent_log(i)).unwrap_or_default())
        .collect()
}

#[test]
fn a_frozen_owner_is_powered_off_through_the_device_before_its_group_moves() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (mut cluster, lab, emulator) = fenced_cluster(scratch.path());
    let (owner, first) = start_all(&mut cluster, &lab);
    let name = NODES[owner];
    let owner_pid = lab.agents.lock().expect("the agents")[owner].expect("the owner's agent");

    let frozen_at = unix_ms();
    cluster.freeze_agent(owner);
    let next = wait_until(
        &format!(
            "another node to serve; logs in {}",
            cluster.dir.path().display()
        ),
        Duration::from_secs(60),
        || next_run(&cluster, name, frozen_at),
    );
    let off = lab.off_of(name).unwrap_or_else(|| {
        panic!(
            "{} serves, but the emulator never powered {name} off:\n{}",
            next.node,
            emulator.log_text()
        )
    });
    assert!(
        off <= next.from,
        "{} started serving at {} ms, before {name} was powered off at {off} ms",
        next.node,
        next.from
    );
    assert!(
        !alive(owner_pid),
        "the lab's power-off left {name}'s agent running"
    );
    assert_eq!(emulator.power_state(name).as_deref(), Some("Off"));
    // The frozen node served until at most its power-off; never two at once.
    let all = runs(&cluster.records_file());
    assert!(
        overlapping(&all).is_none(),
        "two nodes served at once: {all:?}"
    );
    let first_end = all
        .iter()
        .find(|r| r.pid == first.pid)
        .map_or(first.to, |r| r.to);
    assert!(
        first_end <= off,
        "{name}'s service outlived its power-off: {all:?}"
    );
    let logs = survivors_logs(&cluster, owner);
    assert!(
        logs.contains(&format!(
            "powered off through fence device lab ({})",
            system_id(name)
        )),
        "no survivor logged the fence"
    );
    // A node that stops cleanly (SIGTERM) says it is down itself before its
    // key goes: nobody powers it off.
    let bystander = (0..3)
        .find(|&i| i != owner && NODES[i] != next.node)
        .expect("a third node");
    cluster.stop_agent(bystander, Duration::from_secs(30));
    let stopped_at = unix_ms();
    wait_until(
        "a TTL after the clean stop",
        Duration::from_secs(30),
        || (unix_ms() > stopped_at + TTL_S * 1000).then_some(()),
    );
    assert!(
        lab.off_of(NODES[bystander]).is_none(),
        "{} was powered off after a clean stop",
        NODES[bystander]
    );
    assert_eq!(
        emulator.power_state(NODES[bystander]).as_deref(),
        Some("On")
    );
    println!(
        "{name} frozen -> powered off at +{} ms -> {} serving at +{} ms; fence started by {} \
         (lease TTL {TTL_S} s)",
        off - frozen_at,
        next.node,
        next.from - frozen_at,
        if logs.contains("its lease was not renewed") {
            "the lease watch"
        } else {
            "the member key's expiry"
        }
    );
}

#[test]
fn an_unreachable_device_holds_the_group_until_it_confirms_the_node_off() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (mut cluster, lab, mut emulator) = fenced_cluster(scratch.path());
    let (owner, _) = start_all(&mut cluster, &lab);
    let name = NODES[owner];
    let survivors: Vec<usize> = (0..3).filter(|&i| i != owner).collect();

    // The device goes away, then the owner freezes.
    emulator.stop();
    let frozen_at = unix_ms();
    cluster.freeze_agent(owner);
    // Its lease expires after one TTL (its keys go with it); the survivors
    // try to fence it and fail. Nothing may move meanwhile.
    let failed = format!("fencing {name} failed");
    wait_until(
        "both survivors to fail fencing the owner three times",
        Duration::from_secs(60),
        || {
            survivors
                .iter()
                .all(|&i| {
                    std::fs::read_to_string(cluster.agent_log(i))
                        .unwrap_or_default()
                        .matches(&failed)
                        .count()
                        >= 3
                })
                .then_some(())
        },
    );
    let lease_gone_by = frozen_at + 2 * TTL_S * 1000;
    wait_until("two TTLs after the freeze", Duration::from_secs(60), || {
        (unix_ms() > lease_gone_by).then_some(())
    });
    assert!(
        next_run(&cluster, name, frozen_at).is_none(),
        "the group moved without the device confirming {name} off: {:?}",
        runs(&cluster.records_file())
    );
    assert!(
        lab.off_of(name).is_none(),
        "a power-off with the device down"
    );
    let events = cluster.ok(survivors[0], &["events", "--json"]);
    assert!(
        events.contains("fencing failed"),
        "no event says fencing failed: {events}"
    );

    // The device answers again: the owner is fenced, then the group moves.
    emulator.start_again();
    let next = wait_until(
        &format!(
            "the group to move once {name} is fenced; logs in {}",
            cluster.dir.path().display()
        ),
        Duration::from_secs(60),
        || next_run(&cluster, name, frozen_at),
    );
    let off = lab.off_of(name).expect("the lab powered the owner off");
    assert!(
        off <= next.from,
        "{next:?} started before {name}'s power-off at {off}"
    );
    let all = runs(&cluster.records_file());
    assert!(
        overlapping(&all).is_none(),
        "two nodes served at once: {all:?}"
    );
}
