//! A node with more resources than an instance pool holds: the on-demand
//! allocator (the default) maps each store's memory when it is made, so
//! the count is not capped by slots reserved at start; the pool, chosen
//! explicitly, still caps it at its slots and says so. Each resource's own
//! memory limit holds on either, including for a memory that outgrows the
//! on-demand reservation and has to move.
//!
//! 50 000 resources are too slow for a test on a debug build; what is
//! tested here is the mechanism at a size past the old default pool (1 024
//! slots), and `host/benches/startup.rs` runs the large sizes.

use std::path::Path;
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::wait_until;
use serde_json::Value;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");

/// A plugins directory holding `chaos`, and a node configuration header.
fn node(dir: &Path, runtime: &str) -> String {
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    std::fs::copy(CHAOS, dir.join("plugins/chaos.wasm")).expect("copy chaos");
    format!("[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n{runtime}\n")
}

fn chaos(name: &str, extra: &str) -> String {
    format!(
        "[[resource]]\nname = \"{name}\"\ntype = \"chaos\"\nis_alive_interval_ms = 60000\n\
         looks_alive_interval_ms = 0\n{extra}\n"
    )
}

/// Every resource of `warden status --json`, by name.
fn resources(agent: &AgentProcess) -> Vec<Value> {
    let status: Value = serde_json::from_str(&agent.ok(&["status", "--json"])).expect("json");
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn count_in(resources: &[Value], state: &str) -> usize {
    resources.iter().filter(|r| r["state"] == state).count()
}

#[test]
fn more_resources_than_the_old_pool_held_all_come_online() {
    // The old default pool had 1 024 slots; its 1 025th store found none.
    const RESOURCES: usize = 1_100;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = node(dir.path(), "");
    for i in 0..RESOURCES {
        config.push_str(&chaos(&format!("r{i}"), ""));
    }
    let agent = AgentProcess::start(dir.path(), &config);
    let all = wait_until("every resource Online", Duration::from_secs(300), || {
        let all = resources(&agent);
        (count_in(&all, "Online") == RESOURCES).then_some(all)
    });
    assert_eq!(all.len(), RESOURCES);
    // Each holds a live instance: one store made, none thrown away.
    assert!(
        all.iter().all(|r| r["instances"] == 1),
        "a resource was instantiated more than once: {:?}",
        all.iter().find(|r| r["instances"] != 1)
    );
    // Above 100 groups `warden status` summarises; --all lists them all.
    let summary = agent.ok(&["status"]);
    assert!(
        summary.contains(&format!("Groups: {RESOURCES} ({RESOURCES} online)")),
        "{summary}"
    );
    assert!(summary.contains("Every group is Online."), "{summary}");
    assert!(summary.lines().count() < 10, "{summary}");
    let all = agent.ok(&["status", "--all"]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("Group ")).count(),
        RESOURCES
    );
    // SIGTERM takes every one offline before the agent exits (the loop
    // asks whether all are offline now and then, not after each change).
    let history_of = agent.dir.clone();
    agent.stop();
    let offline = std::fs::read_to_string(history_of.join("data/events.jsonl"))
        .expect("the history")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["event"] == "state" && e["to"] == "Offline")
        .count();
    assert_eq!(offline, RESOURCES, "not every resource went offline");
}

