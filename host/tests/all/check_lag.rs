//! The lateness of every scheduled check, as `GET /metrics` exposes it
//! (`warden_check_lateness_seconds`): counted by the resource actors as
//! each check starts, one count per is-alive the agent ran on schedule.
//! What the figures are on a busy node is the `startup` bench's to say;
//! here, that they are counted, and counted right.

use std::process::Command;
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::wait_until;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");

/// The metrics page, scraped as Prometheus does (no token).
fn metrics(agent: &AgentProcess) -> String {
    let out = Command::new("curl")
        .arg("-sf")
        .arg(format!("http://{}/metrics", agent.api))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET /metrics failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample whose line starts with `name` and a space.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Every `le` bucket of the lateness histogram, in order.
fn buckets(text: &str) -> Vec<(String, u64)> {
    buckets_of(text, "warden_check_lateness_seconds_bucket{")
}

/// Every `le` bucket of the series whose bucket lines start with `opening`
/// (the name, `{` and any labels before `le`), in order.
fn buckets_of(text: &str, opening: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(opening)?.strip_prefix("le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn every_scheduled_check_is_counted_in_the_lateness_histogram() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    std::fs::copy(CHAOS, dir.path().join("plugins/chaos.wasm")).expect("copy chaos");
    // One resource checked every 200 ms, one every minute (never within
    // the test): the counts are the first one's.
    let config = "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n\
        [[resource]]\nname = \"fast\"\ntype = \"chaos\"\nis_alive_interval_ms = 200\n\
        looks_alive_interval_ms = 0\n\
        [[resource]]\nname = \"slow\"\ntype = \"chaos\"\nis_alive_interval_ms = 60000\n\
        looks_alive_interval_ms = 0\n";
    let agent = AgentProcess::start(dir.path(), config);

    // Before anything is checked the histogram is there, empty.
    let first = metrics(&agent);
    assert!(
        first.contains("# TYPE warden_check_lateness_seconds histogram"),
        "{first}"
    );

    let text = wait_until("ten checks counted", Duration::from_secs(60), || {
        let text = metrics(&agent);
        (sample(&text, "warden_check_lateness_seconds_count")? >= 10.0).then_some(text)
    });
    let count = sample(&text, "warden_check_lateness_seconds_count").expect("count") as u64;

    // A histogram Prometheus accepts: every bound, cumulative, ending
    // with +Inf at the total.
    let buckets = buckets(&text);
    assert_eq!(buckets.len(), 17, "16 bounds and +Inf: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&("+Inf".to_string(), count)));
    let sum = sample(&text, "warden_check_lateness_seconds_sum").expect("sum");
    let max = sample(&text, "warden_check_lateness_max_seconds").expect("max");
    assert!(sum >= 0.0 && max >= 0.0, "sum {sum}, max {max}");
    assert!(
        max * count as f64 >= sum - 1e-6,
        "the max {max} is below the mean ({sum} / {count})"
    );

    // One lateness per is-alive run on schedule: the health-check counter
    // of the same scrape counts a check once it has finished, so it is
    // at most one behind (the one in flight).
    let checks = sample(
        &text,
        "warden_health_checks_total{check=\"is-alive\",result=\"healthy\"}",
    )
    .expect("is-alive checks counted") as u64;
    assert!(
        count == checks || count == checks + 1,
        "{count} lateness counts for {checks} is-alive checks:\n{text}"
    );

    // The check latency histogram (labelled by check) is written by the
    // same code: the same shape, its +Inf at its own count.
    let latency = buckets_of(
        &text,
        "warden_health_check_latency_seconds_bucket{check=\"is-alive\",",
    );
    let latency_count = sample(
        &text,
        "warden_health_check_latency_seconds_count{check=\"is-alive\"}",
    )
    .expect("latency count") as u64;
    assert_eq!(latency.len(), 13, "12 bounds and +Inf: {latency:?}");
    assert!(
        latency.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {latency:?}"
    );
    assert_eq!(latency.last(), Some(&("+Inf".to_string(), latency_count)));
    assert!(
        latency_count >= checks,
        "{latency_count} latencies, {checks} checks"
    );
    assert!(
        sample(
            &text,
            "warden_health_check_latency_seconds_sum{check=\"is-alive\"}"
        )
        .is_some(),
        "{text}"
    );

    // And it keeps counting.
    wait_until("more checks counted", Duration::from_secs(60), || {
        (sample(&metrics(&agent), "warden_check_lateness_seconds_count")? as u64 >= count + 5)
            .then_some(())
    });
    agent.stop();
}
