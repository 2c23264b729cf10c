//! Plugin builds across a cluster (3 agents, a real 3-member etcd): a
//! build dropped into one node's plugins directory reaches every node,
//! a node started later included, and `warden plugin list` shows each
//! node's build; a build whose checks trap is rejected where it was tried
//! and the old version keeps running there; a pin asked of one node holds
//! on every node; a component damaged in etcd, one over the bound, a name
//! the directory already holds with other content, and a directory that
//! cannot be written, are refused with a clear error and change nothing
//! elsewhere; a build put into a stopped node's directory is rolled out
//! when it starts, and a build the rollout wrote is never announced as
//! the operator's.

use crate::common;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::cluster::{Cluster, Setup};
use crate::common::wait_until;
use serde_json::Value;

const CHAOS_NEXT: &str = env!("WARDEN_PLUGIN_CHAOS_NEXT");
const CHAOS_BROKEN: &str = env!("WARDEN_PLUGIN_CHAOS_BROKEN");

const MINUTE: Duration = Duration::from_secs(60);

fn chaos_cluster() -> Cluster {
    Cluster::with(Setup {
        chaos: true,
        ..Setup::default()
    })
}

/// Three agents joined, the group's resource Online on n1, every node
/// running chaos 0.1.0.
fn three_on_chaos_0_1_0() -> Cluster {
    let mut cluster = chaos_cluster();
    for i in 0..3 {
        cluster.start_joined(i);
    }
    wait_online_on(&cluster, 0, "0.1.0");
    wait_builds(&cluster, 0, &all_on("0.1.0"));
    cluster
}

/// Every node running `version`.
fn all_on(version: &'static str) -> [(&'static str, &'static str); 3] {
    [("n1", version), ("n2", version), ("n3", version)]
}

/// Drop a plugin into agent `i`'s directory as a careful operator does:
/// a dot-file first (ignored by the agent), then a rename.
fn drop_in(cluster: &Cluster, i: usize, source: &str, name: &str) {
    let dir = cluster.plugins_dir(i);
    let temp = dir.join(format!(".{name}.partial"));
    std::fs::copy(source, &temp).expect("copy");
    std::fs::rename(&temp, dir.join(name)).expect("rename");
}

/// The version of `chaos` each node runs, as agent `i`'s `plugin list`
/// shows it.
fn builds(cluster: &Cluster, i: usize) -> Option<BTreeMap<String, String>> {
    let out = cluster.cli(i, &["plugin", "list", "--json"]);
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    let chaos = list.as_array()?.iter().find(|p| p["name"] == "chaos")?;
    Some(
        chaos["nodes"]
            .as_object()?
            .iter()
            .map(|(node, build)| (node.clone(), build["version"].as_str().unwrap_or("").into()))
            .collect(),
    )
}

/// Wait until agent `i` shows exactly `expected` (node, version) pairs.
fn wait_builds(cluster: &Cluster, i: usize, expected: &[(&str, &str)]) {
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let shown = builds(cluster, i);
        if shown.as_ref() == Some(&expected) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} shows chaos builds {shown:?}, not {expected:?}; logs in {}",
            common::cluster::NODES[i],
            cluster.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Resource `r` as its owner reports it: (owner, version, state).
fn chaos_resource(cluster: &Cluster, i: usize) -> Option<(String, String, String)> {
    let status = cluster.status(i)?;
    let group = status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == "c")?
        .clone();
    let r = group["resources"].as_array()?.first()?.clone();
    Some((
        group["owner"].as_str()?.to_string(),
        r["version"].as_str()?.to_string(),
        r["state"].as_str()?.to_string(),
    ))
}

/// Wait until `r` is Online on `version` on node `i`, its owner.
fn wait_online_on(cluster: &Cluster, i: usize, version: &str) {
    let node = common::cluster::NODES[i];
    wait_until(&format!("r Online on {node} at {version}"), MINUTE, || {
        chaos_resource(cluster, i)
            .filter(|(owner, v, state)| owner == node && v == version && state == "Online")
    });
}

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(cluster.agent_log(i)).unwrap_or_default()
}

/// `component` with a custom section appended that makes it more than
/// `over` bytes (custom sections may follow any section and are not
/// compiled).
fn padded(component: &[u8], over: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.resize(body.len() + over + 1 - component.len(), 0);
    let mut out = component.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    assert!(out.len() > over);
    out
}

/// A directory made immutable (`chattr +i`) until dropped; `None`, saying
/// why, where the filesystem or the user cannot.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &std::path::Path) -> Option<Immutable> {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Immutable(dir.to_path_buf())),
            other => {
                println!("not testing a read-only plugins directory: chattr +i: {other:?}");
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    warden::cluster::plugins::sha256_hex(bytes)
}