#[test]
fn a_large_node_s_status_is_summarised_with_what_is_not_online_listed() {
    const GROUPS: usize = 105;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = node(dir.path(), "");
    for i in 0..GROUPS - 1 {
        config.push_str(&chaos(&format!("r{i}"), ""));
    }
    config.push_str(&chaos(
        "broken",
        "restart = { action = \"do-not-restart\" }\nproperties = { fault = \"trap:online\" }",
    ));
    let agent = AgentProcess::start(dir.path(), &config);
    wait_until("every resource settled", Duration::from_secs(120), || {
        let all = resources(&agent);
        (count_in(&all, "Online") == GROUPS - 1 && count_in(&all, "Failed") == 1).then_some(())
    });
    let summary: Value =
        serde_json::from_str(&agent.ok(&["status", "--summary", "--json"])).expect("json");
    assert_eq!(summary["groups"]["total"], GROUPS);
    assert_eq!(summary["resources"]["by_state"]["Online"], GROUPS - 1);
    assert_eq!(summary["resources"]["by_state"]["Failed"], 1);
    let listed = summary["not_online"].as_array().expect("not_online");
    assert_eq!(listed.len(), 1, "{summary:#}");
    assert_eq!(listed[0]["resources"][0]["name"], "broken");
    let printed = agent.ok(&["status"]);
    assert!(printed.contains("Not Online:"), "{printed}");
    assert!(printed.contains("  broken "), "{printed}");
    assert!(
        !printed.contains("  r0 "),
        "an Online resource was listed: {printed}"
    );
    // `--json` without `--summary` stays the whole status scripts read.
    let whole: Value = serde_json::from_str(&agent.ok(&["status", "--json"])).expect("json");
    assert_eq!(whole["groups"].as_array().map(Vec::len), Some(GROUPS));
    agent.stop();
}

#[test]
fn the_pool_when_chosen_still_stops_at_its_slots() {
    const SLOTS: usize = 4;
    const RESOURCES: usize = 7;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = node(
        dir.path(),
        &format!("[runtime]\nallocator = \"pool\"\nmax_instances = {SLOTS}"),
    );
    for i in 0..RESOURCES {
        config.push_str(&chaos(
            &format!("r{i}"),
            "restart = { action = \"do-not-restart\" }",
        ));
    }
    let agent = AgentProcess::start(dir.path(), &config);
    let all = wait_until("every resource settled", Duration::from_secs(120), || {
        let all = resources(&agent);
        (count_in(&all, "Online") + count_in(&all, "Failed") == RESOURCES).then_some(all)
    });
    // Loading the type takes slots only while it describes and validates;
    // once the resources hold theirs, no more than the pool's are Online.
    let online = count_in(&all, "Online");
    assert!(
        (1..=SLOTS).contains(&online),
        "{online} Online with {SLOTS} slots: {all:?}"
    );
    let refused: Vec<&Value> = all.iter().filter(|r| r["state"] == "Failed").collect();
    assert!(!refused.is_empty(), "{all:?}");
    for r in refused {
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("maximum concurrent limit of"),
            "{} failed for another reason: {reason}",
            r["name"]
        );
    }
    agent.stop();
}

#[test]
fn a_memory_that_outgrows_its_reservation_still_stops_at_its_limit() {
    // Past the on-demand allocator's 64 MiB reservation the memory moves
    // (twice before 200 MiB); the limit is the store's, not the mapping's.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = node(dir.path(), "");
    config.push_str(&chaos(
        "hog",
        "memory_limit_mib = 200\nrestart = { action = \"do-not-restart\" }\nproperties = { fault = \"oom:online\" }",
    ));
    config.push_str(&chaos("neighbour", ""));
    let agent = AgentProcess::start(dir.path(), &config);
    let hog = wait_until("the hog Failed", Duration::from_secs(120), || {
        agent.resource("hog").filter(|r| r["state"] == "Failed")
    });
    let reason = hog["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("memory limit of 200 MiB reached"),
        "the hog failed for another reason: {reason}"
    );
    wait_until("the neighbour Online", Duration::from_secs(60), || {
        agent
            .resource("neighbour")
            .filter(|r| r["state"] == "Online")
    });
    agent.stop();
}

#[test]
fn max_instances_without_the_pool_is_ignored_and_said_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = node(dir.path(), "[runtime]\nmax_instances = 2");
    for i in 0..5 {
        config.push_str(&chaos(&format!("r{i}"), ""));
    }
    let agent = AgentProcess::start(dir.path(), &config);
    wait_until("every resource Online", Duration::from_secs(120), || {
        (count_in(&resources(&agent), "Online") == 5).then_some(())
    });
    let log = agent.log();
    assert!(
        log.contains("max_instances = 2 sizes the pool allocator only"),
        "no warning in the log:\n{log}"
    );
    agent.stop();
}
