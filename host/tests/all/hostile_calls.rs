//! A plugin that tries to stall the agent (`plugins/hostile-calls`): calls
//! that report progress forever, or block, where the contract gives no
//! extension; a type that declares endless timers; an online with no
//! pending timeout. Each is cut off at a fixed deadline with a reason that
//! says so, the admin API keeps answering, SIGTERM ends the agent, and the
//! operator can cancel a pending online or bound it with a pending timeout.

use crate::common::{free_port, load, ms, runtime, spec, wait_state, wait_until};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warden::monitor::{Monitor, ResourceState, SpecError};
use warden::runtime::{CallError, LoadError, Plugin};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_CALLS");
const HOSTILE_NEXT: &str = env!("WARDEN_PLUGIN_HOSTILE_CALLS_NEXT");
const HOSTILE_DESCRIBE: &str = env!("WARDEN_PLUGIN_HOSTILE_CALLS_DESCRIBE");
const HOSTILE_TIMINGS: &str = env!("WARDEN_PLUGIN_HOSTILE_TIMINGS");
const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A bound far above every deadline in play here, and far below "forever".
const GENEROUS: Duration = Duration::from_secs(20);

/// Wait for the resource's reason once it is Failed.
async fn failed_reason(handle: &warden::monitor::ResourceHandle, within: Duration) -> String {
    let status = handle
        .wait_for(within, |s| s.state == ResourceState::Failed)
        .await
        .unwrap_or_else(|| panic!("{} did not fail: {:?}", handle.name(), handle.status()));
    status.reason.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_describe_that_reports_progress_forever_is_cut_off_at_load() {
    let bytes = std::fs::read(HOSTILE_DESCRIBE).expect("plugin file");
    let started = Instant::now();
    let err = tokio::time::timeout(GENEROUS, Plugin::load(&runtime(), &bytes))
        .await
        .expect("describe is cut off")
        .expect_err("a describe that never ends cannot load");
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());
    match err {
        LoadError::Describe(CallError::TimedOut { call, after }) => {
            assert_eq!(call, "describe");
            // The fixed deadline, not stretched by the reports.
            assert!(after <= Duration::from_secs(5), "allowed {after:?}");
        }
        other => panic!("expected describe to time out, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_declaring_an_endless_check_timeout_is_refused() {
    let bytes = std::fs::read(HOSTILE_TIMINGS).expect("plugin file");
    let err = Plugin::load(&runtime(), &bytes)
        .await
        .expect_err("u64::MAX as a check timeout is refused");
    let text = err.to_string();
    assert!(
        text.contains("check-timeout-ms") && text.contains("above the limit of 300000 ms"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validate_that_reports_progress_is_cut_off_at_its_fixed_deadline() {
    let monitor = Monitor::default();
    let started = Instant::now();
    let validating = monitor.prepare(
        load(HOSTILE).await,
        spec("spinner", &[("stall", "validate:progress")]),
    );
    let refused = tokio::time::timeout(GENEROUS, validating)
        .await
        .expect("validate is cut off")
        .err()
        .expect("a validate that never ends refuses the resource");
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());
    match refused {
        SpecError::ValidateFailed { reason, .. } => {
            assert_eq!(reason, "validate timed out after 5s")
        }
        other => panic!("expected validate to time out, got {other}"),
    }
}

/// Open and the health checks report progress forever: each is cut off at
/// its own fixed deadline (the check timeout, 300 ms here), and the
/// resource fails naming the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_checks_that_report_progress_are_cut_off_at_the_check_timeout() {
    let mut monitor = Monitor::default();
    let plugin = load(HOSTILE).await;
    for (export, expected) in [
        ("open", "open timed out after 300ms"),
        ("looks-alive", "looks-alive timed out after 300ms"),
        ("is-alive", "is-alive timed out after 300ms"),
    ] {
        let name = format!("spin-{export}");
        let stall = format!("{export}:progress");
        let handle = monitor
            .add(plugin.clone(), spec(&name, &[("stall", &stall)]))
            .await
            .expect("valid");
        handle.online().expect("actor");
        let reason = failed_reason(&handle, GENEROUS).await;
        assert_eq!(reason, expected, "{export}");
    }
    monitor.shutdown().await;
}

/// Control may run longer than a check, 30 s, but no progress report
/// stretches it; terminate is bounded by the terminate timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_terminate_that_report_progress_are_cut_off() {
    let mut monitor = Monitor::default();
    let plugin = load(HOSTILE).await;
    let control = monitor
        .add(
            plugin.clone(),
            spec("spin-control", &[("stall", "control:progress")]),
        )
        .await
        .expect("valid");
    control.online().expect("actor");
    wait_state(&control, ResourceState::Online, GENEROUS).await;
    let started = Instant::now();
    let answer = control.control("anything", "").await.expect("actor");
    assert_eq!(answer, Err("control timed out after 30s".to_string()));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );

    let terminate = monitor
        .add(
            plugin,
            spec("spin-terminate", &[("stall", "terminate:progress")]),
        )
        .await
        .expect("valid");
    terminate.online().expect("actor");
    wait_state(&terminate, ResourceState::Online, GENEROUS).await;
    let mut events = monitor.subscribe();
    terminate.terminate().expect("actor");
    wait_state(&terminate, ResourceState::Offline, GENEROUS).await;
    let cut_off = wait_for_event(&mut events, "spin-terminate", "terminate-failed").await;
    assert_eq!(cut_off["reason"], "terminate timed out after 300ms");
    monitor.shutdown().await;
}

/// The next event of `kind` about `resource`, as JSON.
async fn wait_for_event(
    events: &mut tokio::sync::broadcast::Receiver<warden::monitor::Event>,
    resource: &str,
    kind: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + GENEROUS;
    loop {
        assert!(Instant::now() < deadline, "no {kind} event of {resource}");
        let Ok(Ok(event)) = tokio::time::timeout(ms(200), events.recv()).await else {
            continue;
        };
        let json = serde_json::to_value(&event).expect("event json");
        if json["resource"] == resource && json["event"] == kind {
            return json;
        }
    }
}

/// The type declares its online unbounded: it stays pending until the
/// operator cancels it; the cancel is refused when nothing is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cancels_an_online_the_type_left_unbounded() {
    let mut monitor = Monitor::default();
    let mut s = spec("mount", &[("stall", "online:progress")]);
    s.timing.pending_timeout = None;
    let handle = monitor.add(load(HOSTILE).await, s).await.expect("valid");
    let refused = handle.cancel().expect_err("nothing is pending yet");
    assert!(
        refused.contains("no pending online or offline to cancel (it is Offline)"),
        "{refused}"
    );
    handle.online().expect("actor");
    wait_state(&handle, ResourceState::OnlinePending, GENEROUS).await;
    // Well past anything a deadline would allow here: still pending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.status().state, ResourceState::OnlinePending);
    let cancelled = handle.cancel().expect("an online is pending");
    assert_eq!(
        cancelled,
        "resource mount: its pending online was cancelled"
    );
    let reason = failed_reason(&handle, GENEROUS).await;
    assert!(
        reason.starts_with("online was cancelled by the operator"),
        "{reason}"
    );
    monitor.shutdown().await;
}

