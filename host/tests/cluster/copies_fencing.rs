//! Issue #16: the old active copy of the store, once another copy is
//! activated, acknowledges nothing more. In the network lab, three agents
//! on a real three-member etcd, the group `evs1` of ip-address <- store <-
//! smtp-instance with a copy of the store on every node
//! (`common::store_copies`), in both modes.
//!
//! A writer inside n1's namespace (a client the test controls, which the
//! faults below do not cut off from n1's services) writes to n1's own
//! services all along: one message after another over SMTP to the virtual
//! address (n1's SMTP server while n1 holds it) and `PUT`s straight to
//! n1's store. Then n1 is cut off from etcd and the other nodes (nftables
//! in the lab), or its agent frozen (SIGSTOP); the test waits until n2's
//! agent shows another copy active with generation 2, writes on for a
//! while, and counts what n1 acknowledged after the activation (its time in
//! the new owner's history): none may be. In sync mode every write n1 ever
//! acknowledged must be in the new active copy too.
//!
//! Without CAP_NET_ADMIN it says why and returns; `WARDEN_NETLAB_REQUIRED=1`
//! (CI) makes that a failure.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::cluster::Setup;
use crate::common::lab_cluster::LabCluster;
use crate::common::store_copies::{
    Mode, SMTP_PORT, STORE_PORT, Write1, activated_at, copies, now_ms, on, setup, stored_probes,
    wait_settled, write_to,
};
use crate::common::virtual_server::{Probe, VIP, probing, wait_answered, wait_served_by};
use crate::common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);
/// How long the writer goes on after the new activation was seen.
const WRITE_ON: Duration = Duration::from_secs(4);

/// What happens to n1, the active copy's node.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every packet between n1 and n2, n3 dropped: n1's agent reaches only
    /// its own etcd member, a minority.
    CutOff,
    /// n1's agent stopped (SIGSTOP); its services and the network go on.
    Frozen,
}

fn the_old_active_acknowledges_nothing_after_the_new_activation(mode: Mode, fault: Fault) {
    let name = format!("copies-fence-{mode:?}-{fault:?}").to_lowercase();
    let Some(mut cluster) = LabCluster::new(&name, setup(mode, "\"all\"")) else {
        return;
    };
    cluster.start_three();
    wait_settled(&cluster, &["n2", "n3"]);
    let agent = cluster.agents[0]
        .as_ref()
        .map(|a| a.0.id())
        .expect("n1's agent");

    let stop = AtomicBool::new(false);
    let (new_owner, writes) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_to(&cluster.lab, "n1", &stop));
        std::thread::sleep(Duration::from_secs(3));
        let faulted_ms = now_ms();
        match fault {
            Fault::CutOff => cluster.lab.partition(&["n1"], &["n2", "n3"]),
            Fault::Frozen => signal(agent, "-STOP"),
        }
        let seen = wait_until("another copy active with generation 2", MINUTE, || {
            let (store, copies) = copies(&cluster, 1)?;
            let active = copies.iter().find(|c| c["state"] == "active")?;
            let node = active["node"].as_str()?.to_string();
            (store["generation"] == 2 && node != "n1").then_some(node)
        });
        eprintln!(
            "{fault:?}, {mode:?}: {seen} active {} ms after the fault",
            now_ms() - faulted_ms
        );
        std::thread::sleep(WRITE_ON);
        stop.store(true, Ordering::Relaxed);
        let writes = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (seen, writes)
    });
    if matches!(fault, Fault::Frozen) {
        signal(agent, "-CONT");
    }

    let new = crate::common::virtual_server::index(&new_owner);
    let activated = activated_at(&cluster, new).expect("the activation in the new owner's history");
    let acked: Vec<&Write1> = writes.iter().filter(|w| w.acked_ms.is_some()).collect();
    let after: Vec<&Write1> = acked
        .iter()
        .copied()
        .filter(|w| w.acked_ms.is_some_and(|at| at >= activated))
        .collect();
    let tried_after = writes.iter().filter(|w| w.sent_ms >= activated).count();
    let last_ack = acked.iter().filter_map(|w| w.acked_ms).max();
    eprintln!(
        "{} writes to n1, {} acknowledged, the last {} ms before {new_owner}'s activation; \
         {tried_after} tried after it, {} acknowledged",
        writes.len(),
        acked.len(),
        last_ack.map_or("-".to_string(), |at| (activated as i64 - at as i64)
            .to_string()),
        after.len()
    );
    assert!(
        acked.len() >= 5,
        "too few writes acknowledged before the fault to count: {writes:#?}"
    );
    assert!(
        tried_after >= 5,
        "too few writes tried after the activation to judge: {writes:#?}"
    );
    assert!(
        after.is_empty(),
        "n1 acknowledged writes after {new_owner}'s copy was activated at {activated}: {after:#?}"
    );

    // Whatever the old active acknowledged is on the new one in sync mode;
    // in async mode what it took alone is lost (counted).
    let stored = stored_probes(&cluster.lab, &new_owner);
    let lost: Vec<u64> = acked
        .iter()
        .map(|w| w.n)
        .filter(|n| !stored.contains(n))
        .collect();
    eprintln!(
        "{} acknowledged by n1 are not on {new_owner}: {lost:?}",
        lost.len()
    );
    if mode == Mode::Sync {
        assert!(
            lost.is_empty(),
            "acknowledged by n1 in sync mode but not on {new_owner}: {lost:?}"
        );
    }
    let (_, copies) = copies(&cluster, new).expect("the new owner's status");
    assert!(
        on(&copies, "n1").is_none_or(|c| c["state"] != "active"),
        "n1's copy still shown active: {copies:#?}"
    );
}

