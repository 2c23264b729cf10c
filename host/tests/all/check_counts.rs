//! Every health check counted in `GET /metrics`, now that a passing check
//! is no event: the actors count checks on atomic counters and the bus
//! counts the other events as they are published (`monitor::Counters`),
//! instead of a task reading every event off the live stream. A real agent
//! runs checks, one resource is made to fail and is restarted, checks are
//! suspended; then the counters must equal what the resources say they
//! ran, and the history must still hold every change.

use std::time::Duration;

use serde_json::Value;

use crate::common::agent_process::{AgentProcess, TOKEN};
use crate::common::wait_until;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");

/// The metrics page (with the token: it is accepted either way).
fn metrics(agent: &AgentProcess) -> String {
    let (code, body) = crate::common::agent_process::api_get(agent.api, TOKEN, "/metrics")
        .expect("GET /metrics answers");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample whose line is `series` and a space (0 when the
/// series is not there yet).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn is_alive(text: &str, result: &str) -> u64 {
    sample(
        text,
        &format!("warden_health_checks_total{{check=\"is-alive\",result=\"{result}\"}}"),
    )
}

/// The `checks` each resource's status counts, by name.
fn checks_by_resource(agent: &AgentProcess) -> Vec<(String, u64)> {
    let status: Value = serde_json::from_str(&agent.ok(&["status", "--json"])).expect("json");
    status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["checks"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn every_check_and_restart_is_counted_and_every_change_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    std::fs::copy(CHAOS, dir.path().join("plugins/chaos.wasm")).expect("copy chaos");
    let mut config =
        "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n".to_string();
    for name in ["steady-1", "steady-2", "flaky"] {
        config.push_str(&format!(
            "[[resource]]\nname = \"{name}\"\ntype = \"chaos\"\nis_alive_interval_ms = 50\n\
             looks_alive_interval_ms = 0\nrestart = {{ threshold = 5, period_s = 600 }}\n"
        ));
    }
    let agent = AgentProcess::start(dir.path(), &config);

    wait_until("a hundred passing checks", Duration::from_secs(60), || {
        (is_alive(&metrics(&agent), "healthy") >= 100).then_some(())
    });
    // One failure: its check fails, the resource is terminated, Failed,
    // and restarted by the policy.
    agent.ok(&["resource", "control", "flaky", "fail", "told to fail"]);
    wait_until("the failed check counted", Duration::from_secs(60), || {
        (is_alive(&metrics(&agent), "failed") >= 1).then_some(())
    });
    wait_until("flaky restarted", Duration::from_secs(60), || {
        let text = metrics(&agent);
        (sample(&text, "warden_restarts_total{resource=\"flaky\"}") >= 1).then_some(())
    });
    wait_until("flaky Online again", Duration::from_secs(60), || {
        let flaky = agent.resource("flaky")?;
        (flaky["state"] == "Online").then_some(())
    });
    // Some more passing checks after the restart, then none at all.
    let so_far = is_alive(&metrics(&agent), "healthy");
    wait_until("more checks", Duration::from_secs(60), || {
        (is_alive(&metrics(&agent), "healthy") >= so_far + 30).then_some(())
    });
    agent.ok(&[
        "component",
        "set",
        "Monitoring",
        "Inactive",
        "--requester",
        "Maintenance",
    ]);

    // With the checks suspended the counts settle: every check each
    // resource ran is counted once, as healthy or failed, with one
    // latency and one lateness each.
    let (ran, text) = wait_until(
        "the counters to equal the checks the resources ran",
        Duration::from_secs(30),
        || {
            let ran: u64 = checks_by_resource(&agent).iter().map(|(_, n)| n).sum();
            let text = metrics(&agent);
            (is_alive(&text, "healthy") + is_alive(&text, "failed") == ran).then_some((ran, text))
        },
    );
    assert!(ran >= 130, "{ran} checks ran");
    assert_eq!(is_alive(&text, "failed"), 1, "{text}");
    assert_eq!(
        sample(
            &text,
            "warden_health_check_latency_seconds_count{check=\"is-alive\"}"
        ),
        ran,
        "{text}"
    );
    assert_eq!(
        sample(&text, "warden_check_lateness_seconds_count"),
        ran,
        "{text}"
    );
    assert_eq!(
        sample(&text, "warden_restarts_total{resource=\"flaky\"}"),
        1
    );
    assert!(
        !text.contains("warden_restarts_total{resource=\"steady"),
        "{text}"
    );
    assert_eq!(sample(&text, "warden_events_missed_total"), 0);
    assert!(!text.contains("looks-alive"), "no looks-alive ran: {text}");

    // The history keeps every change and the failed check, and no passing
    // check.
    let history = agent.history();
    let of = |resource: &str, event: &str| -> Vec<&Value> {
        history
            .iter()
            .filter(|e| e["resource"] == resource && e["event"] == event)
            .collect()
    };
    let failed_checks = of("flaky", "check");
    assert_eq!(failed_checks.len(), 1, "{failed_checks:#?}");
    assert_eq!(failed_checks[0]["healthy"], false);
    assert!(
        failed_checks[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("told to fail")),
        "{failed_checks:#?}"
    );
    let moves = |resource: &str| -> Vec<String> {
        of(resource, "state")
            .iter()
            .map(|e| format!("{} -> {}", e["from"], e["to"]).replace('"', ""))
            .collect()
    };
    assert_eq!(
        moves("flaky"),
        [
            "Offline -> OnlinePending",
            "OnlinePending -> Online",
            "Online -> Failed",
            "Failed -> OnlinePending",
            "OnlinePending -> Online",
        ],
        "{history:#?}"
    );
    for steady in ["steady-1", "steady-2"] {
        assert_eq!(
            moves(steady),
            ["Offline -> OnlinePending", "OnlinePending -> Online"]
        );
        assert!(of(steady, "check").is_empty(), "a passing check recorded");
    }
    agent.stop();
}
