//! A hostile plugin attacks the agent with output: floods of stdout and log
//! lines, failure reasons, progress messages, control and validate answers
//! of tens of MiB, and log messages that forge a line of the agent's log.
//! The agent's log and event history must stay bounded, no forged line may
//! appear, and the agent must keep answering and checking its other
//! resources. The plugins are `plugins/hostile-output` and
//! `plugins/hostile-describe`.

use crate::common;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::Killed;
use crate::common::{load, ms, runtime, spec, wait_until};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use warden::monitor::{EventKind, Monitor, ResourceState};
use warden::runtime::plugin_text::{CUT_MARK, MAX_ANSWER, MAX_REASON};
use warden::runtime::{
    CallError, Grants, Instance, InstanceConfig, LoadError, Plugin, ResourceContext,
};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_OUTPUT");
const HOSTILE_DESCRIBE: &str = env!("WARDEN_PLUGIN_HOSTILE_DESCRIBE");
const TOKEN: &str = "hostile-output-test-token";

/// The start of the log line the plugin tries to forge (see `FORGED` in
/// plugins/hostile-output).
const FORGED_START: &str = "2026-12-02T22:00:00.000000Z";
/// What the forged text looks like once escaped: still there, on one line.
const FORGED_ESCAPED: &str = "innocent\\n2026-12-02T22:00:00.000000Z  INFO warden: forged line\\r";

/// The longest a reason may be once the host has it.
const REASON_BOUND: usize = MAX_REASON + CUT_MARK.len();
/// The longest a reason may be in a status or an event, where the host
/// puts its own words before the plugin's ("is-alive failed: ...").
const EVENT_BOUND: usize = REASON_BOUND + 256;

fn assert_safe_reason(what: &str, reason: &str) {
    assert_safe_text(what, reason, REASON_BOUND);
}

fn assert_safe_text(what: &str, reason: &str, bound: usize) {
    assert!(
        reason.len() <= bound,
        "{what}: a reason of {} bytes passed the cap",
        reason.len()
    );
    assert!(
        !reason.chars().any(char::is_control),
        "{what}: a control character passed: {:?}",
        &reason[reason.len().saturating_sub(200)..]
    );
}

/// `warden status --json` against the agent; None if it did not answer.
fn status(api: &str) -> Option<Value> {
    let out = Command::new(WARDEN)
        .args(["status", "--json"])
        .env("WARDEN_API", api)
        .env("WARDEN_TOKEN", TOKEN)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn resource<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["groups"]
        .as_array()?
        .iter()
        .flat_map(|g| g["resources"].as_array().into_iter().flatten())
        .find(|r| r["name"] == name)
}