#[test]
fn a_build_dropped_on_one_node_reaches_every_node_and_a_later_one() {
    let mut cluster = chaos_cluster();
    cluster.start_joined(0);
    cluster.start_joined(1);
    wait_online_on(&cluster, 0, "0.1.0");
    wait_builds(&cluster, 0, &[("n1", "0.1.0"), ("n2", "0.1.0")]);

    // Dropped on n2, which runs no resource of the type: n1 (the owner)
    // takes it through its own directory and swaps r to it.
    let dropped = std::time::Instant::now();
    drop_in(&cluster, 1, CHAOS_NEXT, "chaos@0.2.0.wasm");
    wait_online_on(&cluster, 0, "0.2.0");
    // A figure, not a bound: the watcher settles a file over two polls
    // (250 ms each) on each node, the rollout looks once a second.
    println!(
        "0.2.0 ({} bytes) dropped on n2 to r Online on it on n1: {:?}",
        std::fs::metadata(CHAOS_NEXT).map(|m| m.len()).unwrap_or(0),
        dropped.elapsed()
    );
    wait_builds(&cluster, 1, &[("n1", "0.2.0"), ("n2", "0.2.0")]);
    let next = std::fs::read(CHAOS_NEXT).expect("next");
    let written = cluster
        .plugins_dir(0)
        .join(format!("chaos@{}.wasm", &sha256_hex(&next)[..12]));
    assert_eq!(
        std::fs::read(&written).expect("the rollout's file on n1"),
        next,
        "{}",
        written.display()
    );

    // n3 starts after the rollout, with only 0.1.0 in its directory.
    cluster.start_joined(2);
    wait_builds(
        &cluster,
        2,
        &[("n1", "0.2.0"), ("n2", "0.2.0"), ("n3", "0.2.0")],
    );
    // The operator's view, on any node: one line per node under the type.
    wait_builds(
        &cluster,
        0,
        &[("n1", "0.2.0"), ("n2", "0.2.0"), ("n3", "0.2.0")],
    );
    let text = cluster.ok(0, &["plugin", "list"]);
    for node in ["n1", "n2", "n3"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(node) && l.contains("0.2.0")),
            "{node} on 0.2.0 in:\n{text}"
        );
    }
    assert!(log_of(&cluster, 1).contains("announced to every node"));

    // A pin asked of one node holds on every node: each swaps back to
    // 0.1.0 (loaded on each, the build it ran before) and is pinned there;
    // an unpin asked of another node unpins every node.
    let answer = cluster.ok(1, &["plugin", "pin", "chaos", "--version", "0.1.0"]);
    assert!(answer.contains("on every node of the cluster"), "{answer}");
    wait_builds(
        &cluster,
        2,
        &[("n1", "0.1.0"), ("n2", "0.1.0"), ("n3", "0.1.0")],
    );
    wait_online_on(&cluster, 0, "0.1.0");
    wait_pinned(&cluster, 0, true);
    let answer = cluster.ok(2, &["plugin", "unpin", "chaos"]);
    assert!(answer.contains("on every node of the cluster"), "{answer}");
    wait_pinned(&cluster, 1, false);
}

/// Wait until agent `i` shows `chaos` pinned (or not) on every node.
fn wait_pinned(cluster: &Cluster, i: usize, pinned: bool) {
    wait_until(
        &format!(
            "every node's chaos pinned={pinned}, as {} shows it",
            common::cluster::NODES[i]
        ),
        MINUTE,
        || {
            let out = cluster.cli(i, &["plugin", "list", "--json"]);
            let list: Value = serde_json::from_slice(&out.stdout).ok()?;
            let chaos = list.as_array()?.iter().find(|p| p["name"] == "chaos")?;
            let nodes = chaos["nodes"].as_object()?;
            (nodes.len() == 3 && nodes.values().all(|b| b["pinned"] == pinned)).then_some(())
        },
    );
}

