//! A plugin file that names itself after a type it is not: `hostile-claim`
//! describes itself as the built-in `process` and, once swapped in, stops
//! the service it inherited. Dropped into the plugins directory of a running
//! agent (or present at start) it is refused, with the file, the type and
//! the name's owner in the reason, and the `process` resource goes on
//! running on the built-in with its service untouched. With the operator's
//! word (`[plugins.process] source = "FILE"`) the same file is an ordinary
//! hot swap.
//!
//! The same plugin under `warden plugin test`: its own default program is
//! not granted to it, and its data directory is a fresh private one that a
//! directory planted in advance does not replace.

use crate::common;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::sync::broadcast;
use warden::agent::{Agent, load_plugins};
use warden::config::AgentConfig;
use warden::monitor::{Event, EventKind, ResourceState};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_CLAIM");
const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const RESOURCE: &str = "svc";

/// A node with one `process` resource running `sleep`, and `extra` in its
/// `[plugins.process]` section.
fn config(dir: &Path, extra: &str) -> AgentConfig {
    let text = format!(
        r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[plugins.process]
allow_programs = ["/usr/bin/sleep"]
{extra}

[[resource]]
name = "{RESOURCE}"
type = "process"
is_alive_interval_ms = 300
properties = {{ program = "/usr/bin/sleep", args = "3600", startup-ms = "50" }}
"#
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("config");
    AgentConfig::load(&path).expect("valid config")
}

/// Copy the hostile plugin in as `name`, the careful way: a dot-file the
/// watcher ignores, renamed into place.
fn drop_in(plugins: &Path, name: &str) {
    let temp = plugins.join(format!(".{name}.partial"));
    std::fs::copy(HOSTILE, &temp).expect("copy");
    std::fs::rename(&temp, plugins.join(name)).expect("rename");
}

/// The pid of the resource's service, from the `state` control code
/// ("running as pid N"), once the resource is Online.
async fn service_pid(agent: &Agent) -> i32 {
    let handle = agent
        .node
        .resource(RESOURCE)
        .await
        .expect("node answers")
        .expect("resource exists");
    common::wait_state(&handle, ResourceState::Online, Duration::from_secs(30)).await;
    let state = handle
        .control("state", "")
        .await
        .expect("control delivered")
        .expect("state answered");
    state
        .strip_prefix("running as pid ")
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected state answer {state:?}"))
}

/// What the resource's implementation says it is, if it says.
async fn whoami(agent: &Agent) -> Result<String, String> {
    let handle = agent
        .node
        .resource(RESOURCE)
        .await
        .expect("node answers")
        .expect("resource exists");
    handle
        .control("whoami", "")
        .await
        .expect("control delivered")
}

/// The version the resource runs on, and its state.
async fn running_version(agent: &Agent) -> (String, ResourceState) {
    let status = agent.node.status().await.expect("status");
    let view = status
        .groups
        .into_iter()
        .flat_map(|g| g.resources)
        .find(|r| r.name == RESOURCE)
        .expect("the resource is listed");
    (view.version, view.state)
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// The next plugin event about `subject` (a file path, or a type name),
/// as (action, reason).
async fn plugin_event(
    events: &mut broadcast::Receiver<Event>,
    subject: &str,
    within: Duration,
) -> (String, String) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no plugin event about {subject} within {within:?}"
        );
        let Ok(Ok(event)) = tokio::time::timeout(left, events.recv()).await else {
            continue;
        };
        if let EventKind::Plugin { action, reason, .. } = event.kind
            && event.resource == subject
        {
            return (action, reason.unwrap_or_default());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_claiming_the_built_in_process_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    let agent = Agent::start(config(dir.path(), ""))
        .await
        .expect("agent starts");
    let pid = service_pid(&agent).await;
    let (builtin_version, _) = running_version(&agent).await;
    let mut events = agent.subscribe();

    // Under a name of its own, and under the built-in's own name: the
    // name `process` is the built-in's either way.
    for file in ["foo.wasm", "process.wasm"] {
        drop_in(&plugins, file);
        let path = plugins.join(file);
        let subject = path.display().to_string();
        let (action, reason) = plugin_event(&mut events, &subject, Duration::from_secs(60)).await;
        assert_eq!(action, "rejected", "{file}: {reason}");
        for needed in [
            subject.as_str(),
            "\"process\"",
            "built-in type process",
            &format!("[plugins.process] source = \"{file}\""),
        ] {
            assert!(
                reason.contains(needed),
                "{file}: {needed:?} not in {reason:?}"
            );
        }
    }

    // Let the watcher look again and the resource be checked a few times:
    // nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (version, state) = running_version(&agent).await;
    assert_eq!(state, ResourceState::Online);
    assert_eq!(
        version, builtin_version,
        "the resource stays on the built-in"
    );
    let answer = whoami(&agent).await;
    assert!(
        answer
            .as_ref()
            .is_err_and(|e| e.contains("unknown control code")),
        "the built-in answers, not the hostile plugin: {answer:?}"
    );
    assert_eq!(service_pid(&agent).await, pid, "the same service runs");
    assert!(alive(pid), "the service {pid} was not touched");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_operators_word_the_named_file_is_swapped_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    let agent = Agent::start(config(dir.path(), "source = \"replacement.wasm\""))
        .await
        .expect("agent starts");
    let pid = service_pid(&agent).await;
    let mut events = agent.subscribe();

    // Another file still may not take the name the operator gave away.
    drop_in(&plugins, "foo.wasm");
    let subject = plugins.join("foo.wasm").display().to_string();
    let (action, reason) = plugin_event(&mut events, &subject, Duration::from_secs(60)).await;
    assert_eq!(action, "rejected", "{reason}");
    assert!(
        reason.contains("takes it from replacement.wasm"),
        "{reason}"
    );
    assert!(alive(pid), "a refused file touches nothing");

    drop_in(&plugins, "replacement.wasm");
    let (action, reason) = plugin_event(&mut events, "process", Duration::from_secs(60)).await;
    assert_eq!(action, "swapped", "{reason}");
    assert_eq!(whoami(&agent).await, Ok("hostile-claim".to_string()));
    assert_eq!(running_version(&agent).await.0, "6.6.6");
    // The swapped-in code really ran with what it inherited: it stopped the
    // service (which is what the refusal above protects against).
    common::wait_until(
        "the old service to be stopped",
        Duration::from_secs(10),
        || (!alive(pid)).then_some(()),
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_a_file_is_held_to_the_same_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(HOSTILE, plugins.join("foo.wasm")).expect("copy");
    std::fs::copy(HOSTILE, plugins.join("replacement.wasm")).expect("copy");
    let runtime = common::runtime();

    let config = config(dir.path(), "");
    let loaded = load_plugins(&runtime, Some(&plugins), None, &config.plugins)
        .await
        .expect("loads");
    assert_ne!(loaded.plugins["process"].info().version, "6.6.6");
    let mut refused: Vec<String> = loaded
        .rejected
        .iter()
        .map(|r| r.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    refused.sort();
    assert_eq!(refused, ["foo.wasm", "replacement.wasm"]);
    for r in &loaded.rejected {
        assert!(r.reason.contains("built-in type process"), "{}", r.reason);
    }

    let config = self::config(dir.path(), "source = \"replacement.wasm\"");
    let loaded = load_plugins(&runtime, Some(&plugins), None, &config.plugins)
        .await
        .expect("loads");
    assert_eq!(loaded.plugins["process"].info().version, "6.6.6");
    assert_eq!(loaded.rejected.len(), 1, "{:?}", loaded.rejected);
    assert!(loaded.rejected[0].file.ends_with("foo.wasm"));
    assert!(
        loaded.rejected[0]
            .reason
            .contains("takes it from replacement.wasm"),
        "{}",
        loaded.rejected[0].reason
    );
}

/// `warden plugin test` of the hostile plugin, with `TMPDIR` set to `tmp`.
fn plugin_test(tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(WARDEN);
    command
        .args(["plugin", "test", HOSTILE, "--pending-timeout-ms", "5000"])
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null());
    command
}

#[test]
fn plugin_test_grants_no_program_the_plugin_names_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let marker = dir.path().join("the-default-program-ran");
    let marker_arg = format!("args={}", marker.display());

    // The plugin's `program` defaults to /usr/bin/touch; nothing granted.
    let output = plugin_test(&tmp, &["--prop", &marker_arg])
        .output()
        .expect("run warden plugin test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "the spawn must be refused:\n{stdout}"
    );
    assert!(
        !marker.exists(),
        "the plugin's own default program ran:\n{stdout}"
    );
    assert!(
        stdout.contains("none: the plugin may start no program"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not allowed for this plugin")
            && stdout.contains("hint grant")
            && stdout.contains("--grant-program /absolute/path (granted: none)"),
        "the failure says how to grant:\n{stdout}"
    );

    // Granted on the command line, it runs: the check above can see a run.
    let output = plugin_test(
        &tmp,
        &["--prop", &marker_arg, "--grant-program", "/usr/bin/touch"],
    )
    .output()
    .expect("run warden plugin test");
    assert!(
        marker.exists(),
        "granted, the program runs:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn plugin_test_data_directory_is_fresh_private_and_not_planted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let mut child = plugin_test(
        &tmp,
        &[
            "--prop",
            "program=/usr/bin/sleep",
            "--prop",
            "args=30",
            "--grant-program",
            "/usr/bin/sleep",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("start warden plugin test");
    // What a local user would plant for the name a pid gives away, while
    // the plugin still compiles.
    let planted = tmp.join(format!("warden-plugin-test-{}", child.id()));
    std::fs::create_dir(&planted).expect("plant");
    std::fs::write(planted.join("planted"), "theirs").expect("plant a file");

    // Watch the temporary directory while the test runs.
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "plugin test did not finish");
        for entry in std::fs::read_dir(&tmp).expect("list").flatten() {
            if entry.path() != planted
                && let Ok(meta) = entry.metadata()
            {
                seen.insert(entry.file_name(), meta.permissions().mode() & 0o777);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut stdout)
        .expect("read stdout");
    assert!(status.success(), "{stdout}");

    assert_eq!(
        std::fs::read_to_string(planted.join("planted"))
            .ok()
            .as_deref(),
        Some("theirs"),
        "the planted directory was neither used nor removed"
    );
    let used: Vec<_> = seen.iter().collect();
    assert_eq!(used.len(), 1, "one data directory: {used:?}");
    let (name, mode) = used[0];
    assert!(
        name.to_string_lossy().starts_with("warden-plugin-test-"),
        "{name:?}"
    );
    assert_eq!(*mode, 0o700, "{name:?} is private");
    assert!(!tmp.join(name).exists(), "{name:?} is removed afterwards");
}
