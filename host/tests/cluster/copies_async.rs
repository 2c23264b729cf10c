//! Issue #16's acceptance, asynchronous mode, in the network lab, and the
//! reseed of the old active when it comes back: three agents on a real
//! three-member etcd, the group `evs1` of ip-address <- store <-
//! smtp-instance, the store with a copy on every node
//! (`common::store_copies`), asynchronous with `max-async-lag` 5 and
//! `max_lag_on_failover` 30.
//!
//! A writer streams SMTP messages into the virtual server. n2's
//! replication is cut first (it falls well behind), then n3's (the active
//! takes `max-async-lag` more messages no passive has, then answers 451).
//! kill -9 of n1's agent: the copy that lags least, n3's (not n2, the
//! preferred one), is activated automatically with generation 2. The
//! messages answered 250 that n3 lacks are counted: at most the limit, and
//! the history's activation decision names a lag at least that large.
//! Healed, n2's copy (merely behind) catches up without a reseed; n1's
//! agent restarted, its copy (diverged: it holds the lost messages) is
//! reseeded from n3, recorded with why, and holds exactly n3's messages.
//!
//! Without CAP_NET_ADMIN it says why and returns; `WARDEN_NETLAB_REQUIRED=1`
//! (CI) makes that a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::lab_cluster::LabCluster;
use crate::common::store_copies::{
    Mode, Writer, accepted, copies, cut_replication, history, on, settled, setup, smtp_probe,
    stored_probes,
};
use crate::common::virtual_server::{wait_answered, wait_served_by};
use crate::common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);
/// The active refuses writes while this many records are on no passive.
const MAX_ASYNC_LAG: u64 = 5;
/// A copy lagging more is not activated without the operator's word. Above
/// `MAX_ASYNC_LAG` by more than a status report's step (10 positions): the
/// policy's view of a copy trails it by up to that much.
const MAX_LAG: u64 = 30;