/// `kill SIGNAL pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn a_cut_off_sync_active_acknowledges_nothing_after_another_copy_is_activated() {
    the_old_active_acknowledges_nothing_after_the_new_activation(Mode::Sync, Fault::CutOff);
}

#[test]
fn a_cut_off_async_active_acknowledges_nothing_after_another_copy_is_activated() {
    the_old_active_acknowledges_nothing_after_the_new_activation(Mode::ASYNC, Fault::CutOff);
}

#[test]
fn a_frozen_agents_sync_active_acknowledges_nothing_after_another_copy_is_activated() {
    the_old_active_acknowledges_nothing_after_the_new_activation(Mode::Sync, Fault::Frozen);
}

#[test]
fn a_frozen_agents_async_active_acknowledges_nothing_after_another_copy_is_activated() {
    the_old_active_acknowledges_nothing_after_the_new_activation(Mode::ASYNC, Fault::Frozen);
}

/// A passive copy whose node lost its lease: n3 is cut off from n1 and n2
/// (its agent reaches only its own etcd member, a minority) and fences
/// itself. Its passive copy is stopped with everything else (it would
/// otherwise serve reads of data nobody tells it is stale), the others
/// see the copy gone, a move to n3 is refused and a move anywhere goes to
/// n2. Healed, n3 rejoins and its copy follows n2 again.
///
/// Without fence guards: a guard kills everything its agent holds once the
/// agent stops vouching (7/12 of the TTL), passive copies included; this
/// is the agent's own fence (half the TTL), which must stop them too.
#[test]
fn a_fenced_nodes_passive_copy_stops_and_is_never_activated() {
    let setup = Setup {
        fence_guard: false,
        ..setup(Mode::Sync, "\"all\"")
    };
    let Some(mut cluster) = LabCluster::new("copies-fence-passive", setup) else {
        return;
    };
    cluster.start_three();
    wait_settled(&cluster, &["n2", "n3"]);
    let fences = cluster.fences(2);
    cluster.lab.partition(&["n3"], &["n1", "n2"]);
    wait_until("n3 to fence itself", MINUTE, || {
        (cluster.fences(2) > fences).then_some(())
    });
    wait_until("n3's passive copy to stop", MINUTE, || {
        (!store_answers(&cluster, "n3")).then_some(())
    });
    wait_until("n2 to see n3's copy gone", MINUTE, || {
        let (_, copies) = copies(&cluster, 1)?;
        (on(&copies, "n3")?["state"] == "none").then_some(())
    });

    // n3's copy is no candidate while its node is down: a move there is
    // refused, a move anywhere goes to n2, and nothing starts n3's copy.
    // (The request goes into the log; the engine refuses it there.)
    cluster.ok(0, &["group", "move", "evs1", "--to", "n3"]);
    std::thread::sleep(Duration::from_secs(2));
    let (store, copies_now) = copies(&cluster, 1).expect("n2's status");
    assert!(
        store["generation"] == 1 && on(&copies_now, "n1").is_some_and(|c| c["state"] == "active"),
        "the group moved toward the fenced n3: {store:#}\n{copies_now:#?}"
    );
    cluster.ok(0, &["group", "move", "evs1"]);
    let (store, copies_now) = wait_until("n2 active with generation 2", MINUTE, || {
        let (store, copies) = copies(&cluster, 1)?;
        (store["generation"] == 2 && on(&copies, "n2")?["state"] == "active")
            .then_some((store, copies))
    });
    eprintln!("after the move: {store:#}\n{copies_now:#?}");
    assert!(
        !store_answers(&cluster, "n3"),
        "the store on the fenced n3 runs again"
    );
    assert_ne!(on(&copies_now, "n3").expect("n3's copy")["state"], "active");

    // Healed, n3 rejoins; its copy follows the new active.
    let joins = cluster.joins(2);
    cluster.lab.heal();
    cluster.wait_joined(2, joins);
    wait_until("n3's copy to follow n2", MINUTE, || {
        let (_, copies) = copies(&cluster, 1)?;
        let copy = on(&copies, "n3")?;
        (copy["state"] == "passive" && copy["source"] == "n2").then_some(())
    });
}

