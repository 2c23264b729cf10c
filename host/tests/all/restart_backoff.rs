//! The restart back-off against a real agent and real services (issue 19):
//! a crash-looping service is restarted at once the first time, then after
//! a wait that doubles up to its cap, every wait said in the history; a
//! healthy service killed with `kill -9` is still restarted at once; and a
//! back-off the agent cannot honour is refused naming the resource and the
//! key.
//!
//! The assertions are on the decisions' texts and order. The only times
//! compared are lower bounds (a delayed restart never comes before its
//! wait, which load cannot break); how fast a restart is belongs to the
//! benches (`benches/types.rs`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::agent_process::{AgentProcess, TOKEN};
use crate::common::process::{Killed, oldest_pid_of};
use crate::common::{free_port, wait_until};

const SLEEP: &str = "/usr/bin/sleep";

/// A node with one resource `name` running `sleep SECONDS`, restarted as
/// `restart` says.
fn node(name: &str, seconds: &str, restart: &str) -> String {
    format!(
        r#"
[node]
name = "solo"
data_dir = "data"

[plugins.process]
allow_programs = ["{SLEEP}"]

[[resource]]
name = "{name}"
type = "process"
is_alive_interval_ms = 60000
restart = {restart}
properties = {{ program = "{SLEEP}", args = "{seconds}", startup-ms = 100 }}
"#
    )
}

/// The policy's decisions about `resource`, in the history's order, as
/// `warden events --json` gives them: (milliseconds, reason).
fn decisions(agent: &AgentProcess, resource: &str) -> Vec<(u64, String)> {
    agent
        .ok(&[
            "events",
            "--resource",
            resource,
            "--event",
            "policy",
            "--limit",
            "1000",
            "--json",
        ])
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["action"] == "decision")
        .filter_map(|e| Some((e["at_ms"].as_u64()?, e["reason"].as_str()?.to_string())))
        .collect()
}

/// The service's pid, found by its whole command line (unique to the test).
fn pid_of(command_line: &str) -> Option<i32> {
    oldest_pid_of(&format!("^{command_line}$"))
}

/// How much later than the policy's clock an event can be written to the
/// history: the decision is timed when the agent writes it, the restart's
/// wait from when the policy saw the failure, a moment before.
const RECORDING_SLACK_MS: u64 = 100;

#[test]
fn a_crash_loop_restarts_at_once_then_after_a_doubling_back_off_until_the_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Up half a second, then gone: a crash loop. The waits: none, 500 ms,
    // 1 s, 2 s, 2 s (the cap); the 6th failure reaches the threshold.
    let agent = AgentProcess::start(
        dir.path(),
        &node(
            "looping",
            "0.5",
            "{ threshold = 6, period_s = 900, backoff_ms = 500, max_backoff_ms = 2000 }",
        ),
    );
    let threshold = "6 times within 900s, threshold 6 reached: failing group looping over";
    let all = wait_until("the threshold", Duration::from_secs(90), || {
        let all = decisions(&agent, "looping");
        all.iter()
            .any(|(_, why)| why.ends_with(threshold))
            .then_some(all)
    });
    let waits: [(&str, u64); 5] = [
        ("failure 1 of 6 within 900s, restarting", 0),
        (
            "failure 2 of 6 within 900s, restarting after 500ms (back-off)",
            500,
        ),
        (
            "failure 3 of 6 within 900s, restarting after 1s (back-off)",
            1_000,
        ),
        (
            "failure 4 of 6 within 900s, restarting after 2s (back-off)",
            2_000,
        ),
        (
            "failure 5 of 6 within 900s, restarting after 2s (back-off)",
            2_000,
        ),
    ];
    for (at, why) in &all {
        println!("{at} {why}");
    }
    // In order: each failure's decision, then its restart, then the next.
    let mut rest = all.as_slice();
    for (text, wait_ms) in waits {
        let at = rest
            .iter()
            .position(|(_, why)| why.ends_with(text))
            .unwrap_or_else(|| panic!("no decision ending {text:?} in order in {all:#?}"));
        let failed_at = rest[at].0;
        let restarted = rest[at + 1..]
            .iter()
            .position(|(_, why)| why == "restarting")
            .map(|i| at + 1 + i)
            .unwrap_or_else(|| panic!("no restart after {text:?} in {all:#?}"));
        // Nothing else decided between a failure and its restart: the
        // first one restarts at once, the others when their wait is over.
        assert_eq!(restarted, at + 1, "{all:#?}");
        let waited = rest[restarted].0.saturating_sub(failed_at);
        assert!(
            waited + RECORDING_SLACK_MS >= wait_ms,
            "{text:?}: restarted {waited} ms after the failure, before its {wait_ms} ms wait: {all:#?}"
        );
        rest = &rest[restarted + 1..];
    }
    assert!(
        rest.iter().any(|(_, why)| why.ends_with(threshold)),
        "the threshold after the 5th restart: {all:#?}"
    );
    // No restart after the threshold: the group is Failed (one node).
    let failed = wait_until("the group Failed", Duration::from_secs(30), || {
        agent
            .history()
            .into_iter()
            .find(|e| e["event"] == "policy" && e["action"] == "group-failed")
    });
    assert_eq!(failed["reason"], "no other possible owner is up");
    let restarts = decisions(&agent, "looping")
        .iter()
        .filter(|(_, why)| why == "restarting")
        .count();
    assert_eq!(restarts, 5, "{all:#?}");
    agent.stop();
}