/// A pending timeout the operator sets on the resource bounds the online
/// the type declared unbounded: at once without progress, at the hard cap
/// (ten pending timeouts) with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_pending_timeout_bounds_an_online_the_type_left_unbounded() {
    let mut monitor = Monitor::default();
    let plugin = load(HOSTILE).await;
    let mut blocked = spec("blocked", &[("stall", "online:block")]);
    blocked.timing.pending_timeout = Some(ms(500));
    let mut reporting = spec("reporting", &[("stall", "online:progress")]);
    reporting.timing.pending_timeout = Some(ms(300));
    let blocked = monitor.add(plugin.clone(), blocked).await.expect("valid");
    let reporting = monitor.add(plugin, reporting).await.expect("valid");
    blocked.online().expect("actor");
    reporting.online().expect("actor");
    assert_eq!(
        failed_reason(&blocked, GENEROUS).await,
        "online timed out after 500ms"
    );
    assert_eq!(
        failed_reason(&reporting, GENEROUS).await,
        "online timed out after 3s"
    );
    monitor.shutdown().await;
}

/// An agent process with its admin API, killed when the test ends.
struct Agent {
    child: Child,
    api: SocketAddr,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the agent in `dir` with the hostile type in its plugins directory
/// and `resources` (TOML) in one group that starts online.
fn start_agent(dir: &Path, resources: &str) -> Agent {
    let api = free_port();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(HOSTILE, plugins.join("hostile-calls.wasm")).expect("copy plugin");
    warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
    let config = format!(
        r#"
[node]
name = "solo"
data_dir = "data"
plugins_dir = "plugins"

[api]
listen = "{api}"
token_file = "token"

[[group]]
name = "g"
online = true

{resources}
"#
    );
    std::fs::write(dir.join("node.toml"), config).expect("config");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.join("node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let agent = Agent {
        child,
        api,
        dir: dir.to_path_buf(),
    };
    wait_until("the agent to have started", Duration::from_secs(60), || {
        crate::common::agent_process::has_started(api, TOKEN)
    });
    agent
}

impl Agent {
    fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(WARDEN);
        command
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.api))
            .env("WARDEN_TOKEN", TOKEN);
        command
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run the CLI")
    }

    /// `warden status` must answer, and within `within`.
    fn status_answers_within(&self, within: Duration) -> serde_json::Value {
        let started = Instant::now();
        let out = self.cli(&["status", "--json"]);
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < within, "status took {took:?}");
        serde_json::from_slice(&out.stdout).expect("json status")
    }

    fn state_of(&self, resource: &str) -> Option<String> {
        let status = self.status_answers_within(GENEROUS);
        status["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == resource)
            .and_then(|r| r["state"].as_str().map(str::to_string))
    }

    fn wait_state(&self, resource: &str, state: &str) {
        wait_until(
            &format!("{resource} {state}"),
            Duration::from_secs(30),
            || (self.state_of(resource).as_deref() == Some(state)).then_some(()),
        );
    }

    /// The event history, one JSON object per line.
    fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("data/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Send SIGTERM and wait for the agent to exit, within `within`.
    fn terminate_within(&mut self, within: Duration) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let started = Instant::now();
        wait_until("the agent to exit after SIGTERM", within, || {
            self.child.try_wait().expect("wait").map(drop)
        });
        eprintln!("the agent exited {:?} after SIGTERM", started.elapsed());
    }
}