fn start_agent(dir: &Path) -> (Killed, String) {
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    std::fs::copy(HOSTILE, plugins.join("hostile-output.wasm")).expect("copy hostile");
    std::fs::copy(common::CHAOS, plugins.join("chaos.wasm")).expect("copy chaos");
    warden::config::write_token_file(&dir.join("token"), TOKEN).expect("token");
    let api = common::free_address();
    std::fs::write(
        dir.join("node.toml"),
        format!(
            r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[api]
listen = "{api}"
token_file = "token"

[[resource]]
name = "hostile"
type = "hostile-output"
properties = {{ attack = "forge,progress,flood,huge-reason", flood-mib = 32 }}
memory_limit_mib = 64
is_alive_interval_ms = 300
looks_alive_interval_ms = 300
check_timeout_ms = 20000
pending_timeout_ms = 60000
# Keep restarting it, so the attack goes on for the whole test.
restart = {{ threshold = 1000 }}

[[resource]]
name = "steady"
type = "chaos"
is_alive_interval_ms = 100
looks_alive_interval_ms = 100
"#
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("agent.log")).expect("log file");
    let child = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.join("node.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the agent");
    (Killed(child), format!("http://{api}"))
}

#[test]
fn a_flooding_forging_plugin_leaves_the_log_bounded_and_the_agent_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, api) = start_agent(dir.path());
    let steady_checks =
        |status: &Value| resource(status, "steady").and_then(|r| r["checks"].as_u64());
    let first = wait_until("steady online", Duration::from_secs(60), || {
        status(&api).filter(|s| {
            resource(s, "steady").is_some_and(|r| r["state"] == "Online")
                && resource(s, "hostile").is_some_and(|r| {
                    r["failures_in_period"].as_u64() >= Some(1) || r["reason"].is_string()
                })
        })
    });
    let since = Instant::now();
    let checks_before = steady_checks(&first).unwrap_or(0);
    // Eight seconds of attack; the agent answers every request meanwhile.
    let mut last = first;
    while since.elapsed() < Duration::from_secs(8) {
        let asked = Instant::now();
        last = status(&api).expect("the agent answers during the attack");
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "status took {:?}",
            asked.elapsed()
        );
        std::thread::sleep(ms(500));
    }
    let elapsed = since.elapsed();
    let checks = steady_checks(&last).unwrap_or(0) - checks_before;
    // Looks-alive and is-alive every 100 ms: about 20 a second. A tenth
    // of the schedule is a generous floor (the machine is shared) that a
    // stalled agent still misses.
    let expected = elapsed.as_secs_f64() * 20.0;
    assert!(
        checks as f64 >= expected / 10.0,
        "the neighbour ran {checks} checks in {elapsed:?} (schedule: {expected:.0})"
    );
    let hostile = resource(&last, "hostile").cloned().unwrap_or_default();
    agent.terminate(Duration::from_secs(60));

    let log = std::fs::read(dir.path().join("agent.log")).expect("read log");
    let log = String::from_utf8_lossy(&log);
    // The plugin printed 32 MiB per online, 1 MiB per check, 20 MiB of
    // progress and 20 MiB per failure reason.
    assert!(
        log.len() < 6 << 20,
        "the agent's log grew to {} bytes; hostile: {hostile}",
        log.len()
    );
    assert!(
        log.contains("lines of plugin output suppressed")
            || log.contains("plugin output over its rate limit"),
        "no rate limit in the log"
    );
    assert!(
        log.contains(FORGED_ESCAPED),
        "the forged text was not logged escaped"
    );
    for line in log.lines() {
        assert!(
            !line.trim_start().starts_with(FORGED_START),
            "a forged line: {line:?}"
        );
        assert!(
            !line.contains("\x1b[2J"),
            "raw ANSI from the plugin: {line:?}"
        );
        assert!(!line.contains('\r'), "a carriage return: {line:?}");
        assert!(line.len() < 24 << 10, "a line of {} bytes", line.len());
    }

    let history = std::fs::read_to_string(dir.path().join("data/events.jsonl")).expect("events");
    assert!(
        history.len() < 2 << 20,
        "events.jsonl grew to {} bytes",
        history.len()
    );
    let mut cut = 0;
    for line in history.lines() {
        let event: Value = serde_json::from_str(line).expect("an event");
        if let Some(reason) = event["reason"].as_str() {
            assert_safe_text(line.get(..120).unwrap_or(line), reason, EVENT_BOUND);
            cut += usize::from(reason.ends_with(CUT_MARK));
        }
    }
    assert!(cut > 0, "no cut failure reason in the history");
}

/// Validate, open and control answers of 20 MiB, and a huge online
/// failure, reach the host cut and escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_answers_are_cut_where_they_enter_the_host() {
    let plugin = load(HOSTILE).await;
    let refuse = vec![("refuse".to_string(), "huge".to_string())];
    let refused = plugin
        .validate(&refuse)
        .await
        .expect("validate ran")
        .expect_err("validate refuses");
    assert_safe_reason("validate", &refused.reason);
    assert!(refused.property.len() <= 128 + CUT_MARK.len());
    assert!(!refused.property.contains('\n'));

    let (exits, _) = mpsc::unbounded_channel();
    let dirs = common::dirs_at(&common::data_dir());
    dirs.create().expect("resource directories");
    let context = ResourceContext::new(
        "opens-huge",
        "hostile-output",
        Grants::default(),
        dirs,
        exits,
    );
    let (_cancel, cancel) = watch::channel(0);
    let mut instance = Instance::new(
        plugin.clone(),
        context,
        refuse,
        InstanceConfig::default(),
        cancel,
    );
    match instance.open().await {
        Err(CallError::OpenRefused { property, reason }) => {
            assert_safe_reason("open", &reason);
            assert!(property.len() <= 128 + CUT_MARK.len());
        }
        other => panic!("open was not refused: {other:?}"),
    }

    let mut monitor = Monitor::new(64 << 20);
    let mut events = monitor.subscribe();
    let mut quiet = spec("quiet", &[]);
    quiet.memory_limit = Some(64 << 20);
    let handle = monitor
        .add(plugin.clone(), quiet)
        .await
        .expect("valid spec");
    handle.online().expect("actor runs");
    common::wait_state(&handle, ResourceState::Online, Duration::from_secs(20)).await;
    let answer = handle.control("ok", "").await.expect("actor runs");
    let answer = answer.expect("ok answers");
    assert_eq!(answer.len(), MAX_ANSWER + CUT_MARK.len());
    let error = handle.control("err", "").await.expect("actor runs");
    assert_safe_reason("control", &error.expect_err("err fails"));

    let mut failing = spec("fails-online", &[("attack", "huge-online")]);
    failing.memory_limit = Some(64 << 20);
    let failing = monitor.add(plugin, failing).await.expect("valid spec");
    failing.online().expect("actor runs");
    let status = failing
        .wait_for(Duration::from_secs(20), |s| s.reason.is_some())
        .await
        .expect("online fails with a reason");
    assert_safe_text(
        "online",
        status.reason.as_deref().unwrap_or(""),
        EVENT_BOUND,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        let Ok(Ok(event)) = tokio::time::timeout(ms(500), events.recv()).await else {
            continue;
        };
        if event.resource != "fails-online" {
            continue;
        }
        let reason = match &event.kind {
            EventKind::State { reason, .. } | EventKind::Check { reason, .. } => reason.clone(),
            EventKind::CutOff { reason, .. } | EventKind::Policy { reason, .. } => {
                Some(reason.clone())
            }
            _ => None,
        };
        if let Some(reason) = reason {
            assert_safe_text("an event", &reason, EVENT_BOUND);
            seen += 1;
        }
    }
    assert!(seen > 0, "no event with a reason from the failing online");
    monitor.shutdown().await;
}

