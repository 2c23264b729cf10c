//! Hot swap through the plugins directory of a running agent: a new version
//! dropped in moves 100 online resources to it without one leaving Online
//! or missing a health check; broken versions are rejected or rolled back
//! and every resource goes on running on the version it had.

use crate::common;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use warden::agent::Agent;
use warden::config::AgentConfig;
use warden::monitor::{Event, EventKind};

const RESOURCES: usize = 100;
const INTERVAL_MS: u64 = 500;
/// A swap's online and first is-alive on the new version are bounded by the
/// check timeout: a version that hangs costs a resource one hung check.
const CHECK_TIMEOUT_MS: u64 = 200;

fn config(dir: &Path) -> AgentConfig {
    let mut text = String::from(
        "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n[runtime]\nmax_instances = 512\n",
    );
    for i in 0..RESOURCES {
        text.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = {INTERVAL_MS}\nlooks_alive_interval_ms = 0\ncheck_timeout_ms = {CHECK_TIMEOUT_MS}\n"
        ));
    }
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("config");
    AgentConfig::load(&path).expect("valid config")
}

/// Copy a plugin into the directory the way a careful operator does:
/// write a dot-file, then rename it into place.
fn drop_in(plugins: &Path, bytes: &[u8]) {
    let temp = plugins.join(".chaos.wasm.partial");
    std::fs::write(&temp, bytes).expect("write");
    std::fs::rename(&temp, plugins.join("chaos.wasm")).expect("rename");
}

/// Watches the event stream: the last is-alive of every resource, the
/// worst gap between two, state changes, and plugin events.
struct Watch {
    events: broadcast::Receiver<Event>,
    last_check: HashMap<String, Instant>,
    worst_gap: Duration,
    state_changes: Vec<String>,
    /// Action and reason of each plugin event.
    plugin_events: Vec<(String, String)>,
}

impl Watch {
    async fn run_until(&mut self, within: Duration, mut done: impl FnMut(&Watch) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; plugin events so far: {:?}",
                self.plugin_events
            );
            let Ok(Ok(event)) =
                tokio::time::timeout(Duration::from_millis(100), self.events.recv()).await
            else {
                continue;
            };
            match event.kind {
                EventKind::Check { healthy, .. } => {
                    assert!(healthy, "{} failed a check", event.resource);
                    let now = Instant::now();
                    if let Some(last) = self.last_check.insert(event.resource.clone(), now) {
                        self.worst_gap = self.worst_gap.max(now - last);
                    }
                }
                EventKind::State { from, to, .. } => {
                    self.state_changes
                        .push(format!("{}: {from} -> {to}", event.resource));
                }
                EventKind::Plugin { action, reason, .. } => self
                    .plugin_events
                    .push((action, reason.unwrap_or_default())),
                _ => {}
            }
        }
    }

    fn saw(&self, action: &str) -> bool {
        self.plugin_events.iter().any(|(a, _)| a == action)
    }
}