#[test]
fn a_build_whose_checks_trap_is_rejected_where_tried_and_the_old_one_runs_on() {
    let cluster = three_on_chaos_0_1_0();

    // Dropped on the owner: its swap traps and is rolled back; a build
    // this node refused is not rolled out.
    drop_in(&cluster, 0, CHAOS_BROKEN, "chaos@0.3.0.wasm");
    wait_until("n1 to roll the swap back", MINUTE, || {
        log_of(&cluster, 0)
            .contains("swap of chaos to 0.3.0 rolled back")
            .then_some(())
    });
    wait_online_on(&cluster, 0, "0.1.0");
    // Two rounds of every node's rollout task: nothing was announced.
    std::thread::sleep(warden::rollout::EVERY * 3);
    wait_builds(&cluster, 1, &all_on("0.1.0"));
    let (runtime, etcd, keys) = cluster.direct_etcd();
    let announced = runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        client.get(keys.rollout("chaos"), None).await.expect("get")
    });
    // Each node offered the 0.1.0 it started on; the refused one is not.
    let broken_sha = sha256_hex(&std::fs::read(CHAOS_BROKEN).expect("broken"));
    let value = announced
        .kvs()
        .first()
        .map(|kv| kv.value_str().expect("utf-8"));
    assert!(
        !value.unwrap_or("").contains(&broken_sha),
        "a refused build was announced: {value:?}"
    );

    // Dropped on n2 (no resource of the type runs there): n2 and n3 take
    // it; n1 tries it under r, rejects it with the usual reason, and r
    // stays Online on 0.1.0.
    drop_in(&cluster, 1, CHAOS_BROKEN, "chaos@0.3.0.wasm");
    wait_builds(
        &cluster,
        2,
        &[("n1", "0.1.0"), ("n2", "0.3.0"), ("n3", "0.3.0")],
    );
    wait_until("n1 to reject the rolled-out build", MINUTE, || {
        (log_of(&cluster, 0)
            .matches("swap of chaos to 0.3.0 rolled back")
            .count()
            >= 2)
            .then_some(())
    });
    wait_online_on(&cluster, 0, "0.1.0");
    wait_builds(
        &cluster,
        0,
        &[("n1", "0.1.0"), ("n2", "0.3.0"), ("n3", "0.3.0")],
    );
}

#[test]
fn a_damaged_or_oversized_component_or_a_taken_name_changes_nothing() {
    let cluster = three_on_chaos_0_1_0();

    // A build announced as chaos 0.1.1 whose stored chunk was damaged
    // (one byte flipped in etcd).
    let (runtime, etcd, keys) = cluster.direct_etcd();
    let broken = std::fs::read(CHAOS_BROKEN).expect("broken");
    let sha = sha256_hex(&broken);
    let mut damaged = broken.clone();
    damaged[broken.len() / 2] ^= 0xff;
    let announcement = warden::cluster::plugins::Announcement {
        type_name: "chaos".into(),
        version: "0.1.1".into(),
        contract: "0.1.0".into(),
        sha256: sha.clone(),
        size: broken.len(),
        chunks: broken.len().div_ceil(warden::cluster::plugins::CHUNK),
        from: "n9".into(),
    };
    runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        for (index, chunk) in damaged.chunks(warden::cluster::plugins::CHUNK).enumerate() {
            client
                .put(keys.blob_chunk(&sha, index), chunk, None)
                .await
                .expect("put a chunk");
        }
        client
            .put(
                keys.rollout("chaos"),
                serde_json::to_string(&announcement).expect("json"),
                None,
            )
            .await
            .expect("announce");
    });
    for i in 0..3 {
        wait_until(
            &format!("{} to refuse the damaged build", common::cluster::NODES[i]),
            MINUTE,
            || {
                log_of(&cluster, i)
                    .contains("stored in etcd is damaged")
                    .then_some(())
            },
        );
        let label = format!("chaos@{}.wasm", &sha[..12]);
        assert!(
            !cluster.plugins_dir(i).join(&label).exists(),
            "a damaged build was written"
        );
    }
    wait_online_on(&cluster, 0, "0.1.0");
    wait_builds(&cluster, 1, &all_on("0.1.0"));

    // A build over the bound the cluster stores (0.2.0 padded with a
    // custom section): it runs where it was dropped, and nowhere else.
    let next = std::fs::read(CHAOS_NEXT).expect("next");
    let big = padded(&next, warden::cluster::plugins::MAX_COMPONENT);
    let big_file = cluster.plugins_dir(1).join("chaos@big.wasm");
    std::fs::write(cluster.plugins_dir(1).join(".big.partial"), &big).expect("write");
    std::fs::rename(cluster.plugins_dir(1).join(".big.partial"), &big_file).expect("rename");
    wait_until("n2 to refuse rolling out the big build", MINUTE, || {
        log_of(&cluster, 1)
            .contains("the cluster stores; it runs on this node only")
            .then_some(())
    });
    wait_builds(
        &cluster,
        0,
        &[("n1", "0.1.0"), ("n2", "0.2.0"), ("n3", "0.1.0")],
    );

    // n3's directory holds the name the next build would take, with other
    // content (not a component: the directory refuses it on its own).
    let name = format!("chaos@{}.wasm", &sha256_hex(&next)[..12]);
    std::fs::write(cluster.plugins_dir(2).join(&name), b"not this").expect("plant");
    // n2's directory cannot be written (immutable: root, as the tests
    // run, ignores permissions); it runs the big 0.2.0 and keeps it.
    let read_only = Immutable::set(&cluster.plugins_dir(1));
    drop_in(&cluster, 0, CHAOS_NEXT, "chaos@0.2.0.wasm");
    wait_builds(
        &cluster,
        0,
        &[("n1", "0.2.0"), ("n2", "0.2.0"), ("n3", "0.1.0")],
    );
    if read_only.is_some() {
        wait_until("n2 to refuse writing into its directory", MINUTE, || {
            log_of(&cluster, 1)
                .contains("rollout of chaos 0.2.0 from n1 not taken: writing")
                .then_some(())
        });
        assert!(!cluster.plugins_dir(1).join(&name).exists());
        let out = cluster.ok(1, &["plugin", "list", "--json"]);
        let big_sha = sha256_hex(&big);
        assert!(out.contains(&big_sha), "n2 runs the big build still: {out}");
    }
    drop(read_only);
    wait_until("n3 to refuse overwriting", MINUTE, || {
        log_of(&cluster, 2)
            .contains("already holds other content; it was not overwritten")
            .then_some(())
    });
    assert_eq!(
        std::fs::read(cluster.plugins_dir(2).join(&name)).expect("planted"),
        b"not this"
    );
    // The damaged build's chunks went when 0.2.0 replaced its
    // announcement: etcd holds one build of the type.
    let left = runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        client
            .get(keys.blob_prefix(&sha), Some(options))
            .await
            .expect("count")
            .count()
    });
    assert_eq!(left, 0, "the replaced build's chunks are still in etcd");
}