/// A describe of tens of MiB is refused, naming the field, and the refusal
/// is short; the agent's `plugin check` says so too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_describe_is_refused_naming_the_field() {
    let bytes = std::fs::read(HOSTILE_DESCRIBE).expect("plugin file");
    let err = Plugin::load(&runtime(), &bytes)
        .await
        .map(drop)
        .expect_err("refused");
    match &err {
        LoadError::Schema(why) => {
            assert_eq!(why, "description is 20971525 bytes long, at most 4096");
        }
        other => panic!("refused for another reason: {other}"),
    }
    let out = Command::new(WARDEN)
        .args(["plugin", "check", HOSTILE_DESCRIBE])
        .output()
        .expect("run plugin check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("description is 20971525 bytes long"),
        "{stderr}"
    );
    assert!(stderr.len() < 4096, "{} bytes of refusal", stderr.len());
}

/// A type whose validate floods the log (stdout, stderr and `host::log`,
/// each more than the burst of log lines), validated again and again as an
/// operator creates and deletes a resource of it through the API of a real
/// agent. Every validate runs in a store of its own, but all of them spend
/// from the one budget of the loaded plugin: what reaches the log is that
/// budget's burst and rate over the whole run, not a burst per call, and
/// the lines it drops are reported as a resource's are.
#[test]
fn many_validations_spend_from_one_budget_of_the_plugin() {
    use common::agent_process::AgentProcess as Agent;
    use warden::runtime::{LINE_BURST, LINES_PER_SECOND};

    /// Create-and-delete rounds: with a budget per call, each round alone
    /// would log a full burst of the flood.
    const ROUNDS: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    std::fs::copy(HOSTILE, plugins.join("hostile-output.wasm")).expect("copy hostile");
    // The plugin's budget is made when the agent loads it, after this.
    let since = Instant::now();
    let agent = Agent::start(
        dir.path(),
        "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n",
    );
    agent.ok(&["group", "create", "g", "--offline"]);
    for _ in 0..ROUNDS {
        agent.ok(&[
            "resource",
            "create",
            "flooder",
            "--type",
            "hostile-output",
            "--group",
            "g",
            "--prop",
            "attack=flood-validate",
        ]);
        agent.ok(&["resource", "delete", "flooder"]);
    }
    let log = agent.log();
    agent.stop();
    let elapsed = since.elapsed().as_secs_f64();

    let flood = log.lines().filter(|l| l.contains("validate flood")).count();
    let bound = LINE_BURST + LINES_PER_SECOND * elapsed;
    // The flood reached the log (the attack ran), but no more of it than
    // one budget allows over the run; a budget per call would have let
    // ROUNDS bursts through.
    assert!(flood > 0, "no line of the validate flood in the log");
    assert!(
        (flood as f64) <= bound,
        "{flood} lines of the validate flood reached the log in {elapsed:.1} s, over one \
         budget's {bound:.0} ({ROUNDS} rounds; a burst per call would be {})",
        ROUNDS as f64 * LINE_BURST
    );
    let type_level = |l: &&str| l.contains("(hostile-output)");
    assert!(
        log.lines()
            .filter(type_level)
            .any(|l| l.contains("plugin output over its rate limit")),
        "no warning that the type-level calls went over their limit"
    );
    assert!(
        log.lines()
            .filter(type_level)
            .any(|l| l.contains("lines of plugin output suppressed")),
        "no count of the lines the type-level budget dropped"
    );
}
