//! Many groups on the three-agent cluster of `common::cluster`: `gK`, each
//! of one `process` resource `rK` running `sleep 3600` (a real service,
//! the cheapest there is), preferring node `K mod 3` first. Shared by the
//! mass failover's test (`tests/cluster/busy_failover.rs`) and benchmark
//! (`benches/cluster_scale.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, NODES, TOKEN};

/// The program each group's resource runs.
pub const SLEEP: &str = "/usr/bin/sleep";

/// Groups asked online at a time at start, each wave Online before the
/// next (a debug agent on a loaded 2-core machine that starts hundreds of
/// services at once takes its time).
const WAVE: u64 = 100;
/// Requests in flight at once while asking a wave online (each waits until
/// its entry is applied on the node asked).
const THREADS: u64 = 25;

/// Group `gK`'s and resource `rK`'s state and owner, by group name.
pub type Owners = BTreeMap<String, (String, String)>;

/// The configuration of `groups` groups, `gK` of one resource `rK`, all
/// offline until asked.
pub fn config(groups: u64) -> String {
    let mut text = String::new();
    for k in 0..groups {
        let first = k as usize % NODES.len();
        let owners: Vec<String> = (0..NODES.len())
            .map(|d| format!("{:?}", NODES[(first + d) % NODES.len()]))
            .collect();
        text.push_str(&format!(
            r#"
[[group]]
name = "g{k}"
preferred_owners = [{owners}]
online = false

[[resource]]
name = "r{k}"
type = "process"
group = "g{k}"
properties = {{ program = "{SLEEP}", args = "3600", stop-grace-ms = 200 }}
"#,
            owners = owners.join(", "),
        ));
    }
    text
}

/// The node group `gK` prefers first.
pub fn home(group: &str) -> &'static str {
    let k: usize = group[1..].parse().unwrap_or(0);
    NODES[k % NODES.len()]
}

/// An HTTP client for the agents' APIs.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// A GET of the agent's API at `api` with the test token; the JSON body.
pub fn get(http: &ureq::Agent, api: SocketAddr, path: &str) -> Option<Value> {
    let mut answer = http
        .get(format!("http://{api}{path}"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .ok()?;
    let body = answer
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// Each `gK` group's state and owner, as agent `api`'s engine has them.
pub fn groups(http: &ureq::Agent, api: SocketAddr) -> Option<Owners> {
    let status = get(http, api, "/v1/status")?;
    Some(
        status["groups"]
            .as_array()?
            .iter()
            .filter(|g| g["name"].as_str().is_some_and(|n| n.starts_with('g')))
            .map(|g| {
                (
                    g["name"].as_str().unwrap_or_default().to_string(),
                    (
                        g["state"].as_str().unwrap_or_default().to_string(),
                        g["owner"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect(),
    )
}

/// Ask groups `g0`..`g{count}` online through the agents' APIs, a wave at a
/// time, each wave Online on its first choice (as agent 0 sees it) before
/// the next; the owners at the end.
pub fn bring_online(cluster: &Cluster, http: &ureq::Agent, count: u64, within: Duration) -> Owners {
    let mut owners = Owners::new();
    for wave in (0..count).step_by(WAVE as usize) {
        let wave_end = (wave + WAVE).min(count);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let apis = &cluster.apis;
                scope.spawn(move || {
                    for k in (wave + t..wave_end).step_by(THREADS as usize) {
                        let api = apis[k as usize % apis.len()];
                        http.post(format!("http://{api}/v1/groups/g{k}/online"))
                            .header("Authorization", &format!("Bearer {TOKEN}"))
                            .send_empty()
                            .unwrap_or_else(|err| panic!("asking g{k} online: {err}"));
                    }
                });
            }
        });
        owners = super::wait_until(
            &format!(
                "{wave_end} groups Online; logs in {}",
                cluster.dir.path().display()
            ),
            within,
            || {
                let seen = groups(http, cluster.apis[0])?;
                let online = seen
                    .iter()
                    .filter(|(g, (state, owner))| state == "online" && owner == home(g));
                (online.count() as u64 == wave_end).then_some(seen)
            },
        );
    }
    owners
}

/// The node that owns the most groups in `owners`, and its groups.
pub fn busiest(owners: &Owners) -> (usize, BTreeSet<String>) {
    let mut per_node: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (group, (_, owner)) in owners {
        if let Some(node) = NODES.iter().position(|n| n == owner) {
            per_node.entry(node).or_default().insert(group.clone());
        }
    }
    per_node
        .into_iter()
        .max_by_key(|(_, groups)| groups.len())
        .expect("some node owns groups")
}

/// Whether every group of `moved` is Online on a node other than `gone`,
/// as agent `api`'s engine has them.
pub fn all_online_elsewhere(
    http: &ureq::Agent,
    api: SocketAddr,
    moved: &BTreeSet<String>,
    gone: &str,
) -> bool {
    groups(http, api).is_some_and(|seen| {
        moved.iter().all(|g| {
            seen.get(g)
                .is_some_and(|(state, owner)| state == "online" && owner != gone)
        })
    })
}
