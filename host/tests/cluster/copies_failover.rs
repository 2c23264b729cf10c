//! Issue #16's acceptance, synchronous mode, in the network lab: three
//! agents on a real three-member etcd, a group `evs1` of ip-address
//! (198.18.0.200) <- store <- smtp-instance, the store with a copy on every
//! node (`copies = "all"`, `sync-mode = "sync"`): the owner runs the active
//! copy, the other two a passive copy each, pulling the log from the
//! group's virtual address. No shared disk: each node's store lives in its
//! own data directory, and serves on its node's loopback (the SMTP server
//! runs beside it; a passive copy could not bind the virtual address).
//!
//! A writer streams messages over SMTP into the virtual server; kill -9 of
//! the agent running the active copy (its services die with it, by
//! `PR_SET_PDEATHSIG`); the cluster activates the copy that lags least on
//! its node with the next generation, the other passive copy follows the
//! new active, and every message answered 250 before and after the kill is
//! in the store now serving (counted).
//!
//! Without CAP_NET_ADMIN it says why and returns; `WARDEN_NETLAB_REQUIRED=1`
//! (CI) makes that a failure.

use std::time::Duration;

use crate::common;
use crate::common::cluster::Setup;
use crate::common::lab_cluster::LabCluster;
use crate::common::store_copies::{
    Mode, accepted, copies, cut_replication, on, setup, smtp_probe, stored_probes, wait_settled,
};
use crate::common::virtual_server::{probing, wait_answered, wait_served_by};
use crate::common::wait_until;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn kill_9_of_the_active_copys_agent_activates_a_passive_copy_with_every_acknowledged_message() {
    let Some(mut cluster) = LabCluster::new("copies-failover", setup(Mode::Sync, "\"all\"")) else {
        return;
    };
    let probe = smtp_probe();
    cluster.start_three();

    // n1 runs the active copy (generation 1), n2 and n3 follow it, each
    // healthy and caught up, before the writer starts.
    wait_settled(&cluster, &["n2", "n3"]);
    wait_served_by(&cluster.lab, &probe, "n1");

    // Stream messages; kill -9 of n1's agent; wait for another node to
    // take the writes.
    let (lab, agents) = (&cluster.lab, &mut cluster.agents);
    let (next, answers) = probing(lab, &probe, || {
        std::thread::sleep(Duration::from_secs(3));
        // Killed (SIGKILL) as it is dropped; its mail-store with it.
        drop(agents[0].take());
        wait_answered(lab, &probe, "another node to take the writes", |n| {
            n != "n1"
        })
    });
    let before_kill = accepted(&answers);
    assert!(
        before_kill.len() >= 5,
        "too few messages were answered 250 to count: {answers:#?}"
    );

    // The new owner's copy is active with generation 2; the other follows.
    let i = common::virtual_server::index(&next);
    let (store, after) = wait_until("generation 2 active on the new owner", MINUTE, || {
        let (store, copies) = copies(&cluster, i)?;
        (store["generation"] == 2 && on(&copies, &next)?["state"] == "active")
            .then_some((store, copies))
    });
    let other = if next == "n2" { "n3" } else { "n2" };
    wait_until(&format!("{other} to follow {next}"), MINUTE, || {
        let (_, copies) = copies(&cluster, i)?;
        let copy = on(&copies, other)?;
        (copy["state"] == "passive" && copy["source"] == next.as_str()).then_some(())
    });
    eprintln!("after the kill: {store:#}\n{after:#?}");

    // Every message answered 250 (before the kill and after) is in the
    // store the new active copy serves.
    let stored = stored_probes(&cluster.lab, &next);
    let lost: Vec<u64> = before_kill.difference(&stored).copied().collect();
    eprintln!(
        "{} messages answered 250; the store on {next} holds {} probes' messages",
        before_kill.len(),
        stored.len()
    );
    assert!(
        lost.is_empty(),
        "answered 250 but not in the new active copy: probes {lost:?}"
    );

    // The history of the new owner records the activation asked and done.
    let history = std::fs::read_to_string(cluster.node_dir(i).join("data").join("events.jsonl"))
        .unwrap_or_default();
    assert!(
        history.contains("activate with generation 2") && history.contains("the copy is active"),
        "{next}'s history lacks the activation"
    );
}

