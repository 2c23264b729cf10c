//! Which version of a type the real agent runs after a restart: the one a
//! swap would have left running. A swap to 0.2.0 holds; a version a swap
//! rejected (its health checks trap) is not run again, and says so; of two
//! files of one type the highest version runs whatever the files' names,
//! and a pin holds across restarts; a file that does not load is reported
//! by name and changes nothing.

use std::path::Path;
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::wait_until;
use serde_json::Value;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
const CHAOS_NEXT: &str = env!("WARDEN_PLUGIN_CHAOS_NEXT");
const CHAOS_BROKEN: &str = env!("WARDEN_PLUGIN_CHAOS_BROKEN");

/// One chaos resource in a group of its own (online by default), checked
/// often enough that a version whose checks trap is found out at once.
const CONFIG: &str = r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[[resource]]
name = "r"
type = "chaos"
is_alive_interval_ms = 200
looks_alive_interval_ms = 0
check_timeout_ms = 1000
"#;

const WITHIN: Duration = Duration::from_secs(30);

fn plugins_dir(dir: &Path) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    plugins
}

/// Put a plugin into the directory as a careful operator does: a dot-file
/// first (ignored by the agent), then a rename.
fn drop_in(plugins: &Path, source: &str, name: &str) {
    let temp = plugins.join(format!(".{name}.partial"));
    std::fs::copy(source, &temp).expect("copy");
    std::fs::rename(&temp, plugins.join(name)).expect("rename");
}

/// Wait until `r` is Online on `version` and has passed `checks` health
/// checks there without a failure; its status then.
fn online_on(agent: &AgentProcess, version: &str, checks: u64) -> Value {
    wait_until(
        &format!("r Online on {version} after {checks} checks"),
        WITHIN,
        || {
            let r = agent.resource("r")?;
            (r["state"] == "Online" && r["version"] == version && r["checks"].as_u64()? >= checks)
                .then_some(r)
        },
    )
}

/// The plugin events of the history: (subject, action, version, reason).
fn plugin_events(agent: &AgentProcess) -> Vec<(String, String, String, String)> {
    agent
        .history()
        .into_iter()
        .filter(|e| e["event"] == "plugin")
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or_default().to_string();
            (
                text("resource"),
                text("action"),
                text("version"),
                text("reason"),
            )
        })
        .collect()
}

fn wait_event(agent: &AgentProcess, action: &str, version: &str) -> String {
    wait_until(&format!("a {action} event for {version}"), WITHIN, || {
        plugin_events(agent)
            .into_iter()
            .find(|(_, a, v, _)| a == action && v == version)
            .map(|(_, _, _, reason)| reason)
    })
}

#[test]
fn a_restart_after_a_swap_comes_back_on_the_swapped_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = plugins_dir(dir.path());
    drop_in(&plugins, CHAOS, "chaos.wasm");
    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.1.0", 1);

    // 0.2.0 dropped as a new file beside the old one: swapped in.
    drop_in(&plugins, CHAOS_NEXT, "chaos@next.wasm");
    wait_event(&agent, "swapped", "0.2.0");
    online_on(&agent, "0.2.0", 1);
    agent.stop();

    let agent = AgentProcess::start(dir.path(), CONFIG);
    let r = online_on(&agent, "0.2.0", 3);
    assert_eq!(r["failures_in_period"], 0, "{r}");
    let versions = agent.ok(&["plugin", "versions", "chaos"]);
    assert!(
        versions
            .lines()
            .any(|l| l.starts_with("0.2.0") && l.contains("active")),
        "{versions}"
    );
    assert!(
        versions.lines().any(|l| l.starts_with("0.1.0")),
        "the other file's version is there to pin or roll back to: {versions}"
    );
    agent.stop();
}

