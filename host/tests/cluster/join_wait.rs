//! A starting agent and an etcd that cannot take its lease (no leader, or
//! no member at all): the agent asks again for up to 20 s
//! (`cluster::link::register_patiently`), joins as soon as etcd has a
//! leader again, and otherwise exits with an error naming what etcd
//! answered, rather than hang or exit on the first refusal.

use std::time::{Duration, Instant};

use crate::common::cluster::Cluster;
use crate::common::wait_until;

/// What the agent logs each time it asks again.
const ASKING_AGAIN: &str = "did not take this node's lease";

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(cluster.agent_log(i)).unwrap_or_default()
}

/// Agent `i`'s exit status, if it has exited.
fn exited(cluster: &mut Cluster, i: usize) -> Option<std::process::ExitStatus> {
    let agent = cluster.agents[i].as_mut().expect("the agent was started");
    agent.0.try_wait().expect("wait for the agent")
}

#[test]
fn an_agent_started_while_etcd_has_no_leader_joins_once_it_has_one() {
    let mut cluster = Cluster::new();
    // Two members of three gone: the last one has no quorum and no leader.
    cluster.etcd.kill_member(1);
    cluster.etcd.kill_member(2);
    wait_until("etcd to have no leader", Duration::from_secs(30), || {
        cluster.etcd.leader().is_none().then_some(())
    });
    cluster.start_agent(0);
    wait_until(
        "the agent to ask for its lease again",
        Duration::from_secs(15),
        || log_of(&cluster, 0).contains(ASKING_AGAIN).then_some(()),
    );
    assert!(
        exited(&mut cluster, 0).is_none(),
        "the agent exited while etcd had no leader:\n{}",
        log_of(&cluster, 0)
    );
    // The members come back, a leader is elected, and the waiting agent
    // joins without being started again.
    cluster.etcd.start_member(1);
    cluster.etcd.start_member(2);
    cluster.wait_joined(0, 0);
    assert!(exited(&mut cluster, 0).is_none(), "{}", log_of(&cluster, 0));
}

#[test]
fn an_agent_whose_etcd_never_answers_gives_up_naming_what_etcd_said() {
    let mut cluster = Cluster::new();
    for member in 0..3 {
        cluster.etcd.kill_member(member);
    }
    let started = Instant::now();
    cluster.start_agent(0);
    let status = wait_until(
        "the agent to give up joining",
        Duration::from_secs(60),
        || exited(&mut cluster, 0),
    );
    let waited = started.elapsed();
    let log = log_of(&cluster, 0);
    assert!(!status.success(), "the agent exited cleanly:\n{log}");
    // It asked more than once, for about its patience, not forever and not
    // only once; its last words name the cluster and what etcd answered.
    assert!(
        log.matches(ASKING_AGAIN).count() >= 2,
        "the agent did not ask again:\n{log}"
    );
    assert!(
        waited >= Duration::from_secs(15),
        "the agent gave up after {waited:?}:\n{log}"
    );
    assert!(
        log.contains("joining cluster") && log.contains("taking a lease"),
        "the error does not say what failed:\n{log}"
    );
}
