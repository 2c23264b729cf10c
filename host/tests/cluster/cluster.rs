//! Several agents, one cluster (see `common/cluster.rs`: a real 3-member
//! etcd, three real agents on loopback, a TCP proxy per agent that the test
//! can cut). The services themselves tell which node serves. The tests
//! whose point is the network (an owner cut off, partitions) are in
//! `netlab.rs`, on a network of namespaces.

use crate::common;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::cluster::{
    Cluster, NODES, Setup, alive, overlapping, runs, served_by, serving_now,
};
use crate::common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);

/// What a fence guard logs (into its agent's log) when it kills services.
const GUARD_FIRED: &str = "the agent's vouch for its lease ran out (";

/// Start every agent, n1 first: it writes the configuration and takes the
/// group. Each has joined (its `NodeUp` came back through the log) on
/// return; n1's service pid.
fn three_agents_n1_serving(cluster: &mut Cluster) -> i32 {
    cluster.start_joined(0);
    let first = cluster.wait_served_by("n1", MINUTE);
    cluster.start_joined(1);
    cluster.start_joined(2);
    first
}

/// Wait until the service answers from `to`, checking on the way that
/// `old` (a pid) stopped first and that no node in `never` answered.
fn wait_moved(cluster: &Cluster, old: i32, to: &str, never: &[&str]) -> i32 {
    let mut old_gone = false;
    let pid = wait_until(
        &format!(
            "the service to answer from {to}; logs in {}",
            cluster.dir.path().display()
        ),
        MINUTE,
        || {
            old_gone |= !alive(old);
            let (node, pid) = served_by(cluster.service)?;
            assert!(
                !never.contains(&node.as_str()),
                "{node} answered; it should not take the group"
            );
            (node == to).then_some(pid)
        },
    );
    assert!(old_gone, "the old service stopped before {to}'s answered");
    pid
}

/// The group's owner as agent `i`'s engine sees it.
fn owner_seen_by(cluster: &Cluster, i: usize) -> Option<String> {
    let status = cluster.status(i)?;
    status["groups"][0]["owner"].as_str().map(str::to_string)
}

#[test]
fn kill_9_of_the_owning_agent_moves_its_group_to_the_next_preferred_owner() {
    let mut cluster = Cluster::new();
    // Both others joined (their NodeUp in the log) before the owner dies.
    let first = three_agents_n1_serving(&mut cluster);

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
    cluster.start_joined(1);

    // A planned stop: the group moves to n2 before n1's agent exits.
    cluster.stop_agent(0, Duration::from_secs(60));
    assert!(!alive(first), "n1's service stopped with the drain");
    let second = cluster.wait_served_by("n2", Duration::from_secs(60));

    // The last node has nowhere to move its group: it stops it and exits.
    cluster.stop_agent(1, Duration::from_secs(60));
    assert!(!alive(second), "n2's service stopped with its agent");
}

#[test]
fn a_planned_move_through_the_cli_takes_the_group_to_the_named_node() {
    let mut cluster = Cluster::new();
    let first = three_agents_n1_serving(&mut cluster);

    // Asked of n1, the owner; decided in the log's order by every node.
    let said = cluster.ok(0, &["group", "move", "web", "--to", "n3"]);
    assert!(said.contains("move to n3"), "{said}");
    let third = wait_moved(&cluster, first, "n3", &["n2"]);
    assert!(!alive(first), "n1's service is gone");
    // Every engine replica agrees on where it went.
    for i in 0..3 {
        wait_until("every node to see n3 own the group", MINUTE, || {
            (owner_seen_by(&cluster, i).as_deref() == Some("n3")).then_some(())
        });
    }

    // Asked of a node that does not run it, a move goes through as well.
    cluster.ok(1, &["group", "move", "web", "--to", "n2"]);
    wait_moved(&cluster, third, "n2", &["n1"]);
}

#[test]
fn inside_its_failback_window_the_group_returns_to_its_first_owner_when_it_comes_back() {
    // A window of hours (UTC) that holds now for at least an hour.
    let hour = (common::cluster::unix_ms() / 3_600_000) % 24;
    let mut cluster = Cluster::with(Setup {
        failback: format!("{hour}-{}", (hour + 2) % 24),
        ..Setup::default()
    });
    let first = three_agents_n1_serving(&mut cluster);

    cluster.kill_agent(0);
    let second = wait_moved(&cluster, first, "n2", &["n3"]);

    // n1's agent comes back: the group goes back to it, off n2 first.
    cluster.start_agent(0);
    wait_moved(&cluster, second, "n1", &["n3"]);
    wait_until("n2's service to stop", MINUTE, || {
        (!alive(second)).then_some(())
    });
}