#[test]
fn a_restart_after_a_rejected_swap_comes_back_on_the_version_that_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = plugins_dir(dir.path());
    drop_in(&plugins, CHAOS, "chaos.wasm");
    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.1.0", 1);

    // 0.3.0's health checks trap: the swap rolls back, r stays on 0.1.0.
    drop_in(&plugins, CHAOS_BROKEN, "chaos@0.3.0.wasm");
    let rolled_back = wait_event(&agent, "rolled-back", "0.3.0");
    assert!(rolled_back.contains("is-alive"), "{rolled_back}");
    online_on(&agent, "0.1.0", 1);
    agent.stop();

    // The higher version is still in the directory, and is not run.
    let agent = AgentProcess::start(dir.path(), CONFIG);
    let r = online_on(&agent, "0.1.0", 3);
    assert_eq!(r["failures_in_period"], 0, "{r}");
    let events = plugin_events(&agent);
    let rejected = events
        .iter()
        .find(|(subject, action, version, _)| {
            subject == "chaos" && action == "rejected" && version == "0.3.0"
        })
        .map(|(_, _, _, reason)| reason.clone())
        .unwrap_or_else(|| panic!("no rejection of 0.3.0 at start: {events:?}"));
    for part in ["chaos@0.3.0.wasm", "a swap rejected this build", "is-alive"] {
        assert!(rejected.contains(part), "{rejected:?} lacks {part:?}");
    }
    let fallback = wait_event(&agent, "fallback", "0.1.0");
    assert!(fallback.contains("chaos.wasm"), "{fallback}");
    assert!(fallback.contains("0.3.0"), "{fallback}");
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("passed over") && l.contains("0.3.0")),
        "the log does not say 0.3.0 was passed over:\n{log}"
    );
    agent.stop();
}

#[test]
fn of_two_files_the_highest_version_runs_and_a_pin_holds_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = plugins_dir(dir.path());
    drop_in(&plugins, CHAOS, "chaos.wasm");
    drop_in(&plugins, CHAOS_NEXT, "chaos@0.2.0.wasm");
    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.2.0", 1);
    let chosen = wait_event(&agent, "chosen", "0.2.0");
    assert!(chosen.contains("chaos@0.2.0.wasm"), "{chosen}");

    let pinned = agent.ok(&["plugin", "pin", "chaos", "--version", "0.1.0"]);
    assert!(pinned.contains("pinned to 0.1.0"), "{pinned}");
    online_on(&agent, "0.1.0", 1);
    agent.stop();

    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.1.0", 3);
    let versions = agent.ok(&["plugin", "versions", "chaos"]);
    assert!(
        versions
            .lines()
            .any(|l| l.starts_with("0.1.0") && l.contains("active") && l.contains("pinned")),
        "{versions}"
    );
    agent.ok(&["plugin", "unpin", "chaos"]);
    agent.stop();

    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.2.0", 1);
    agent.stop();
}

#[test]
fn file_names_sorting_against_the_versions_do_not_decide_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = plugins_dir(dir.path());
    // In name order 0.1.0 comes last (`.` sorts before `@`): the agent used
    // to let the last file win.
    drop_in(&plugins, CHAOS_NEXT, "chaos.wasm");
    drop_in(&plugins, CHAOS, "chaos@0.1.0.wasm");
    std::fs::write(plugins.join("chaos@zz-broken.wasm"), b"not a component").expect("write");
    let agent = AgentProcess::start(dir.path(), CONFIG);
    online_on(&agent, "0.2.0", 3);

    let events = plugin_events(&agent);
    let broken = events
        .iter()
        .find(|(subject, action, _, _)| {
            subject.ends_with("chaos@zz-broken.wasm") && action == "rejected"
        })
        .unwrap_or_else(|| panic!("the broken file is not reported: {events:?}"));
    assert!(broken.3.contains("not loaded at start"), "{broken:?}");
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("chaos@zz-broken.wasm")),
        "the log does not name the broken file:\n{log}"
    );
    let versions = agent.ok(&["plugin", "versions", "chaos"]);
    assert_eq!(
        versions.lines().count(),
        2,
        "the broken file adds no version: {versions}"
    );
    agent.stop();
}