/// The figure in the activation decision of the copy on `node`, from a
/// node's history: `... in place of the copy on n1: last known lag N (...`.
fn activation_lag(history: &str, node: &str) -> Option<u64> {
    let marker = format!(
        "activating the copy on {node} with generation 2 in place of the copy on n1: last known lag "
    );
    let at = history.find(&marker)? + marker.len();
    let digits: String = history[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The node whose copy of the store is active with `generation`, as n3
/// (or else n2) sees it; on a timeout, what they last showed.
fn wait_active(cluster: &LabCluster, generation: u64) -> String {
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        for i in [2, 1] {
            if let Some((store, copies)) = copies(cluster, i)
                && store["generation"] == generation
                && let Some(active) = copies.iter().find(|c| c["state"] == "active")
            {
                return active["node"].as_str().unwrap_or_default().to_string();
            }
        }
        if std::time::Instant::now() > deadline {
            let status =
                |i: usize| String::from_utf8_lossy(&cluster.cli(i, &["status"]).stdout).to_string();
            panic!(
                "no copy active with generation {generation}; n2 shows\n{}\nn3 shows\n{}",
                status(1),
                status(2)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_async_failover_loses_at_most_the_limit_and_the_diverged_old_active_is_reseeded() {
    let mode = Mode::Async {
        max_async_lag: Some(MAX_ASYNC_LAG),
        max_lag_on_failover: Some(MAX_LAG),
    };
    let Some(mut cluster) = LabCluster::new("copies-async", setup(mode, "\"all\"")) else {
        return;
    };
    let probe = smtp_probe();
    cluster.start_three();
    wait_until("n1 active, n2 and n3 following it", MINUTE * 2, || {
        settled(&cluster, 0, "n1", &["n2", "n3"], 1).then_some(())
    });
    wait_served_by(&cluster.lab, &probe, "n1");
    let n1 = cluster.agents[0].as_ref().expect("n1's agent").0.id();

    let ((n3_lag_seen, next, at_kill), answers) = Writer::writing(&cluster.lab, |writer| {
        let count = |at_least: usize, what: &str| {
            wait_until(what, MINUTE, || {
                (writer.accepted().len() >= at_least).then_some(())
            })
        };
        count(5, "five messages answered 250");
        // n2 stops following: every message answered from now on is one
        // it lacks; n3 keeps up.
        cut_replication(&cluster.lab, "n2");
        count(
            writer.accepted().len() + 20,
            "twenty messages n2 cannot have",
        );
        // n3 stops too: n1 takes MAX_ASYNC_LAG more, then answers 451.
        cut_replication(&cluster.lab, "n3");
        // Killed once the active has reached its limit and said so: its
        // last report then holds every write it took (killed before, the
        // writes it took after its last report are lost beyond the figure
        // the policy knows; docs/cluster.md).
        let mut last = None;
        let n3_lag_seen = wait_until("n1's copy at its limit", MINUTE, || {
            let (_, copies) = copies(&cluster, 0)?;
            if last.as_ref() != Some(&copies) {
                eprintln!("{} accepted; n1 shows {copies:?}", writer.accepted().len());
                last = Some(copies.clone());
            }
            let at_limit = on(&copies, "n1")?["reason"]
                .as_str()
                .is_some_and(|r| r.contains("max-async-lag"));
            let lag = on(&copies, "n3")?["lag"].as_u64()?;
            at_limit.then_some(lag)
        });
        let at_kill = writer.accepted();
        // kill -9 of n1's agent; its mail-store dies with it.
        let killed = std::process::Command::new("kill")
            .args(["-9", &n1.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 of n1's agent");
        // The policy activates a copy; healed, the passives connect to it
        // (an async active with a limit takes writes only once a passive
        // confirms where it stands).
        let activated = wait_active(&cluster, 2);
        cluster.lab.heal();
        let next = wait_answered(&cluster.lab, &probe, "another node to take writes", |n| {
            n != "n1"
        });
        assert_eq!(next, activated, "the writes go to the active copy");
        // The new active takes a few writes of its own.
        count(
            writer.accepted().len() + 5,
            "five messages on the new active",
        );
        (n3_lag_seen, next, at_kill)
    });
    cluster.kill_agent(0);
    let refused = answers.iter().filter(|a| a.good.is_none()).count();
    eprintln!(
        "{} answers, {refused} refused; n1's policy saw n3 lag {n3_lag_seen} before the kill",
        answers.len()
    );
    assert_eq!(
        next, "n3",
        "the copy that lags least is n3's, not the preferred n2's"
    );

    // What was lost: answered 250 by n1 before the kill, not in n3's store.
    let on_n3 = stored_probes(&cluster.lab, "n3");
    let lost: BTreeSet<u64> = at_kill.difference(&on_n3).copied().collect();
    eprintln!(
        "{} messages answered 250 before the kill; n3 lacks {}: {lost:?}",
        at_kill.len(),
        lost.len()
    );
    assert!(
        !lost.is_empty(),
        "n1 took writes no passive had: some must be lost, or this test measures nothing"
    );
    assert!(
        lost.len() as u64 <= MAX_ASYNC_LAG,
        "lost {} messages, more than the limit of {MAX_ASYNC_LAG}: {lost:?}",
        lost.len()
    );
    let after: BTreeSet<u64> = accepted(&answers).difference(&at_kill).copied().collect();
    let missing: Vec<u64> = after.difference(&on_n3).copied().collect();
    assert!(
        missing.is_empty(),
        "answered 250 by n3 but not in its store: {missing:?}"
    );

    // The history says how much: the activation names n3's last known lag,
    // at least what was lost.
    let n3_history = history(&cluster, 2);
    let figure = activation_lag(&n3_history, "n3")
        .unwrap_or_else(|| panic!("n3's history names no lag for the activation:\n{n3_history}"));
    assert!(
        figure >= lost.len() as u64,
        "the history says {figure} positions, but {} messages were lost",
        lost.len()
    );
    assert!(
        figure <= MAX_LAG,
        "activated automatically past the limit: {figure}"
    );

    // Healed: n2's copy is behind, not diverged, and catches up; n1's agent
    // comes back and its copy, which holds the lost messages, is reseeded.
    wait_until("n2 caught up with n3", MINUTE, || {
        settled(&cluster, 2, "n3", &["n2"], 2).then_some(())
    });
    let before = cluster.joins(0);
    cluster.start_agent(0);
    cluster.wait_joined(0, before);
    let mut last = None;
    let reseeded = wait_until("n1's copy reseeded and caught up", MINUTE * 2, || {
        let (_, copies) = copies(&cluster, 2)?;
        last = Some(copies.clone());
        let reseeded = on(&copies, "n1")?["reseeded"].as_str()?.to_string();
        settled(&cluster, 2, "n3", &["n1", "n2"], 2).then_some(reseeded)
    });
    eprintln!("n1's copy reseeded: {reseeded}; copies {last:#?}");
    assert!(reseeded.contains("diverged"), "{reseeded}");
    let (_, copies_now) = copies(&cluster, 2).expect("n3's view of the copies");
    assert!(
        on(&copies_now, "n2").is_some_and(|c| c["reseeded"].is_null()),
        "n2's copy was only behind: {copies_now:#?}"
    );
    let n3_history = history(&cluster, 2);
    assert!(
        n3_history.contains("the copy on n1 diverged from the active copy on n3")
            && !n3_history.contains("the copy on n2 diverged"),
        "n3's history should record n1's reseed, and no reseed of n2"
    );

    // Every copy holds exactly the active's messages; the lost ones are
    // gone from n1 too.
    let (on_n1, on_n2, on_n3) = (
        stored_probes(&cluster.lab, "n1"),
        stored_probes(&cluster.lab, "n2"),
        stored_probes(&cluster.lab, "n3"),
    );
    eprintln!(
        "messages: n1 {}, n2 {}, n3 {}",
        on_n1.len(),
        on_n2.len(),
        on_n3.len()
    );
    assert_eq!(on_n1, on_n3, "n1's reseeded copy differs from the active's");
    assert_eq!(on_n2, on_n3, "n2's copy differs from the active's");
    assert!(on_n1.is_disjoint(&lost), "n1 still holds lost messages");
}