/// Whether the store on `node`'s loopback accepts a connection.
fn store_answers(cluster: &LabCluster, node: &str) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], STORE_PORT));
    cluster.lab.within(node, || {
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
    })
}

/// A planned move of the group with the store's copies, asynchronous, with
/// a writer streaming messages over SMTP into the virtual server all
/// along: the move loses nothing. Every message answered 250, by n1 before
/// the move or by n2 after it, is in the store n2's copy serves then, and
/// n1's copy follows n2 (had n2 been activated before it caught up with
/// n1's last position, n1's log would now be ahead of n2's: diverged).
#[test]
fn a_planned_move_of_async_copies_loses_no_acknowledged_message() {
    let Some(cluster) = LabCluster::new("copies-move", setup(Mode::ASYNC, "\"all\"")) else {
        return;
    };
    let mut cluster = cluster;
    cluster.start_three();
    wait_settled(&cluster, &["n2", "n3"]);
    let probe = Probe::SmtpAt(SocketAddr::new(IpAddr::V4(VIP), SMTP_PORT));
    wait_served_by(&cluster.lab, &probe, "n1");

    let (lab, cluster_ref) = (&cluster.lab, &cluster);
    let ((), answers) = probing(lab, &probe, || {
        std::thread::sleep(Duration::from_secs(2));
        cluster_ref.ok(0, &["group", "move", "evs1", "--to", "n2"]);
        wait_answered(lab, &probe, "n2 to take the writes", |n| n == "n2");
        std::thread::sleep(Duration::from_secs(1));
    });
    let acknowledged: BTreeSet<u64> = answers
        .iter()
        .filter(|a| a.good.is_some())
        .map(|a| a.n)
        .collect();
    let by_n1 = answers
        .iter()
        .filter(|a| a.good_from().is_some_and(|(_, n)| n == "n1"))
        .count();
    assert!(
        by_n1 >= 5 && acknowledged.len() > by_n1,
        "too few messages answered 250 by n1 ({by_n1}) and n2 ({}) to count",
        acknowledged.len() - by_n1
    );
    let (store, after) = wait_until("n2 active with generation 2", MINUTE, || {
        let (store, copies) = copies(&cluster, 1)?;
        (store["generation"] == 2 && on(&copies, "n2")?["state"] == "active")
            .then_some((store, copies))
    });
    eprintln!("after the move: {store:#}\n{after:#?}");
    let stored = stored_probes(&cluster.lab, "n2");
    let lost: Vec<u64> = acknowledged.difference(&stored).copied().collect();
    eprintln!(
        "{} messages answered 250 ({by_n1} by n1); the store on n2 holds {} of them",
        acknowledged.len(),
        acknowledged.len() - lost.len()
    );
    assert!(
        lost.is_empty(),
        "answered 250 but not on n2 after the move: probes {lost:?}"
    );
    wait_until("n1's copy to follow n2, healthy", MINUTE, || {
        let (_, copies) = copies(&cluster, 1)?;
        let copy = on(&copies, "n1")?;
        (copy["state"] == "passive"
            && copy["source"] == "n2"
            && copy["generation"] == 2
            && copy["health"] == "healthy")
            .then_some(())
    });
}
