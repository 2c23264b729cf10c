//! The cluster on a real network (`common/netlab.rs`: a Linux network
//! namespace per host, joined by a bridge; `common/lab_cluster.rs`: etcd,
//! agents and services on it): an owner whose link goes down, an owner cut
//! off from the etcd majority but not from its clients, a minority etcd
//! member partitioned away, the majority partitioned away. Judged from the
//! services' own records (no two nodes' runs overlap) and from the client
//! host. And the lab itself: partitions cut and heal, nothing is left
//! after a lab, leftovers of an interrupted run are removed.
//!
//! Without CAP_NET_ADMIN each test says why and returns;
//! `WARDEN_NETLAB_REQUIRED=1` (CI) makes that a failure.

use crate::common;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::common::cluster::{NODES, RECORD_PERIOD_MS, Run, Setup, overlapping, runs, serving_now};
use crate::common::lab_cluster::LabCluster;
use crate::common::netlab::{self, Lab, Way};
use crate::common::wait_until;

const MINUTE: Duration = Duration::from_secs(60);

/// Whether `from` can open a TCP connection to `to`'s `port` (1 s at most).
fn reaches(lab: &Lab, from: &str, to: &str, port: u16) -> bool {
    let addr = SocketAddr::new(IpAddr::V4(lab.addr(to)), port);
    lab.within(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
}

/// A listener on `host`'s lab address (it stays in that namespace).
fn listen(lab: &Lab, host: &str, port: u16) -> TcpListener {
    let addr = SocketAddr::new(IpAddr::V4(lab.addr(host)), port);
    lab.within(host, || TcpListener::bind(addr).expect("bind in the lab"))
}

/// `sleep 600` in `host`'s namespace, once it is in there (`ip netns
/// exec` enters the namespace after it started).
fn run_inside(lab: &Lab, host: &str) -> std::process::Child {
    let child = lab
        .command(host, "sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let pid = child.id() as i32;
    wait_until("the process to enter its namespace", MINUTE, || {
        netlab::pids_in(&lab.ns(host)).contains(&pid).then_some(())
    });
    child
}

#[test]
fn partitions_and_pulled_links_stop_traffic_between_hosts_and_heal_restores_it() {
    let before = netlab::machine_interfaces();
    let Some(lab) = Lab::or_skip("partitions", &["a", "b", "c"]) else {
        return;
    };
    assert_eq!(
        netlab::machine_interfaces(),
        before,
        "the lab changed the machine's own interfaces"
    );
    let _listeners: Vec<TcpListener> = ["a", "b", "c"]
        .iter()
        .flat_map(|h| [listen(&lab, h, 9000), listen(&lab, h, 9001)])
        .collect();
    // Healed, every host reaches every other again (a host whose cable
    // was plugged back may first have to find its neighbours again).
    let all_reach = |lab: &Lab| {
        for from in ["a", "b", "c"] {
            for to in ["a", "b", "c"] {
                wait_until(
                    &format!("{from} to reach {to}"),
                    Duration::from_secs(10),
                    || reaches(lab, from, to, 9000).then_some(()),
                );
            }
        }
    };
    all_reach(&lab);

    lab.partition(&["a"], &["b"]);
    assert!(
        !reaches(&lab, "a", "b", 9000),
        "a reaches b across a partition"
    );
    assert!(
        !reaches(&lab, "b", "a", 9000),
        "b reaches a across a partition"
    );
    assert!(reaches(&lab, "a", "c", 9000) && reaches(&lab, "c", "b", 9000));
    lab.heal();
    all_reach(&lab);

    lab.link_down("a");
    assert!(
        !reaches(&lab, "a", "b", 9000),
        "a reaches b with its link down"
    );
    assert!(
        !reaches(&lab, "c", "a", 9000),
        "c reaches a with a's link down"
    );
    assert!(reaches(&lab, "b", "c", 9000));
    assert!(reaches(&lab, "a", "a", 9000), "a lost its own address");
    lab.heal();
    all_reach(&lab);

    // A listener's port cut off: the host itself still reaches it, the
    // others reach its other ports.
    lab.drop_tcp("b", Way::In, "tcp dport 9000");
    assert!(!reaches(&lab, "a", "b", 9000));
    assert!(reaches(&lab, "b", "b", 9000));
    assert!(reaches(&lab, "a", "b", 9001));
    assert!(reaches(&lab, "b", "a", 9000), "b's own connections go on");
    lab.heal();
    all_reach(&lab);
}

#[test]
fn a_dropped_lab_leaves_no_namespace_interface_or_process_behind_even_after_a_panic() {
    let before = netlab::machine_interfaces();
    let Some(lab) = Lab::or_skip("dropped lab", &["a", "b"]) else {
        return;
    };
    let namespaces = lab.namespaces();
    assert_eq!(namespaces.len(), 3, "two hosts and the bridge");
    // Something left running in each host, as a killed test leaves it.
    let mut sleepers: Vec<std::process::Child> =
        ["a", "b"].iter().map(|h| run_inside(&lab, h)).collect();
    drop(lab);
    let left: Vec<String> = netlab::lab_namespaces()
        .into_iter()
        .filter(|ns| namespaces.contains(ns))
        .collect();
    assert!(left.is_empty(), "left after the drop: {left:?}");
    for sleeper in &mut sleepers {
        let status = wait_until("the lab's process to be killed", MINUTE, || {
            sleeper.try_wait().ok().flatten()
        });
        assert!(!status.success());
    }

    // A test that panics with its lab: the lab is removed all the same.
    let names = std::sync::Mutex::new(Vec::new());
    let panicked = std::panic::catch_unwind(|| {
        let lab = Lab::or_skip("panicking lab", &["a"]).expect("a lab");
        *names.lock().expect("names") = lab.namespaces();
        panic!("a test fails with its lab");
    });
    assert!(panicked.is_err());
    let names = names.into_inner().expect("names");
    assert!(!names.is_empty());
    let left: Vec<String> = netlab::lab_namespaces()
        .into_iter()
        .filter(|ns| names.contains(ns))
        .collect();
    assert!(left.is_empty(), "left after a panic: {left:?}");
    assert_eq!(netlab::machine_interfaces(), before);
}

#[test]
fn leftovers_of_a_run_whose_process_is_gone_are_removed_and_live_labs_kept() {
    let Some(live) = Lab::or_skip("leftovers", &["a"]) else {
        return;
    };
    // A lab named after a process that then dies without removing it (its
    // drop never runs, as under a kill -9), something still running in it.
    let mut owner = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let dead = Lab::for_owner(owner.id(), &["a", "b"]);
    let dead_namespaces = dead.namespaces();
    let mut inside = run_inside(&dead, "a");
    std::mem::forget(dead);
    owner.kill().expect("kill the owner");
    owner.wait().expect("reap the owner");

    let removed = netlab::remove_leftovers();
    eprintln!("removed {removed:?}");
    // (Another test's lab may have removed them first.)
    let all = netlab::lab_namespaces();
    let left: Vec<&String> = dead_namespaces
        .iter()
        .filter(|ns| all.contains(ns))
        .collect();
    assert!(left.is_empty(), "leftovers not removed: {left:?}");
    wait_until("the leftover's process to be killed", MINUTE, || {
        inside.try_wait().ok().flatten()
    });
    for ns in live.namespaces() {
        assert!(all.contains(&ns), "a live lab's {ns} was removed");
    }
}

/// The command that removes leftovers of interrupted runs by hand
/// (`cargo test -p warden --test cluster netlab::remove_netlab_leftovers`); every
/// new lab does it too.
#[test]
fn remove_netlab_leftovers() {
    for ns in netlab::remove_leftovers() {
        println!("removed {ns}");
    }
}

/// Many failovers happen in these tests; the default threshold could
/// leave the group Failed.
fn setup() -> Setup {
    Setup {
        failover_threshold: 10_000,
        ..Setup::default()
    }
}

/// Wait until a node other than `from`'s records a run started after it;
/// then (a record period and more later, so that every line either wrote
/// is in) check that `from`'s run ended before it began. That run.
fn handed_over(cluster: &LabCluster, from: &Run) -> Run {
    let records = cluster.records_file();
    let taken = wait_until(
        &format!(
            "another node to take the group from {}; logs in {}",
            from.node,
            cluster.dir.path().display()
        ),
        MINUTE,
        || {
            runs(&records)
                .into_iter()
                .find(|r| r.node != from.node && r.from > from.from)
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let ended = runs(&records)
        .into_iter()
        .find(|r| r.node == from.node && r.pid == from.pid)
        .expect("the old owner's run");
    assert!(
        ended.ended_by() < taken.from,
        "{} served until {} ({}) while {} served from {}; logs in {}",
        from.node,
        ended.to,
        if ended.stopped {
            "its recorded stop".to_string()
        } else {
            format!("plus up to {RECORD_PERIOD_MS} ms")
        },
        taken.node,
        taken.from,
        cluster.dir.path().display()
    );
    eprintln!(
        "{}'s service gone {} ms before {}'s started",
        from.node,
        taken.from - ended.to,
        taken.node
    );
    taken
}

/// No two nodes' recorded runs overlap, over the whole test.
fn never_two_at_once(cluster: &LabCluster) {
    let runs = runs(&cluster.records_file());
    if let Some((a, b)) = overlapping(&runs) {
        panic!(
            "two nodes served at once: {a:?} and {b:?}; logs in {}",
            cluster.dir.path().display()
        );
    }
}

/// Back on the network, a fenced node rejoins, and with no failback the
/// group stays on `serving` (the same run).
fn rejoins_and_the_group_stays(cluster: &LabCluster, node: usize, serving: &Run, joins: usize) {
    cluster.lab.heal();
    cluster.wait_joined(node, joins);
    std::thread::sleep(Duration::from_secs(2));
    let now = cluster.serving();
    assert_eq!(
        (now.node.as_str(), now.pid),
        (serving.node.as_str(), serving.pid),
        "the group moved or restarted after {} rejoined",
        NODES[node]
    );
}

#[test]
fn an_owner_whose_link_goes_down_stops_its_service_before_another_node_serves() {
    let Some(mut cluster) = LabCluster::new("link down", setup()) else {
        return;
    };
    let first = cluster.start_three();
    assert_eq!(first.node, "n1");
    let (fences, joins) = (cluster.fences(0), cluster.joins(0));

    cluster.lab.link_down("n1");
    let taken = handed_over(&cluster, &first);
    assert_eq!(taken.node, "n2", "the next preferred owner");
    // The cut-off agent fenced itself; it did not crash.
    assert!(cluster.agent_runs(0), "n1's agent exited");
    assert!(cluster.fences(0) > fences, "n1 did not say it fenced");

    rejoins_and_the_group_stays(&cluster, 0, &taken, joins);
    never_two_at_once(&cluster);
}

#[test]
fn an_owner_cut_off_from_the_etcd_majority_but_not_from_clients_stops_before_another_serves() {
    let Some(mut cluster) = LabCluster::new("owner partitioned", setup()) else {
        return;
    };
    let first = cluster.start_three();
    assert_eq!(first.node, "n1");
    assert_eq!(
        cluster.answer_from(0).map(|(node, _)| node).as_deref(),
        Some("n1")
    );
    let joins = cluster.joins(0);

    // n1 and its etcd member lose n2 and n3 (the majority); the client
    // host still reaches every node.
    cluster.lab.partition(&["n1"], &["n2", "n3"]);
    // From the client: n1 answers, then refuses (reachable, its service
    // stopped), and only then does another node answer; never two at once.
    let mut n1_refused = false;
    let next = wait_until("another node to answer the client", MINUTE, || {
        let n1 = cluster.answer_from(0);
        n1_refused |= n1.is_none() && cluster.refused_by(0);
        let other = [1, 2].into_iter().find_map(|i| cluster.answer_from(i));
        assert!(
            n1.is_none() || other.is_none(),
            "the client got answers from n1 and from {other:?} at once"
        );
        other
    });
    assert!(
        n1_refused,
        "the client did not see n1 reachable and not serving before {} answered",
        next.0
    );
    let taken = handed_over(&cluster, &first);
    assert_eq!(taken.node, next.0);

    rejoins_and_the_group_stays(&cluster, 0, &taken, joins);
    never_two_at_once(&cluster);
}

#[test]
fn a_minority_etcd_member_partitioned_away_fences_no_agent_and_a_move_goes_through() {
    let Some(mut cluster) = LabCluster::new("minority member", setup()) else {
        return;
    };
    let first = cluster.start_three();
    let fences: Vec<usize> = (0..3).map(|i| cluster.fences(i)).collect();
    let ttl = Duration::from_secs(cluster.setup.lease_ttl_s);

    // The member the owner asks first (n1's own), cut off from every
    // other host; n1's agent still reaches it over its own loopback, where
    // it answers that it has no leader.
    cluster.isolate_member(0);
    let since = Instant::now();
    while since.elapsed() < 2 * ttl {
        if let Some(now) = serving_now(&cluster.records_file(), 500) {
            assert_eq!(
                (now.node.as_str(), now.pid),
                (first.node.as_str(), first.pid),
                "the service moved or restarted with one etcd member partitioned away; logs in {}",
                cluster.dir.path().display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Decisions are still taken.
    cluster.ok(2, &["group", "move", "web", "--to", "n3"]);
    let taken = handed_over(&cluster, &first);
    assert_eq!(taken.node, "n3");
    for (i, before) in fences.iter().enumerate() {
        assert_eq!(
            cluster.fences(i),
            *before,
            "{} fenced itself with one etcd member partitioned away; logs in {}",
            NODES[i],
            cluster.dir.path().display()
        );
    }
    cluster.lab.heal();
    cluster.wait_member_healthy(0);
    never_two_at_once(&cluster);
}

#[test]
fn with_the_etcd_majority_partitioned_away_nothing_is_decided_and_the_service_comes_back_after() {
    let Some(mut cluster) = LabCluster::new("majority partitioned", setup()) else {
        return;
    };
    let first = cluster.start_three();
    let records = cluster.records_file();
    let joins: Vec<usize> = (0..3).map(|i| cluster.joins(i)).collect();
    let fences: Vec<usize> = (0..3).map(|i| cluster.fences(i)).collect();

    // Members 1 and 2 cut off from everyone: member 0 is alone, a
    // minority. The agents still reach one another and the client host.
    cluster.isolate_member(1);
    cluster.isolate_member(2);
    for i in 0..3 {
        wait_until(&format!("{} to fence itself", NODES[i]), MINUTE, || {
            (cluster.fences(i) > fences[i]).then_some(())
        });
    }
    wait_until("the service to stop", MINUTE, || {
        serving_now(&records, 500).is_none().then_some(())
    });
    let said = cluster.cli(0, &["group", "move", "web", "--to", "n2"]);
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(
        !said.status.success() && stderr.contains("fenced"),
        "a move asked of a fenced node: {}{stderr}",
        String::from_utf8_lossy(&said.stdout)
    );
    // For a lease TTL nothing starts, anywhere.
    let count = runs(&records).len();
    std::thread::sleep(Duration::from_secs(cluster.setup.lease_ttl_s));
    assert_eq!(
        runs(&records).len(),
        count,
        "a service started without quorum"
    );
    assert!(serving_now(&records, 500).is_none());
    assert!(
        cluster.answer_from(0).is_none() && cluster.refused_by(0),
        "n1 is reachable from the client and serves nothing"
    );

    cluster.lab.heal();
    for m in 0..3 {
        cluster.wait_member_healthy(m);
    }
    for (i, before) in joins.iter().enumerate() {
        cluster.wait_joined(i, *before);
    }
    let back = cluster.serving();
    assert!(back.from > first.to, "a new run after the heal");
    for (i, node) in NODES.iter().enumerate() {
        wait_until(
            &format!("{node} to see {} own the group", back.node),
            MINUTE,
            || (cluster.owner_seen_by(i).as_deref() == Some(back.node.as_str())).then_some(()),
        );
    }
    let owner = NODES.iter().position(|n| *n == back.node).expect("a node");
    assert_eq!(
        cluster.answer_from(owner).map(|(node, _)| node),
        Some(back.node.clone()),
        "the client reaches the service again"
    );
    never_two_at_once(&cluster);
}

/// Random network faults for a bounded time (`WARDEN_LAB_STRESS_SECS`,
/// default 30: the binary's budget is about three minutes; the loopback
/// stress test in `cluster.rs` runs for minutes with kills, freezes and
/// proxy cut-offs): a node's link pulled, a node partitioned from the two
/// others, an etcd member cut off, kill -9 of an agent, and now and then
/// everything healed and the killed agents started again; several at once
/// at times, the etcd majority included. Judged from the services' records:
/// no two nodes' runs overlap, and the group runs again once all is healed.
/// `WARDEN_LAB_STRESS_SEED` replays a sequence.
#[test]
fn stress_random_pulled_links_partitions_and_kills_never_leave_two_nodes_serving_at_once() {
    let number = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let secs = number("WARDEN_LAB_STRESS_SECS").unwrap_or(30);
    let seed = number("WARDEN_LAB_STRESS_SEED")
        .unwrap_or_else(common::cluster::unix_ms)
        .max(1);
    let Some(mut cluster) = LabCluster::new("lab stress", setup()) else {
        return;
    };
    eprintln!("lab stress: {secs} s, WARDEN_LAB_STRESS_SEED={seed}");
    let mut state = seed;
    let mut random = move |below: u64| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    cluster.start_three();

    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let records = cluster.records_file();
    while Instant::now() < end {
        // Half the faults hit the node serving now, if one is.
        let serving =
            serving_now(&records, 500).and_then(|run| NODES.iter().position(|n| *n == run.node));
        let i = match serving {
            Some(owner) if random(2) == 0 => owner,
            _ => random(3) as usize,
        };
        let node = NODES[i];
        match random(6) {
            0 | 4 => {
                cluster.lab.link_down(node);
                done.push(format!("{node} link down"));
            }
            1 => {
                let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != node).collect();
                cluster.lab.partition(&[node], &others);
                done.push(format!("{node} partitioned"));
            }
            2 => {
                cluster.isolate_member(i);
                done.push(format!("etcd member {i} cut off"));
            }
            3 if cluster.agents[i].is_some() => {
                cluster.kill_agent(i);
                done.push(format!("{node} killed"));
            }
            _ => {
                cluster.lab.heal();
                for k in 0..3 {
                    if cluster.agents[k].is_none() {
                        cluster.start_agent(k);
                    }
                }
                done.push("healed".to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(500 + random(3000)));
    }
    cluster.lab.heal();
    for k in 0..3 {
        if cluster.agents[k].is_none() {
            cluster.start_agent(k);
        }
    }
    eprintln!("lab stress: {} steps: {}", done.len(), done.join(", "));

    common::cluster::judge_stress(
        &records,
        "lab stress",
        &format!(
            "WARDEN_LAB_STRESS_SEED={seed}; logs in {}",
            cluster.dir.path().display()
        ),
    );
}
