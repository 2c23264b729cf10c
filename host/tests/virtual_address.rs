//! The virtual server keeps its address: a group whose root resource is an
//! `ip-address` (198.18.0.200/24 on each lab host's eth0), on the network
//! lab's three-node cluster. A client in its own namespace asks the
//! address every 100 ms which node answers (each node's service names its
//! node), while the group is moved, its owner's agent is killed with
//! kill -9, and its owner is cut off. After each, the address answers from
//! the new node, the old node no longer holds it, and the client never saw
//! an earlier node answer again once a later one had (two nodes never
//! answered for the address).
//!
//! Without CAP_NET_ADMIN each test says why and returns;
//! `WARDEN_NETLAB_REQUIRED=1` (CI) makes that a failure.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{NODES, Setup, served_by};
use common::lab_cluster::{CLIENT, LabCluster, SERVICE_PORT};
use common::netlab::{IFACE, Lab};
use common::wait_until;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
const MINUTE: Duration = Duration::from_secs(60);

/// The address resource, its grant, and the service depending on it.
fn setup() -> Setup {
    Setup {
        extra_config: format!(
            r#"
[plugins.ip-address.ip]
interfaces = ["{IFACE}"]
ranges = ["198.18.0.192/26", "198.18.0.0/24"]

[[resource]]
name = "vip"
type = "ip-address"
group = "web"
is_alive_interval_ms = 500
properties = {{ address = "{VIP}", prefix-length = 24, interface = "{IFACE}", probe-ms = 300 }}
"#
        ),
        ..Setup::default()
    }
}

/// Whether `host` has the virtual address on its interface.
fn holds(lab: &Lab, host: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", &lab.ns(host), "-o", "addr", "show", "dev", IFACE])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/24 "))
}

/// The hosts that hold the address now.
fn holders(lab: &Lab) -> Vec<&'static str> {
    NODES.into_iter().filter(|n| holds(lab, n)).collect()
}

/// One answer of the client's probe: when, and which node answered.
type Answer = (Instant, Option<String>);

/// Ask the virtual address which node serves, every 100 ms from the client
/// host, while `during` runs and a second after; every answer.
fn probing<T>(lab: &Lab, during: impl FnOnce() -> T) -> (T, Vec<Answer>) {
    let stop = AtomicBool::new(false);
    let vip = SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT);
    std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            lab.within(CLIENT, || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let node = served_by(vip).map(|(node, _)| node);
                    answers.push((at, node));
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()));
                }
                answers
            })
        });
        let result = during();
        // A second more, so that the probe sees what `during` waited for.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let answers = prober
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (result, answers)
    })
}

/// The nodes that answered, in order, each once per stretch; panics if an
/// earlier node answered again after a later one (two nodes answering for
/// the address), and if the last stretch is not `to`'s. The gap in
/// service: from the last answer of the node before `to` to `to`'s first.
fn judge(answers: &[Answer], to: &str) -> (Vec<String>, Option<Duration>) {
    let mut order: Vec<String> = Vec::new();
    let mut last_before: Option<Instant> = None;
    let mut first_of_to: Option<Instant> = None;
    for (at, node) in answers {
        let Some(node) = node else { continue };
        if order.last() != Some(node) {
            assert!(
                !order.contains(node),
                "{node} answered for the address again after {order:?}: two nodes answered"
            );
            order.push(node.clone());
        }
        if node == to {
            first_of_to.get_or_insert(*at);
        } else {
            last_before = Some(*at);
        }
    }
    assert_eq!(
        order.last().map(String::as_str),
        Some(to),
        "answers: {order:?}"
    );
    let gap = first_of_to
        .zip(last_before)
        .map(|(first, last)| first - last);
    (order, gap)
}

/// Wait until the address answers from `node`, seen from the client.
fn wait_served_by(lab: &Lab, node: &str) {
    let vip = SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT);
    wait_until(&format!("{VIP} to answer from {node}"), MINUTE, || {
        let answer = lab.within(CLIENT, || served_by(vip));
        (answer.map(|(n, _)| n).as_deref() == Some(node)).then_some(())
    });
}

/// Wait until exactly `node` holds the address.
fn wait_held_by(lab: &Lab, node: &str) {
    wait_until(&format!("only {node} to hold {VIP}"), MINUTE, || {
        (holders(lab) == [node]).then_some(())
    });
}

/// Node index of a name.
fn index(node: &str) -> usize {
    NODES
        .iter()
        .position(|n| *n == node)
        .unwrap_or_else(|| panic!("{node} is not a node"))
}

#[test]
fn the_address_moves_with_its_group_on_a_move_a_killed_agent_and_a_cut_off_owner() {
    let Some(mut cluster) = LabCluster::new("vip-moves", setup()) else {
        return;
    };
    cluster.start_three();
    wait_served_by(&cluster.lab, "n1");
    wait_held_by(&cluster.lab, "n1");

    // A planned move: n1 takes the address off, n2 probes, adds and
    // announces it.
    let ((), answers) = probing(&cluster.lab, || {
        cluster.ok(0, &["group", "move", "web", "--to", "n2"]);
        wait_served_by(&cluster.lab, "n2");
    });
    let (order, gap) = judge(&answers, "n2");
    eprintln!("planned move: {order:?}, gap {gap:?}");
    wait_held_by(&cluster.lab, "n2");

    // kill -9 of the owner's agent: its fence guard takes the address off
    // (and kills the service) when the last vouch runs out, before the
    // lease expires and another node takes the group.
    let (lab, agents) = (&cluster.lab, &mut cluster.agents);
    let (next, answers) = probing(lab, || {
        // Killed (SIGKILL) as it is dropped.
        drop(agents[1].take());
        wait_until("another node to serve", MINUTE, || {
            let vip = SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT);
            let answer = lab.within(CLIENT, || served_by(vip));
            answer.map(|(n, _)| n).filter(|n| n != "n2")
        })
    });
    let (order, gap) = judge(&answers, &next);
    eprintln!("kill -9 of n2's agent: {order:?}, gap {gap:?}");
    wait_held_by(&cluster.lab, &next);
    assert!(!holds(&cluster.lab, "n2"), "n2 still holds {VIP}");

    // The owner cut off (its cable pulled): it fences itself and takes the
    // address off; a connected node takes the group and the address.
    let owner = index(&next);
    let (then, answers) = probing(&cluster.lab, || {
        cluster.lab.link_down(NODES[owner]);
        wait_until("a connected node to serve", MINUTE, || {
            let vip = SocketAddr::new(IpAddr::V4(VIP), SERVICE_PORT);
            let answer = cluster.lab.within(CLIENT, || served_by(vip));
            answer.map(|(n, _)| n).filter(|n| n != NODES[owner])
        })
    });
    let (order, gap) = judge(&answers, &then);
    eprintln!("owner {} cut off: {order:?}, gap {gap:?}", NODES[owner]);
    // The cut-off node took it off itself, though nobody could tell it to.
    wait_until(
        &format!("{} to take {VIP} off", NODES[owner]),
        MINUTE,
        || (!holds(&cluster.lab, NODES[owner])).then_some(()),
    );
    cluster.lab.link_up(NODES[owner]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holders(&cluster.lab), [then.as_str()], "after the heal");
    wait_served_by(&cluster.lab, &then);
}
