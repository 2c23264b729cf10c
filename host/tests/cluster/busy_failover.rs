//! A node busy taking over many groups keeps its lease.
//!
//! Issue 19: at a mass failover the survivors each start a share of the
//! dead node's services at once; while doing so they starved their own
//! lease renewals past half the TTL, fenced themselves (stopping
//! everything), and the cluster thrashed. The lease is now kept on a
//! thread of its own, over connections of its own: a survivor busy
//! starting services still renews.
//!
//! The test: three agents at the tests' short lease TTL (5 s), 150 groups
//! of one real service each, `kill -9` of the agent owning a third; every
//! one of its groups must come online on another node, and no survivor may
//! have fenced itself on the way (its log, its event history).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common;
use common::cluster::{Cluster, NODES, Setup};
use common::many_groups::{self, SLEEP};

const GROUPS: u64 = 150;

#[test]
fn survivors_busy_taking_over_a_third_of_150_groups_keep_their_leases() {
    let mut cluster = Cluster::with(Setup {
        process_programs: vec![SLEEP.to_string()],
        extra_config: many_groups::config(GROUPS),
        ..Setup::default()
    });
    for i in 0..NODES.len() {
        cluster.start_agent(i);
    }
    for i in 0..NODES.len() {
        cluster.wait_joined(i, 0);
    }
    let http = many_groups::http();
    let owners = many_groups::bring_online(&cluster, &http, GROUPS, Duration::from_secs(240));
    let (killed, moved) = many_groups::busiest(&owners);
    let victim = NODES[killed];
    let watcher = (killed + 1) % NODES.len();
    let since_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);

    cluster.kill_agent(killed);
    common::wait_until(
        &format!(
            "the {} groups of {victim} online elsewhere; logs in {}",
            moved.len(),
            cluster.dir.path().display()
        ),
        Duration::from_secs(120),
        || {
            many_groups::all_online_elsewhere(&http, cluster.apis[watcher], &moved, victim)
                .then_some(())
        },
    );

    for i in (0..NODES.len()).filter(|i| *i != killed) {
        let log = std::fs::read_to_string(cluster.agent_log(i)).unwrap_or_default();
        let fenced: Vec<&str> = log.lines().filter(|l| l.contains("fenced:")).collect();
        assert!(
            fenced.is_empty(),
            "{} fenced itself while taking over {victim}'s groups:\n{}",
            NODES[i],
            fenced.join("\n")
        );
        let path = format!("/v1/events?since_ms={since_ms}&limit=100000");
        let events = many_groups::get(&http, cluster.apis[i], &path).expect("the event history");
        let fences: Vec<String> = events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e.to_string().contains("fenced"))
            .map(|e| e.to_string())
            .collect();
        assert!(
            fences.is_empty(),
            "{}'s history records a fence during the failover: {fences:?}",
            NODES[i]
        );
    }
}