#[test]
fn a_healthy_service_killed_with_kill_9_is_restarted_at_once_and_a_second_kill_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A sleep long enough to outlive the test, its length unique to it so
    // that its command line finds it.
    let seconds = (600_000 + u32::from(free_port().port())).to_string();
    let command_line = format!("{SLEEP} {seconds}");
    // The shipped defaults but for the threshold: no delay, back-off 1 s
    // doubling to 5 min.
    let agent = AgentProcess::start(dir.path(), &node("steady", &seconds, "{ threshold = 10 }"));
    let online = |n: usize| {
        agent
            .history()
            .iter()
            .filter(|e| e["resource"] == "steady" && e["to"] == "Online")
            .count()
            >= n
    };
    let mut pids = Vec::new();
    for (round, expected) in [
        (1, "failure 1 of 10 within 900s, restarting"),
        (
            2,
            "failure 2 of 10 within 900s, restarting after 1s (back-off)",
        ),
    ] {
        wait_until(&format!("online #{round}"), Duration::from_secs(30), || {
            online(round).then_some(())
        });
        let pid = wait_until("the service's pid", Duration::from_secs(10), || {
            pid_of(&command_line)
        });
        assert!(!pids.contains(&pid), "a new process each time: {pids:?}");
        pids.push(pid);
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
        let all = wait_until("the decision", Duration::from_secs(30), || {
            let all = decisions(&agent, "steady");
            all.iter()
                .any(|(_, why)| why.ends_with(expected))
                .then_some(all)
        });
        let at = all
            .iter()
            .position(|(_, why)| why.ends_with(expected))
            .expect("found above");
        assert!(
            all[at].1.contains("signal 9"),
            "the reason says how it ended: {}",
            all[at].1
        );
        wait_until("its restart", Duration::from_secs(30), || {
            decisions(&agent, "steady")
                .get(at + 1)
                .filter(|(_, why)| why == "restarting")
                .map(drop)
        });
    }
    wait_until("online #3", Duration::from_secs(30), || {
        online(3).then_some(())
    });
    let pid = wait_until("the service's pid", Duration::from_secs(10), || {
        pid_of(&command_line)
    });
    assert!(!pids.contains(&pid), "a new process: {pid} after {pids:?}");

    // `warden resource get` shows the policy it runs, defaults filled in.
    let text = agent.ok(&["resource", "get", "steady"]);
    assert!(
        text.contains(
            "restart    action=affect-group threshold=10 period_s=900 delay_ms=0 backoff_ms=1000 max_backoff_ms=300000 retry_period_s=3600\n"
        ),
        "{text}"
    );
    agent.stop();
}

/// POST a resource to the agent's API; (status, body).
fn create(agent: &AgentProcess, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "content-type: application/json"])
        .args(["--data-binary", body])
        .arg(format!("http://{}/v1/resources", agent.api))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (code.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn a_back_off_that_cannot_grow_or_a_misspelt_key_is_refused_naming_the_resource() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProcess::start(dir.path(), &node("steady", "600", "{ threshold = 3 }"));
    let resource = |restart: &str| {
        format!(
            r#"{{"name":"bad","type":"process","properties":{{"program":"{SLEEP}","args":"600"}},"restart":{restart}}}"#
        )
    };
    let (code, body) = create(
        &agent,
        &resource(r#"{"backoff_ms":10000,"max_backoff_ms":5000}"#),
    );
    // Well-formed, but not a configuration the agent can run: 422.
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(
            "resource \\\"bad\\\": restart max_backoff_ms 5000 is below backoff_ms 10000"
        ),
        "{body}"
    );
    let (code, body) = create(&agent, &resource(r#"{"backof_ms":1000}"#));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field `backof_ms`"), "{body}");
    let (code, body) = create(&agent, &resource(r#"{"max_backoff_ms":-1}"#));
    assert_eq!(code, 400, "{body}");
    // A file with the same mistake does not start an agent.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        node(
            "bad",
            "600",
            "{ backoff_ms = 10000, max_backoff_ms = 5000 }",
        ),
    )
    .expect("write");
    // Killed if it runs on (the test then fails).
    let mut child = Killed(
        Command::new(crate::common::agent_process::WARDEN)
            .args(["agent", "--config"])
            .arg(&bad)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warden agent"),
    );
    let exited = wait_until("the agent to refuse", Duration::from_secs(30), || {
        child.0.try_wait().ok().flatten()
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("its stderr");
    }
    assert!(!exited.success(), "{stderr}");
    assert!(
        stderr.contains("resource \"bad\": restart max_backoff_ms 5000 is below backoff_ms 10000"),
        "{stderr}"
    );
    assert!(
        agent.resource("bad").is_none(),
        "nothing was created: {:?}",
        agent.resource("bad")
    );
    agent.stop();
}