#[test]
fn a_build_dropped_while_the_agent_was_stopped_is_rolled_out_when_it_starts() {
    let mut cluster = three_on_chaos_0_1_0();

    // The operator's upgrade: stop n3, put 0.2.0 in its directory, start
    // it. It runs 0.2.0 from the start, and every other node takes it
    // (n1 swapping r to it).
    cluster.stop_agent(2, MINUTE);
    std::fs::copy(CHAOS_NEXT, cluster.plugins_dir(2).join("chaos@0.2.0.wasm")).expect("copy");
    cluster.start_joined(2);
    wait_builds(&cluster, 2, &all_on("0.2.0"));
    wait_builds(&cluster, 0, &all_on("0.2.0"));
    wait_online_on(&cluster, 0, "0.2.0");
    assert!(
        log_of(&cluster, 2).contains("announced to every node"),
        "n3 announced nothing"
    );

    // n2 holds the rollout's file (chaos@SHA12.wasm) and runs it. With
    // the announcement gone while n2 is stopped (so any announcement of
    // n2's would show), its restart announces nothing and logs no error:
    // that file is the rollout's, not the operator's.
    let next = std::fs::read(CHAOS_NEXT).expect("next");
    let written = cluster
        .plugins_dir(1)
        .join(format!("chaos@{}.wasm", &sha256_hex(&next)[..12]));
    assert_eq!(
        std::fs::read(&written).expect("the rollout's file on n2"),
        next
    );
    let (runtime, etcd, keys) = cluster.direct_etcd();
    let announced = || {
        runtime.block_on(async {
            let (_, mut client) = etcd.preferred();
            let answer = client.get(keys.rollout("chaos"), None).await.expect("get");
            answer
                .kvs()
                .first()
                .map(|kv| kv.value_str().expect("utf-8").to_string())
        })
    };
    let from_n3 = announced().expect("chaos is announced");
    assert!(from_n3.contains(r#""from":"n3""#), "{from_n3}");
    cluster.stop_agent(1, MINUTE);
    runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        client
            .delete(keys.rollout("chaos"), None)
            .await
            .expect("delete");
    });
    let logged = log_of(&cluster, 1).len();
    cluster.start_joined(1);
    wait_builds(&cluster, 1, &all_on("0.2.0"));
    // Several rounds of its rollout task.
    std::thread::sleep(warden::rollout::EVERY * 3);
    assert_eq!(
        announced(),
        None,
        "n2 announced the rollout's file as its own"
    );
    let log = log_of(&cluster, 1);
    let errors: Vec<&str> = log[logged..]
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert!(
        errors.is_empty(),
        "n2 logged errors at restart: {errors:#?}"
    );
    wait_online_on(&cluster, 0, "0.2.0");
}