#[test]
fn a_validate_that_reports_progress_does_not_stop_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = start_agent(dir.path(), "");
    let create = agent
        .cli_command(&[
            "resource",
            "create",
            "spinner",
            "--type",
            "hostile-calls",
            "--group",
            "g",
            "--prop",
            "stall=validate:progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    // While the validate spins, the API answers.
    std::thread::sleep(ms(1000));
    for _ in 0..3 {
        agent.status_answers_within(Duration::from_secs(3));
        std::thread::sleep(ms(500));
    }
    let out = create.wait_with_output().expect("create ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a resource whose validate hangs was created"
    );
    assert!(
        stderr.contains("validate of its type failed: validate timed out after 5s"),
        "{stderr}"
    );
    assert_eq!(agent.state_of("spinner"), None, "nothing was created");
    agent.terminate_within(GENEROUS);
}

#[test]
fn a_stuck_resource_during_a_hot_swap_blocks_neither_the_api_nor_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = start_agent(
        dir.path(),
        r#"
[[resource]]
name = "stuck"
type = "hostile-calls"
group = "g"
properties = { stall = "online:block" }
"#,
    );
    agent.wait_state("stuck", "OnlinePending");
    // A new version of the type: its swap waits on the stuck resource.
    let plugins = dir.path().join("plugins");
    std::fs::copy(HOSTILE_NEXT, plugins.join(".next.partial")).expect("copy");
    std::fs::rename(
        plugins.join(".next.partial"),
        plugins.join("hostile-calls.wasm"),
    )
    .expect("rename");
    // Every answer comes quickly while the swap waits (for up to 30 s).
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        agent.status_answers_within(Duration::from_secs(3));
        std::thread::sleep(ms(500));
    }
    assert_eq!(agent.state_of("stuck").as_deref(), Some("OnlinePending"));
    agent.terminate_within(Duration::from_secs(90));
}