#[test]
fn a_paused_node_takes_no_new_group_and_a_drained_node_gives_its_groups_away() {
    let mut cluster = Cluster::new();
    let first = three_agents_n1_serving(&mut cluster);

    // Pause n2 (through its own API), and wait until its engine has the
    // pause from the log: the owner's death comes after it in the log.
    cluster.ok(1, &["node", "pause"]);
    wait_until("n2 to be paused", MINUTE, || {
        cluster.status(1).filter(|s| s["paused"] == true).map(drop)
    });
    // The owner dies: the group skips n2, next in preference, for n3.
    cluster.kill_agent(0);
    let third = wait_moved(&cluster, first, "n3", &["n2"]);

    // n1 comes back (no failback: the group stays on n3), then the owner
    // n3 is drained: the group goes to n1, not to the paused n2.
    cluster.start_joined(0);
    let (node, _) = wait_until("the service to answer", MINUTE, || {
        served_by(cluster.service)
    });
    assert_eq!(node, "n3", "the group stayed where it was");
    let said = cluster.ok(2, &["node", "drain"]);
    assert!(said.contains("draining"), "{said}");
    wait_moved(&cluster, third, "n1", &["n2"]);
    assert_eq!(
        cluster.status(2).map(|s| s["paused"] == true),
        Some(true),
        "n3 drained counts as paused"
    );
}

#[test]
fn with_one_etcd_member_dead_the_cluster_still_moves_and_fails_over() {
    let mut cluster = Cluster::new();
    let first = three_agents_n1_serving(&mut cluster);

    // The member n1 reaches first dies; its proxy goes to the next one.
    cluster.etcd.kill_member(0);
    cluster.ok(0, &["group", "move", "web", "--to", "n2"]);
    let second = wait_moved(&cluster, first, "n2", &["n3"]);

    // A failover too: kill -9 of the owner; the next owner after n2 in
    // the preferred list is n3.
    cluster.kill_agent(1);
    wait_moved(&cluster, second, "n3", &["n1"]);
}