/// The group `evs1` with the store's copies on n1 and n2 only, asynchronous
/// (writes go on while the passive falls behind), `max_lag_on_failover`
/// `max_lag`.
fn lagging_setup(max_lag: u64) -> Setup {
    let mode = Mode::Async {
        max_async_lag: Some(100_000),
        max_lag_on_failover: Some(max_lag),
    };
    setup(mode, r#"["n1", "n2"]"#)
}

/// The over-limit case end to end: n2's passive copy stops following (its
/// replication traffic is dropped in n2's namespace, so it cannot reach
/// the active: healthy, holding what it copied), the writer goes on, the active
/// reports its position, and n2's copy falls past the limit. kill -9 of
/// n1's agent: the group waits Failed with a reason naming n2's lag; the
/// operator's `warden group accept-data-loss` brings it online on n2, and
/// the history records what was accepted.
#[test]
fn a_copy_past_its_lag_limit_waits_for_the_operators_word() {
    const MAX_LAG: u64 = 5;
    let Some(mut cluster) = LabCluster::new("copies-lag", lagging_setup(MAX_LAG)) else {
        return;
    };
    let probe = smtp_probe();
    cluster.start_three();
    wait_until("n2's passive copy following n1", MINUTE * 2, || {
        let (_, copies) = copies(&cluster, 0)?;
        let copy = on(&copies, "n2")?;
        (on(&copies, "n1")?["state"] == "active"
            && copy["state"] == "passive"
            && copy["generation"] == 1
            && copy["health"] == "healthy")
            .then_some(())
    });
    wait_served_by(&cluster.lab, &probe, "n1");

    // n2's copy stops following: its replication traffic is dropped both
    // ways on n2's link.
    cut_replication(&cluster.lab, "n2");
    let mut sent = 0;
    let lag = wait_until("n2's copy to lag past the limit", MINUTE * 2, || {
        let answer = cluster
            .lab
            .within(common::lab_cluster::CLIENT, || probe.run());
        if answer.good.is_some() {
            sent += 1;
        }
        let (_, copies) = copies(&cluster, 0)?;
        let lag = on(&copies, "n2")?["lag"].as_u64()?;
        (lag > MAX_LAG).then_some(lag)
    });
    eprintln!("{sent} messages accepted; n2's copy lags {lag}");

    // kill -9 of n1's agent: no copy may be activated without the word.
    drop(cluster.agents[0].take());
    let reason = wait_until("the group Failed naming the lag", MINUTE, || {
        let out = cluster.cli(1, &["status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        let group = status["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "evs1")?
            .clone();
        let reason = group["reason"].as_str()?.to_string();
        (group["state"] == "failed" && reason.contains("copy on n2 lags")).then_some(reason)
    });
    assert!(
        reason.contains(&format!("> max {MAX_LAG}")),
        "the reason names the limit: {reason}"
    );
    let (_, copies_now) = copies(&cluster, 1).expect("n2's view of the copies");
    let n2 = on(&copies_now, "n2").expect("n2's copy");
    assert!(
        n2["activation_blocked"]
            .as_str()
            .is_some_and(|b| b.contains("lags")),
        "{n2}"
    );

    // The operator's word, through n2's CLI.
    let accepted = cluster.ok(1, &["group", "accept-data-loss", "evs1", "--node", "n2"]);
    assert!(accepted.contains("data loss accepted"), "{accepted}");
    wait_until("n2's copy active with generation 2", MINUTE, || {
        let (store, copies) = copies(&cluster, 1)?;
        (store["generation"] == 2 && on(&copies, "n2")?["state"] == "active").then_some(())
    });
    wait_served_by(&cluster.lab, &probe, "n2");
    let history = std::fs::read_to_string(cluster.node_dir(1).join("data").join("events.jsonl"))
        .unwrap_or_default();
    assert!(
        history.contains("data loss accepted by the operator"),
        "n2's history does not record the accepted loss"
    );
}
