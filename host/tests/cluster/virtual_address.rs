//! The virtual server keeps its address: a group whose root resource is an
//! `ip-address` (198.18.0.200/24 on each lab host's eth0), on the network
//! lab's three-node cluster. A client in its own namespace asks the
//! address every 100 ms which node answers (each node's service names its
//! node), while the group is moved, its owner's agent is killed with
//! kill -9, its owner is cut off, and its owner's agent is frozen (its fence
//! guard takes the address off). After each, the address answers from
//! the new node, the old node no longer holds it, and the client never saw
//! an earlier node answer again once a later one had (two nodes never
//! answered for the address).
//!
//! Without CAP_NET_ADMIN each test says why and returns;
//! `WARDEN_NETLAB_REQUIRED=1` (CI) makes that a failure.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::cluster::{NODES, Setup};
use crate::common::lab_cluster::{LabCluster, SERVICE_PORT};
use crate::common::virtual_server::{
    Probe, VIP, holders, holds, index, judge, probing, vip_config, wait_answered, wait_held_by,
    wait_served_by,
};
use crate::common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);

/// The address resource, its grant, and the service depending on it.
fn setup() -> Setup {
    Setup {
        extra_config: vip_config("vip", "web"),
        ..Setup::default()
    }
}

#[test]
fn the_address_moves_with_its_group_on_a_move_a_killed_agent_a_cut_off_owner_and_a_frozen_agent() {
    let Some(mut cluster) = LabCluster::new("vip-moves", setup()) else {
        return;
    };
    let probe = Probe::Http(SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT));
    cluster.start_three();
    wait_served_by(&cluster.lab, &probe, "n1");
    wait_held_by(&cluster.lab, "n1");

    // A planned move: n1 takes the address off, n2 probes, adds and
    // announces it.
    let ((), answers) = probing(&cluster.lab, &probe, || {
        cluster.ok(0, &["group", "move", "web", "--to", "n2"]);
        wait_served_by(&cluster.lab, &probe, "n2");
    });
    let verdict = judge(&answers, "n2");
    eprintln!("planned move: {verdict:?}");
    wait_held_by(&cluster.lab, "n2");

    // kill -9 of the owner's agent: its fence guard takes the address off
    // (and kills the service) when the last vouch runs out, before the
    // lease expires and another node takes the group.
    let (lab, agents) = (&cluster.lab, &mut cluster.agents);
    let (next, answers) = probing(lab, &probe, || {
        // Killed (SIGKILL) as it is dropped.
        drop(agents[1].take());
        wait_answered(lab, &probe, "another node to serve", |n| n != "n2")
    });
    let verdict = judge(&answers, &next);
    eprintln!("kill -9 of n2's agent: {verdict:?}");
    wait_held_by(&cluster.lab, &next);
    assert!(!holds(&cluster.lab, "n2"), "n2 still holds {VIP}");

    // The owner cut off (its cable pulled): it fences itself and takes the
    // address off; a connected node takes the group and the address.
    let owner = index(&next);
    let (then, answers) = probing(&cluster.lab, &probe, || {
        cluster.lab.link_down(NODES[owner]);
        wait_answered(&cluster.lab, &probe, "a connected node to serve", |n| {
            n != NODES[owner]
        })
    });
    let verdict = judge(&answers, &then);
    eprintln!("owner {} cut off: {verdict:?}", NODES[owner]);
    // The cut-off node took it off itself, though nobody could tell it to.
    wait_until(
        &format!("{} to take {VIP} off", NODES[owner]),
        MINUTE,
        || (!holds(&cluster.lab, NODES[owner])).then_some(()),
    );
    cluster.lab.link_up(NODES[owner]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holders(&cluster.lab), [then.as_str()], "after the heal");
    wait_served_by(&cluster.lab, &probe, &then);

    // The owner's agent frozen (SIGSTOP): it can neither fence itself nor
    // take the address off; its fence guard (a process of its own) does,
    // when the vouch runs out, before the lease expires and another node
    // probes for the address.
    let frozen = index(&then);
    let pid = cluster.agents[frozen]
        .as_ref()
        .map(|agent| agent.0.id().to_string())
        .expect("the owner's agent runs");
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {name} {pid}");
    };
    let (last, answers) = probing(&cluster.lab, &probe, || {
        signal("-STOP");
        wait_answered(&cluster.lab, &probe, "an unfrozen node to serve", |n| {
            n != NODES[frozen]
        })
    });
    let verdict = judge(&answers, &last);
    eprintln!("owner {}'s agent frozen: {verdict:?}", NODES[frozen]);
    assert!(
        !holds(&cluster.lab, NODES[frozen]),
        "{} still holds {VIP} with its agent frozen",
        NODES[frozen]
    );
    // Thawed, it finds its lease gone and does not put the address back.
    signal("-CONT");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holders(&cluster.lab), [last.as_str()], "after the thaw");
    wait_served_by(&cluster.lab, &probe, &last);
}
