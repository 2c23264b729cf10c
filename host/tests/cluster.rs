//! Several agents, one cluster (see `common/cluster.rs`: a real 3-member
//! etcd, three real agents on loopback, a TCP proxy per agent that the test
//! can cut). The services themselves tell which node serves.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, LEASE_TTL_S, alive, served_by};
use common::wait_until;

#[test]
fn kill_9_of_the_owning_agent_moves_its_group_to_the_next_preferred_owner() {
    let mut cluster = Cluster::new();
    cluster.start_agent(0);
    let first = cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_agent(1);
    cluster.start_agent(2);
    // Let both join (their NodeUp in the log) before the owner dies.
    std::thread::sleep(Duration::from_secs(2));

    cluster.kill_agent(0);
    // The service dies with its agent, so it cannot serve beside the next.
    wait_until(
        "n1's service to die with its agent",
        Duration::from_secs(10),
        || (!alive(first)).then_some(()),
    );
    let second = cluster.wait_served_by("n2", Duration::from_secs(60));
    assert_ne!(first, second);
}

#[test]
fn an_agent_cut_off_from_etcd_stops_its_group_before_another_node_takes_it() {
    let mut cluster = Cluster::new();
    cluster.start_agent(0);
    let first = cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_agent(1);
    std::thread::sleep(Duration::from_secs(2));

    cluster.proxies[0].cut();
    // Watch the services' side: n1's must be gone before n2's answers.
    let mut n1_gone: Option<Instant> = None;
    let n2_up = wait_until("n2 to serve", Duration::from_secs(60), || {
        if n1_gone.is_none() && !alive(first) {
            n1_gone = Some(Instant::now());
        }
        served_by(cluster.service)
            .filter(|(n, _)| n == "n2")
            .map(|_| Instant::now())
    });
    let n1_gone = n1_gone.expect("n1's service stopped before n2's answered");
    assert!(n1_gone < n2_up);
    // The cut-off agent itself is alive: it fenced, it did not crash.
    let agent = cluster.agents[0].as_mut().expect("n1's agent");
    assert!(
        agent.0.try_wait().expect("try_wait").is_none(),
        "n1's agent exited"
    );

    // Back in touch, n1 rejoins and the group stays where it is (no
    // failback configured).
    cluster.proxies[0].mend();
    std::thread::sleep(Duration::from_secs(LEASE_TTL_S + 2));
    let (node, _) = wait_until("the service to answer", Duration::from_secs(10), || {
        served_by(cluster.service)
    });
    assert_eq!(node, "n2");
}

#[test]
fn the_example_cluster_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster-node.toml");
    let config = warden::config::AgentConfig::load(&path).expect("the example parses");
    let cluster = config.cluster.expect("it has a [cluster] section");
    assert_eq!(cluster.nodes, ["node-1", "node-2", "node-3"]);
    assert!(
        warden::config::AgentConfig::parse(
            "[node]\nname = \"x\"\ndata_dir = \"d\"\n[cluster]\nname = \"c\"\nendpoints = [\"http://127.0.0.1:2379\"]\nnodes = [\"y\"]\n"
        )
        .expect_err("a node the cluster does not name")
        .to_string()
        .contains("does not name this node")
    );
}

#[test]
fn sigterm_drains_the_owner_to_the_next_node_and_a_lone_node_stops_at_once() {
    let mut cluster = Cluster::new();
    cluster.start_agent(0);
    let first = cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_agent(1);
    wait_until("n2 to join", Duration::from_secs(30), || {
        cluster
            .log_of(1)
            .contains("joined the cluster")
            .then_some(())
    });

    // A planned stop: the group moves to n2 before n1's agent exits.
    cluster.stop_agent(0, Duration::from_secs(60));
    assert!(!alive(first), "n1's service stopped with the drain");
    let second = cluster.wait_served_by("n2", Duration::from_secs(60));

    // The last node has nowhere to move its group: it stops it and exits.
    cluster.stop_agent(1, Duration::from_secs(60));
    assert!(!alive(second), "n2's service stopped with its agent");
}