/// Removing a resource waits for its actor to stop, and an actor busy with
/// a hostile call (a control that never returns) holds that up to the
/// removal's bound (10 s, then the call is cut off). The removal runs off
/// the node's loop: the API keeps answering, the delete is answered once
/// the actor has stopped, and a resource created meanwhile under the same
/// name comes online only after the old one has stopped.
#[test]
fn removing_a_busy_resource_blocks_neither_the_api_nor_its_successor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = start_agent(
        dir.path(),
        r#"
[[group]]
name = "idle"
online = false

[[resource]]
name = "sticky"
type = "hostile-calls"
group = "idle"
properties = { stall = "control:block" }
"#,
    );
    agent.wait_state("sticky", "Offline");
    let control = agent
        .cli_command(&["resource", "control", "sticky", "anything"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the CLI");
    std::thread::sleep(ms(1000));
    let started = Instant::now();
    let mut delete = agent
        .cli_command(&["resource", "delete", "sticky"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    // The old actor is still in its control call; a resource of the same
    // name is created and its group asked online: it waits.
    std::thread::sleep(ms(1000));
    for args in [
        &[
            "resource",
            "create",
            "sticky",
            "--type",
            "hostile-calls",
            "--group",
            "idle",
        ][..],
        &["group", "online", "idle"][..],
    ] {
        let out = agent.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    while delete.try_wait().expect("wait for the CLI").is_none() {
        // `status_answers_within` asserts the API answers promptly.
        let state = agent.state_of("sticky");
        if state.as_deref() == Some("Online") {
            // The agent may have answered the delete and brought the new
            // one online while the CLI process is still on its way out
            // (a loaded machine): that CLI ends within moments. One still
            // waiting a second later is waiting on the old actor.
            let ends = Instant::now() + ms(1000);
            while delete.try_wait().expect("wait for the CLI").is_none() && Instant::now() < ends {
                std::thread::sleep(ms(20));
            }
            assert!(
                delete.try_wait().expect("wait for the CLI").is_some(),
                "the new resource came online while the old one was still stopping"
            );
            break;
        }
        std::thread::sleep(ms(300));
    }
    let out = delete.wait_with_output().expect("delete ends");
    assert!(
        out.status.success(),
        "delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = started.elapsed();
    assert!(
        answered >= Duration::from_secs(5),
        "the delete was answered after {answered:?}, before the busy actor was stopped"
    );
    agent.wait_state("sticky", "Online");
    drop(control);
    agent.terminate_within(GENEROUS);
}

#[test]
fn the_operator_cancels_a_pending_online_and_bounds_one_with_a_pending_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = start_agent(
        dir.path(),
        r#"
[[resource]]
name = "mount"
type = "hostile-calls"
group = "g"
properties = { stall = "online:block" }

[[resource]]
name = "bounded"
type = "hostile-calls"
group = "g"
pending_timeout_ms = 1000
properties = { stall = "online:block" }

[[resource]]
name = "calm"
type = "hostile-calls"
group = "g"
"#,
    );
    agent.wait_state("calm", "Online");
    agent.wait_state("mount", "OnlinePending");
    let out = agent.cli(&["resource", "cancel", "calm"]);
    assert!(!out.status.success(), "cancelled an online resource");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no pending online or offline to cancel (it is Online)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent.cli(&["resource", "cancel", "mount"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("its pending online was cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reason_of = |resource: &str, prefix: &str| {
        agent.history().into_iter().any(|e| {
            e["resource"] == resource
                && e["to"] == "Failed"
                && e["reason"].as_str().is_some_and(|r| r.starts_with(prefix))
        })
    };
    wait_until("the cancel in the history", GENEROUS, || {
        reason_of("mount", "online was cancelled by the operator").then_some(())
    });
    wait_until("the operator's pending timeout", GENEROUS, || {
        reason_of("bounded", "online timed out after 1s").then_some(())
    });
    agent.terminate_within(Duration::from_secs(90));
}