/// One etcd member lost, whichever it is (the leader first, then the
/// others; each agent is given every member, and each member is the first
/// one some agent asks): no agent fences itself, the service stays where
/// it is in steady state, and a failover during the loss completes within
/// a few lease TTLs.
#[test]
fn losing_any_one_etcd_member_fences_no_agent_in_steady_state_or_during_a_failover() {
    let mut cluster = Cluster::new();
    three_agents_n1_serving(&mut cluster);
    let ttl = Duration::from_secs(cluster.setup.lease_ttl_s);
    let leader = wait_until("etcd to name its leader", MINUTE, || cluster.etcd.leader());
    let mut order = vec![leader];
    order.extend((0..3).filter(|m| *m != leader));

    for (round, member) in order.into_iter().enumerate() {
        let fences: Vec<usize> = (0..3).map(|i| cluster.fences(i)).collect();
        let (owner, pid) = wait_until("the service to answer", MINUTE, || {
            served_by(cluster.service)
        });
        cluster.etcd.kill_member(member);
        // Steady state: two lease TTLs, the service never moves or stops
        // for long (a probe may time out on a loaded machine: the pid
        // tells whether it was restarted).
        let since = Instant::now();
        while since.elapsed() < 2 * ttl {
            if let Some((node, now)) = served_by(cluster.service) {
                assert_eq!(
                    (node.as_str(), now),
                    (owner.as_str(), pid),
                    "round {round}: the service moved or restarted with etcd member {member} \
                     lost; logs in {}",
                    cluster.dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A failover while the member is gone: kill -9 of the owner.
        let owner_index = NODES.iter().position(|n| *n == owner).expect("a node");
        cluster.kill_agent(owner_index);
        let killed = Instant::now();
        let (next, _) = wait_until(
            &format!(
                "round {round}: the group to fail over with etcd member {member} lost; logs in {}",
                cluster.dir.path().display()
            ),
            4 * ttl,
            || served_by(cluster.service).filter(|(node, _)| *node != owner),
        );
        eprintln!(
            "round {round}: member {member} lost, {owner} killed, {next} serves after {:?}",
            killed.elapsed()
        );
        for (i, before) in fences.iter().enumerate() {
            if i != owner_index {
                assert_eq!(
                    cluster.fences(i),
                    *before,
                    "round {round}: {} fenced itself with one etcd member ({member}) lost; \
                     logs in {}",
                    NODES[i],
                    cluster.dir.path().display()
                );
            }
        }
        cluster.etcd.start_member(member);
        cluster.etcd.wait_healthy(member);
        cluster.start_joined(owner_index);
    }
}

/// The etcd leader frozen (SIGSTOP: connections accepted, nothing
/// answered, no error to see) for two lease TTLs: no agent fences itself,
/// the service stays where it is, and an operator's move asked meanwhile is
/// answered through the log and carried out.
///
/// At the default TTL (10 s). At the tests' usual 5 s an agent fenced in
/// about one run of three: its renewals, sent to followers that forward
/// them to the frozen leader, went unanswered past T/2 = 2.5 s although a
/// new leader was elected within a second (an open question, see #14).
/// With renewals hedged (an unanswered attempt stays in flight while the
/// next member is asked) it passed 7 runs of 8 at 5 s; with etcd's
/// pre-vote on, 10 of 10, though in 2 of them agents fenced just after the
/// thaw, which this test does not judge (docs/cluster.md).
/// `WARDEN_FROZEN_LEADER_TTL_S` runs it at another TTL (seconds), to
/// measure how low the TTL can go with a member that hangs.
#[test]
fn a_frozen_etcd_leader_fences_no_agent_and_a_move_still_goes_through() {
    let lease_ttl_s: u64 = std::env::var("WARDEN_FROZEN_LEADER_TTL_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("frozen etcd leader: lease TTL {lease_ttl_s} s");
    let mut cluster = Cluster::with(Setup {
        lease_ttl_s,
        ..Setup::default()
    });
    let first = three_agents_n1_serving(&mut cluster);
    let ttl = Duration::from_secs(cluster.setup.lease_ttl_s);
    let fences: Vec<usize> = (0..3).map(|i| cluster.fences(i)).collect();
    let leader = wait_until("etcd to name its leader", MINUTE, || cluster.etcd.leader());

    cluster.etcd.freeze_member(leader, true);
    let since = Instant::now();
    while since.elapsed() < 2 * ttl {
        if let Some((node, pid)) = served_by(cluster.service) {
            assert_eq!(
                (node.as_str(), pid),
                ("n1", first),
                "the service moved or restarted with the etcd leader frozen; logs in {}",
                cluster.dir.path().display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = cluster.ok(2, &["group", "move", "web", "--to", "n3"]);
    assert!(said.contains("entry "), "answered from the log: {said}");
    cluster.wait_served_by("n3", MINUTE);
    for (i, before) in fences.iter().enumerate() {
        assert_eq!(
            cluster.fences(i),
            *before,
            "{} fenced itself with the etcd leader (member {leader}) frozen; logs in {}",
            NODES[i],
            cluster.dir.path().display()
        );
    }
    cluster.etcd.freeze_member(leader, false);
}

/// An operator's move answered by a node that is killed right after it
/// answered is carried out all the same: the answer came only once the
/// request was in the cluster's log. Asked of a node that neither owns the
/// group nor is its target, so that only the log can carry it.
/// A `NodeDown` of a live node behind its own `NodeUp` (no agent appends
/// one now: a `NodeDown` from outside needs the node's member key absent;
/// the test writes it itself). The node stops what it runs, registers
/// again and rejoins, and the group is served again: it does not stay
/// stopped holding its ownership key with every other node waiting on it.
#[test]
fn a_node_the_log_marks_down_while_its_lease_lives_rejoins_and_its_group_is_served_again() {
    let mut cluster = Cluster::new();
    let old = three_agents_n1_serving(&mut cluster);
    let joins = cluster.joins(0);
    let (runtime, etcd, keys) = cluster.direct_etcd();
    runtime.block_on(async {
        let down = warden::cluster::log::LogEvent::Policy(warden_policy::Event::NodeDown(
            "n1".to_string(),
        ));
        warden::cluster::log::append(&etcd, &keys, "test", &down)
            .await
            .expect("appends");
    });
    cluster.wait_joined(0, joins);
    let mut old_gone = false;
    wait_until(
        &format!(
            "the group to be served again; logs in {}",
            cluster.dir.path().display()
        ),
        MINUTE,
        || {
            old_gone |= !alive(old);
            let (_, pid) = served_by(cluster.service)?;
            (pid != old).then_some(())
        },
    );
    assert!(
        old_gone,
        "the old service stopped before the new one answered"
    );
}

#[test]
fn a_move_is_carried_out_when_the_node_that_answered_it_is_killed_at_once() {
    let mut cluster = Cluster::new();
    three_agents_n1_serving(&mut cluster);
    // (owner, asked, target)
    for (owner, asked, to) in [(0, 1, 2), (2, 0, 1), (1, 2, 0)] {
        let (node, _) = wait_until("the service to answer", MINUTE, || {
            served_by(cluster.service)
        });
        assert_eq!(node, NODES[owner]);
        let said = cluster.ok(asked, &["group", "move", "web", "--to", NODES[to]]);
        cluster.kill_agent(asked);
        assert!(
            said.contains("entry "),
            "the answer names the log entry: {said}"
        );
        cluster.wait_served_by(NODES[to], MINUTE);
        cluster.start_joined(asked);
    }
}

/// What this asserts with etcd's majority lost: the agents take no new
/// decision (a move asked meanwhile is refused and not carried out), and, since no
/// lease can be renewed, every agent fences itself within 2/5 of the lease
/// TTL: the service stops, and nothing serves until quorum returns. Then
/// every agent rejoins (its own `NodeUp` through the log again) and the
/// group comes back online on one node.
#[test]
fn with_etcd_majority_lost_nothing_is_decided_the_service_stops_and_comes_back_after() {
    let mut cluster = Cluster::new();
    let first = three_agents_n1_serving(&mut cluster);
    let joins: Vec<usize> = (0..3).map(|i| cluster.joins(i)).collect();

    // n1's own member stays up, alone: no quorum.
    cluster.etcd.kill_member(1);
    cluster.etcd.kill_member(2);
    wait_until("n1 to fence itself and stop its service", MINUTE, || {
        (!alive(first)).then_some(())
    });
    // A move asked now is refused (n1 is fenced: the service stopped
    // after the fence) and not carried out: for a lease TTL (a move takes
    // well under it with quorum) nothing serves, on n2 or anywhere.
    let said = cluster.cli(0, &["group", "move", "web", "--to", "n2"]);
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(
        !said.status.success() && stderr.contains("fenced"),
        "a move asked of a fenced node: {}{stderr}",
        String::from_utf8_lossy(&said.stdout)
    );
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(cluster.setup.lease_ttl_s) {
        assert_eq!(
            served_by(cluster.service),
            None,
            "the service answered without quorum"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Quorum back: the members restart as they were.
    cluster.etcd.start_member(1);
    cluster.etcd.start_member(2);
    for m in 0..3 {
        cluster.etcd.wait_healthy(m);
    }
    for (i, before) in joins.iter().enumerate() {
        cluster.wait_joined(i, *before);
    }
    let (node, _) = wait_until("the service to answer again", MINUTE, || {
        served_by(cluster.service)
    });
    // One owner, and every replica agrees on it.
    for (i, name) in NODES.iter().enumerate() {
        wait_until(
            &format!("{name} to see {node} own the group"),
            MINUTE,
            || (owner_seen_by(&cluster, i).as_deref() == Some(node.as_str())).then_some(()),
        );
    }
}

/// Three joined agents whose services record when they ran (each on a
/// port of its own), for tests judged from those records. Many failovers
/// happen in them (kills, freezes; a thawed agent may still report its
/// killed service as failed): the default threshold (10 in 6 h) would leave
/// the group Failed, as it should, after a minute of this.
fn recorded_cluster_of_three() -> Cluster {
    let mut cluster = Cluster::with(Setup {
        recorded: true,
        failover_threshold: 10_000,
        ..Setup::default()
    });
    for i in 0..3 {
        cluster.start_joined(i);
    }
    cluster
}

/// Random faults for a bounded time (`WARDEN_STRESS_SECS`, default 180: "several minutes"):
/// kill -9 of an agent and its restart, an agent cut off from etcd and
/// mended, an agent frozen (SIGSTOP) and thawed, kill -9 of an etcd member
/// (one at a time, so etcd keeps its quorum) and its restart, several at
/// once at times. Judged from the services' side: each
/// node's service listens on a port of its own and records when it ran
/// (`demo-service --record`); no two nodes' runs may overlap. A run's
/// recorded span lies inside its real one, so an overlap seen is real.
/// `WARDEN_STRESS_SEED` replays a sequence of faults.
#[test]
fn stress_random_kills_cut_offs_freezes_and_etcd_losses_never_leave_two_nodes_serving_at_once() {
    let secs: u64 = std::env::var("WARDEN_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let seed: u64 = std::env::var("WARDEN_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        .max(1);
    eprintln!("stress: {secs} s, WARDEN_STRESS_SEED={seed}");
    let mut state = seed;
    let mut random = move |below: u64| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };

    let mut cluster = recorded_cluster_of_three();
    let records = cluster.records_file();
    wait_until("a service to run", MINUTE, || {
        (!runs(&records).is_empty()).then_some(())
    });

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Fault {
        None,
        Killed,
        Cut,
        Frozen,
    }
    let mut faults = [Fault::None; 3];
    // The etcd member down now, if any.
    let mut member_down: Option<usize> = None;
    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if random(5) == 0 {
            match member_down.take() {
                Some(m) => {
                    cluster.etcd.start_member(m);
                    done.push(format!("etcd member {m} back"));
                }
                None => {
                    let m = random(3) as usize;
                    cluster.etcd.kill_member(m);
                    member_down = Some(m);
                    done.push(format!("etcd member {m} killed"));
                }
            }
        } else {
            let i = random(3) as usize;
            match faults[i] {
                Fault::Killed => {
                    cluster.start_agent(i);
                    faults[i] = Fault::None;
                }
                Fault::Cut => {
                    cluster.proxies[i].mend();
                    faults[i] = Fault::None;
                }
                Fault::Frozen => {
                    cluster.thaw_agent(i);
                    faults[i] = Fault::None;
                }
                Fault::None => match random(3) {
                    0 => {
                        cluster.kill_agent(i);
                        faults[i] = Fault::Killed;
                    }
                    1 => {
                        cluster.proxies[i].cut();
                        faults[i] = Fault::Cut;
                    }
                    _ => {
                        cluster.freeze_agent(i);
                        faults[i] = Fault::Frozen;
                    }
                },
            }
            done.push(format!("{} {:?}", NODES[i], faults[i]));
        }
        std::thread::sleep(Duration::from_millis(100 + random(2400)));
    }
    if let Some(m) = member_down {
        cluster.etcd.start_member(m);
    }
    for (i, fault) in faults.iter().enumerate() {
        match fault {
            Fault::Killed => cluster.start_agent(i),
            Fault::Cut => cluster.proxies[i].mend(),
            Fault::Frozen => cluster.thaw_agent(i),
            Fault::None => {}
        }
    }
    eprintln!("stress: {} steps: {}", done.len(), done.join(", "));

    // Every fault undone, the group runs again somewhere.
    common::cluster::judge_stress(
        &records,
        "stress",
        &format!(
            "WARDEN_STRESS_SEED={seed}; logs in {}",
            cluster.dir.path().display()
        ),
    );
}

/// SIGSTOP of the owning agent for three lease TTLs, `WARDEN_FREEZE_ROUNDS`
/// rounds (default 10, as the issue asks). The frozen agent cannot fence itself; its fence
/// guard, vouched for only until shortly after the agent's own fence, must
/// kill its service before the lease expires and another node takes the
/// group. Judged from the services' own records: the frozen node's run
/// ends before the next node's starts. Thawed, the agent rejoins and one
/// node serves. First the guard of the owner is killed: the agent says so
/// and starts another, which does the job in the first round.
#[test]
fn a_frozen_owner_s_fence_guard_stops_its_service_before_another_node_serves() {
    let rounds: usize = std::env::var("WARDEN_FREEZE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cluster = recorded_cluster_of_three();
    let records = cluster.records_file();
    let serving = |cluster: &Cluster| {
        wait_until(
            &format!(
                "exactly one node to serve; logs in {}",
                cluster.dir.path().display()
            ),
            MINUTE,
            || serving_now(&records, 500),
        )
    };
    let node_index = |node: &str| NODES.iter().position(|n| *n == node).expect("a node");
    let ttl = Duration::from_secs(cluster.setup.lease_ttl_s);

    let owner = node_index(&serving(&cluster).node);
    let log = |i: usize| std::fs::read_to_string(cluster.agent_log(i)).unwrap_or_default();
    let first_guard = cluster
        .fence_guard_pid(owner)
        .expect("the owner's fence guard");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_guard),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the guard");
    wait_until("the agent to say its guard died", MINUTE, || {
        log(owner).contains("the fence guard died").then_some(())
    });
    wait_until("another guard to run", MINUTE, || {
        cluster
            .fence_guard_pid(owner)
            .filter(|pid| *pid != first_guard)
    });

    for round in 0..rounds {
        let frozen = serving(&cluster);
        let owner = node_index(&frozen.node);
        let joins = cluster.joins(owner);
        let fired = || log(owner).matches(GUARD_FIRED).count();
        let fired_before = fired();
        cluster.freeze_agent(owner);
        std::thread::sleep(ttl * 3);
        let taken = runs(&records)
            .into_iter()
            .find(|r| r.node != frozen.node && r.from > frozen.from);
        cluster.thaw_agent(owner);
        let taken = taken.unwrap_or_else(|| {
            panic!(
                "round {round}: no other node took the group while {} was frozen; logs in {}",
                frozen.node,
                cluster.dir.path().display()
            )
        });
        let ended = runs(&records)
            .into_iter()
            .find(|r| r.node == frozen.node && r.pid == frozen.pid)
            .expect("the frozen node's run");
        assert!(
            ended.ended_by() < taken.from,
            "round {round}: {} served until {} (plus up to a record period) while {} served from {}",
            frozen.node,
            ended.to,
            taken.node,
            taken.from
        );
        assert!(
            fired() > fired_before,
            "round {round}: {}'s guard did not say it fired",
            frozen.node
        );
        cluster.wait_joined(owner, joins);
        let now = serving(&cluster);
        assert_ne!(now.node, frozen.node, "round {round}: no failback is set");
        eprintln!(
            "round {round}: {} frozen, its service gone {} ms before {}'s started",
            frozen.node,
            taken.from - ended.to,
            taken.node
        );
    }
    let runs = runs(&records);
    if let Some((a, b)) = overlapping(&runs) {
        panic!("two nodes served at once: {a:?} and {b:?}");
    }
}

#[test]
fn a_group_created_through_one_node_is_created_on_every_node() {
    let mut cluster = Cluster::new();
    three_agents_n1_serving(&mut cluster);
    let api = common::free_port();
    // Asked of n2; the configuration goes through the log to every node.
    cluster.ok(
        1,
        &[
            "group",
            "create",
            "api",
            "--preferred-owner",
            "n3",
            "--preferred-owner",
            "n1",
            "--offline",
        ],
    );
    cluster.ok(
        1,
        &[
            "resource",
            "create",
            "api-service",
            "--type",
            "process",
            "--group",
            "api",
            "--prop",
            &format!("program={}", common::cluster::WARDEN),
            "--prop",
            &format!("args=demo-service --name api --listen {api}"),
        ],
    );
    // The change reaches every node as the log is applied there.
    for (i, node) in NODES.iter().enumerate() {
        wait_until(&format!("{node} to know group api"), MINUTE, || {
            let status = cluster.status(i)?;
            status.to_string().contains("api-service").then_some(())
        });
    }
    cluster.ok(2, &["group", "online", "api"]);
    wait_until("the new group's service to answer from n3", MINUTE, || {
        served_by(api).filter(|(node, _)| node == "n3")
    });
    for (i, node) in NODES.iter().enumerate() {
        wait_until(&format!("{node} to see api owned by n3"), MINUTE, || {
            let status = cluster.status(i)?;
            let groups = status["groups"].as_array()?;
            groups
                .iter()
                .any(|g| g["name"] == "api" && g["owner"] == "n3")
                .then_some(())
        });
    }
    // A change the node asked refuses reaches no node.
    let out = cluster.cli(
        0,
        &[
            "resource",
            "create",
            "bad",
            "--type",
            "no-such-type",
            "--group",
            "api",
        ],
    );
    assert!(!out.status.success(), "an unknown type is refused");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no-such-type"), "{said}");
    for (i, node) in NODES.iter().enumerate() {
        let status = cluster.status(i).expect("status");
        assert!(
            !status.to_string().contains("\"bad\""),
            "{node} has the refused resource"
        );
    }
}

/// Which MTAs answer an SMTP greeting right now, judged from their side.
fn mtas_answering(cluster: &Cluster) -> Vec<usize> {
    cluster
        .mtas
        .iter()
        .enumerate()
        .filter(|(_, addr)| {
            let Ok(mut stream) =
                std::net::TcpStream::connect_timeout(addr, Duration::from_millis(300))
            else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut banner = [0u8; 3];
            std::io::Read::read_exact(&mut stream, &mut banner).is_ok() && &banner == b"220"
        })
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn the_mta_singleton_stays_single_through_failovers() {
    let mut cluster = Cluster::with(Setup {
        mtas: true,
        ..Setup::default()
    });
    three_agents_n1_serving(&mut cluster);
    // Both groups want their MTA online; the type is a cluster singleton,
    // so one runs and the other is refused.
    let mut running = wait_until("one MTA to answer", MINUTE, || {
        match mtas_answering(&cluster).as_slice() {
            [one] => Some(*one),
            [] => None,
            both => panic!("two MTAs answer at once: {both:?}"),
        }
    });
    for _ in 0..2 {
        // Kill the agent whose MTA runs; an MTA must run again, and never
        // two at once on the way.
        let group = format!("mx{}", running + 1);
        let owner = cluster
            .status(0)
            .and_then(|status| {
                status["groups"]
                    .as_array()?
                    .iter()
                    .find(|g| g["name"] == group.as_str())?["owner"]
                    .as_str()
                    .map(str::to_string)
            })
            .expect("the running MTA's group has an owner");
        let killed = NODES
            .iter()
            .position(|n| *n == owner)
            .expect("a node of the cluster");
        cluster.kill_agent(killed);
        wait_until("the MTA to stop with its agent", MINUTE, || {
            mtas_answering(&cluster).is_empty().then_some(())
        });
        running = wait_until("an MTA to answer again", MINUTE, || {
            match mtas_answering(&cluster).as_slice() {
                [one] => Some(*one),
                [] => None,
                both => panic!("two MTAs answer at once: {both:?}"),
            }
        });
        cluster.start_joined(killed);
    }
}

/// Append `count` `Tick` entries the way `log::append` does (one
/// compare-and-swap on the head), 100 a transaction: 100 000 appends one by
/// one take minutes here. A `Tick` at the present time changes nothing a
/// replica cares about; the entries at multiples of the snapshot interval
/// name `snapshotter` as their writer, so that agent takes the snapshots.
async fn append_ticks(
    etcd: &warden::cluster::etcd::Etcd,
    keys: &warden::cluster::Keys,
    count: u64,
    snapshotter: &str,
) -> u64 {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    use warden::cluster::log::{LogEntry, LogEvent, now};
    use warden::cluster::snapshot::SNAPSHOT_EVERY;
    let mut written = 0;
    let mut head = 0;
    while written < count {
        let (_, mut client) = etcd.preferred();
        let answer = client.get(keys.log_head(), None).await.expect("the head");
        let kv = answer.kvs().first().expect("a head");
        head = kv.value_str().expect("text").parse().expect("a number");
        let batch = (count - written).min(100);
        let mut ops: Vec<TxnOp> = (head + 1..=head + batch)
            .map(|seq| {
                let entry = LogEntry {
                    seq,
                    at: now(),
                    origin: if seq % SNAPSHOT_EVERY == 0 {
                        snapshotter.to_string()
                    } else {
                        "test".to_string()
                    },
                    id: format!("test.{seq}"),
                    event: LogEvent::Policy(warden_policy::Event::Tick),
                };
                let body = serde_json::to_vec(&entry).expect("encodes");
                TxnOp::put(keys.entry(seq), body, None)
            })
            .collect();
        ops.push(TxnOp::put(
            keys.log_head(),
            (head + batch).to_string(),
            None,
        ));
        let unchanged = Compare::mod_revision(keys.log_head(), CompareOp::Equal, kv.mod_revision());
        let answer = client
            .txn(Txn::new().when([unchanged]).and_then(ops))
            .await
            .expect("a batch");
        if answer.succeeded() {
            written += batch;
            head += batch;
        }
    }
    head
}

/// The number stored at `key` (a node's `progress/NODE`, the log head);
/// 0 when there is none.
async fn number_at(etcd: &warden::cluster::etcd::Etcd, key: String) -> u64 {
    let (_, mut client) = etcd.preferred();
    let answer = client.get(key, None).await.expect("reads");
    answer
        .kvs()
        .first()
        .and_then(|kv| kv.value_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// Keys under the log's prefix.
async fn entry_keys(etcd: &warden::cluster::etcd::Etcd, keys: &warden::cluster::Keys) -> i64 {
    let (_, mut client) = etcd.preferred();
    let options = etcd_client::GetOptions::new()
        .with_prefix()
        .with_count_only();
    client
        .get(keys.log_prefix(), Some(options))
        .await
        .expect("counts")
        .count()
}

#[test]
fn a_node_joins_a_log_of_100_000_entries_from_its_snapshot_and_the_log_stays_bounded() {
    use warden::cluster::snapshot::SNAPSHOT_EVERY;
    // WARDEN_LOG_ENTRIES runs it longer: 604800 is a week of churn at one
    // event a second.
    let entries: u64 = std::env::var("WARDEN_LOG_ENTRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let mut cluster = Cluster::new();
    cluster.start_joined(0);
    let first = cluster.wait_served_by("n1", MINUTE);
    cluster.start_joined(1);

    let (runtime, etcd, keys) = cluster.direct_etcd();

    // A long history, appended while n1 serves and n2 follows (n2 takes
    // the snapshots); then, once both have read all of it, one interval
    // more, whose snapshot compacts everything both have read.
    let started = Instant::now();
    let head = runtime.block_on(append_ticks(&etcd, &keys, entries, "n2"));
    let appended = started.elapsed();
    wait_until(
        "n1 and n2 to read the whole log",
        Duration::from_secs(300),
        || {
            runtime
                .block_on(async {
                    let n1 = number_at(&etcd, keys.progress("n1")).await;
                    n1.min(number_at(&etcd, keys.progress("n2")).await) >= head
                })
                .then_some(())
        },
    );
    let followed = started.elapsed();
    let head = runtime.block_on(append_ticks(&etcd, &keys, SNAPSHOT_EVERY, "n2"));
    let bound = 2 * SNAPSHOT_EVERY as i64 + 100;
    let left = wait_until(
        "the log to be compacted to its bound",
        Duration::from_secs(120),
        || {
            let left = runtime.block_on(entry_keys(&etcd, &keys));
            (left <= bound).then_some(left)
        },
    );
    assert!(served_by(cluster.service).is_some_and(|(node, pid)| node == "n1" && pid == first));

    // A new node joins from the snapshot, agrees with the others, and
    // takes the group when asked.
    let started = Instant::now();
    cluster.start_joined(2);
    let joined_in = started.elapsed();
    let log = std::fs::read_to_string(cluster.agent_log(2)).expect("n3's log");
    assert!(
        log.contains("starting from the log's snapshot of entry"),
        "n3 did not start from the snapshot; its log:\n{log}"
    );
    assert_eq!(owner_seen_by(&cluster, 2).as_deref(), Some("n1"));
    cluster.ok(2, &["group", "move", "web", "--to", "n3"]);
    wait_moved(&cluster, first, "n3", &["n2"]);
    for (i, node) in NODES.iter().enumerate() {
        assert_eq!(owner_seen_by(&cluster, i).as_deref(), Some("n3"), "{node}");
        assert_eq!(cluster.fences(i), 0, "{node} fenced");
    }

    let (db, in_use) = runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        let status = client.status().await.expect("status");
        (status.db_size(), status.raft_used_db_size())
    });
    println!(
        "{entries} entries appended in {appended:?}, read by both agents after {followed:?}; \
         head {head}, {left} entries left after compaction; n3 joined in {joined_in:?}; etcd \
         member db {db} B, {in_use} B in use"
    );
}

/// The number of the first entry still in the log (0 when none is).
async fn first_entry(etcd: &warden::cluster::etcd::Etcd, keys: &warden::cluster::Keys) -> u64 {
    let (_, mut client) = etcd.preferred();
    let options = etcd_client::GetOptions::new()
        .with_range(keys.log_end())
        .with_limit(1)
        .with_keys_only();
    let answer = client
        .get(keys.log_prefix(), Some(options))
        .await
        .expect("reads");
    answer
        .kvs()
        .first()
        .and_then(|kv| {
            kv.key_str()
                .ok()?
                .strip_prefix(&keys.log_prefix())?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Whether agent `i` holds a member key (a lease) now.
async fn is_member(
    etcd: &warden::cluster::etcd::Etcd,
    keys: &warden::cluster::Keys,
    node: &str,
) -> bool {
    let (_, mut client) = etcd.preferred();
    let answer = client.get(keys.member(node), None).await.expect("reads");
    !answer.kvs().is_empty()
}

#[test]
fn a_node_cut_off_while_the_log_was_compacted_past_it_stays_out_until_restarted() {
    use common::cluster::LEASE_TTL_S;
    use warden::cluster::snapshot::SNAPSHOT_EVERY;
    let mut cluster = Cluster::new();
    let first = three_agents_n1_serving(&mut cluster);
    let (runtime, etcd, keys) = cluster.direct_etcd();

    // n3 is cut off from etcd (a frozen agent is not enough: etcd keeps
    // what its watch has yet to deliver, and it catches up on thawing);
    // once its lease is gone, the others compact the log past what it has
    // read.
    cluster.proxies[2].cut();
    // n3 cannot have read past the head as it is now.
    let cut_at = runtime.block_on(number_at(&etcd, keys.log_head()));
    wait_until(
        "n3's lease to expire",
        Duration::from_secs(4 * LEASE_TTL_S),
        || (!runtime.block_on(is_member(&etcd, &keys, "n3"))).then_some(()),
    );
    // Compaction waits for n1 and n2 to have read each interval, and comes
    // with the next snapshot: append intervals until it has passed n3.
    let mut intervals = 0;
    while runtime.block_on(first_entry(&etcd, &keys)) <= cut_at + 1 {
        assert!(
            intervals < 10,
            "the log was not compacted past entry {cut_at}"
        );
        runtime.block_on(append_ticks(&etcd, &keys, SNAPSHOT_EVERY, "n2"));
        std::thread::sleep(Duration::from_secs(3));
        intervals += 1;
    }

    // Back, n3 finds the entries it needs gone: it stops, says why, and
    // stays out of the cluster (no lease, so nothing is placed on it).
    cluster.proxies[2].mend();
    let said = "fell behind the log's compaction";
    wait_until("n3 to say it fell behind", MINUTE, || {
        std::fs::read_to_string(cluster.agent_log(2))
            .unwrap_or_default()
            .contains(said)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2 * LEASE_TTL_S));
    assert!(
        !runtime.block_on(is_member(&etcd, &keys, "n3")),
        "n3 holds a lease again although it cannot follow the log"
    );
    assert!(served_by(cluster.service).is_none_or(|(node, _)| node != "n3"));

    // Restarted, it joins from the snapshot and can take the group.
    cluster.kill_agent(2);
    cluster.start_joined(2);
    let log = std::fs::read_to_string(cluster.agent_log(2)).expect("n3's log");
    assert!(
        log.contains("starting from the log's snapshot of entry"),
        "{log}"
    );
    cluster.ok(0, &["group", "move", "web", "--to", "n3"]);
    wait_moved(&cluster, first, "n3", &["n2"]);
}