async fn versions(agent: &Agent) -> HashMap<String, usize> {
    let status = agent.node.status().await.expect("status");
    let mut count = HashMap::new();
    for group in status.groups {
        for r in group.resources {
            assert_eq!(
                r.state,
                warden::monitor::ResourceState::Online,
                "{} is {}",
                r.name,
                r.state
            );
            *count.entry(r.version).or_insert(0) += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_online_resources_keep_them_online_and_on_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(common::CHAOS, plugins.join("chaos.wasm")).expect("copy");
    let agent = Agent::start(config(dir.path()))
        .await
        .expect("agent starts");
    let mut watch = Watch {
        events: agent.subscribe(),
        last_check: HashMap::new(),
        worst_gap: Duration::ZERO,
        state_changes: Vec::new(),
        plugin_events: Vec::new(),
    };
    // Everyone online and checked at least once.
    watch
        .run_until(Duration::from_secs(60), |w| w.last_check.len() == RESOURCES)
        .await;
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.1.0".to_string(), RESOURCES)])
    );
    watch.state_changes.clear();
    watch.worst_gap = Duration::ZERO;

    // A good new version.
    drop_in(
        &plugins,
        &std::fs::read(env!("WARDEN_PLUGIN_CHAOS_NEXT")).expect("next"),
    );
    watch
        .run_until(Duration::from_secs(60), |w| w.saw("swapped"))
        .await;
    // Keep watching the schedule for a few intervals after the swap.
    let settle = Instant::now() + Duration::from_millis(4 * INTERVAL_MS);
    watch
        .run_until(Duration::from_secs(30), |_| Instant::now() > settle)
        .await;
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.2.0".to_string(), RESOURCES)])
    );

    // A version whose health checks trap: rolled back.
    drop_in(
        &plugins,
        &std::fs::read(env!("WARDEN_PLUGIN_CHAOS_BROKEN")).expect("broken"),
    );
    watch
        .run_until(Duration::from_secs(60), |w| w.saw("rolled-back"))
        .await;
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.2.0".to_string(), RESOURCES)])
    );

    // A version whose online hangs: its online on the running resource is
    // cut off, and the swap is rolled back.
    let rolled_back = watch
        .plugin_events
        .iter()
        .filter(|(a, _)| a == "rolled-back")
        .count();
    drop_in(
        &plugins,
        &std::fs::read(env!("WARDEN_PLUGIN_CHAOS_STUCK")).expect("stuck"),
    );
    watch
        .run_until(Duration::from_secs(60), |w| {
            w.plugin_events
                .iter()
                .filter(|(a, _)| a == "rolled-back")
                .count()
                > rolled_back
        })
        .await;
    let (_, why) = watch
        .plugin_events
        .iter()
        .rfind(|(a, _)| a == "rolled-back")
        .expect("a roll-back");
    assert!(
        why.contains("0.4.0") && why.contains("online timed out"),
        "the roll-back names the version and the hung online: {why}"
    );
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.2.0".to_string(), RESOURCES)])
    );

    // Another contract, random bytes, a truncated file: rejected.
    let rejected_before = watch
        .plugin_events
        .iter()
        .filter(|(a, _)| a == "rejected")
        .count();
    for bad in [
        std::fs::read(common::FUTURE_CONTRACT).expect("future"),
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        std::fs::read(common::CHAOS).expect("chaos")[..5000].to_vec(),
    ] {
        let count = watch
            .plugin_events
            .iter()
            .filter(|(a, _)| a == "rejected")
            .count();
        drop_in(&plugins, &bad);
        watch
            .run_until(Duration::from_secs(30), |w| {
                w.plugin_events
                    .iter()
                    .filter(|(a, _)| a == "rejected")
                    .count()
                    > count
            })
            .await;
    }
    assert!(
        watch
            .plugin_events
            .iter()
            .filter(|(a, _)| a == "rejected")
            .count()
            >= rejected_before + 3
    );

    // Versions, roll-back and pinning.
    let loaded: Vec<(String, bool)> = agent
        .node
        .versions("chaos")
        .await
        .expect("versions")
        .into_iter()
        .map(|v| (v.version, v.active))
        .collect();
    assert_eq!(
        loaded,
        vec![("0.1.0".to_string(), false), ("0.2.0".to_string(), true)]
    );
    let answer = agent.node.rollback("chaos").await.expect("rollback");
    assert!(answer.contains("moved from 0.2.0 to 0.1.0"), "{answer}");
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.1.0".to_string(), RESOURCES)])
    );
    agent.node.pin("chaos", None).await.expect("pin");
    let pinned = watch.plugin_events.len();
    drop_in(
        &plugins,
        &std::fs::read(env!("WARDEN_PLUGIN_CHAOS_NEXT")).expect("next"),
    );
    watch
        .run_until(Duration::from_secs(30), |w| {
            w.plugin_events[pinned..]
                .iter()
                .any(|(a, _)| a == "rejected")
        })
        .await;
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.1.0".to_string(), RESOURCES)])
    );
    let answer = agent
        .node
        .pin("chaos", Some("0.2.0".to_string()))
        .await
        .expect("pin to 0.2.0");
    assert_eq!(answer, "type chaos pinned to 0.2.0");
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.2.0".to_string(), RESOURCES)])
    );
    agent.node.unpin("chaos").await.expect("unpin");
    assert!(agent.node.unpin("chaos").await.is_err());

    // Removing the file takes nothing down.
    std::fs::remove_file(plugins.join("chaos.wasm")).expect("rm");
    watch
        .run_until(Duration::from_secs(30), |w| w.saw("removed"))
        .await;
    let settle = Instant::now() + Duration::from_millis(2 * INTERVAL_MS);
    watch
        .run_until(Duration::from_secs(30), |_| Instant::now() > settle)
        .await;
    assert_eq!(
        versions(&agent).await,
        HashMap::from([("0.2.0".to_string(), RESOURCES)])
    );

    assert!(
        watch.state_changes.is_empty(),
        "resources changed state: {:?}",
        watch.state_changes
    );
    // Every check on schedule: the gap between two is-alive checks of any
    // resource stayed near its interval through every swap.
    assert!(
        watch.worst_gap < Duration::from_millis(INTERVAL_MS + 400),
        "a gap of {:?} between two checks of one resource",
        watch.worst_gap
    );
    agent.shutdown().await;
}
