//! Every contract version the agent supports runs: a plugin built against
//! the released 0.1.0 (`plugins/contract-0-1`, the raw bindings of
//! `wit/released/0.1.0/`) loads and runs unchanged beside the built-in
//! types, which are built against the current 0.2.0, through each import
//! 0.1.0 has (log, clock, sleep, progress, process, checkpoint).

use std::time::Duration;

use crate::common::*;
use warden::contract::{self, ContractVersion};
use warden::monitor::{Monitor, ResourceState};
use warden::runtime::Grants;

const LEGACY: &str = env!("WARDEN_PLUGIN_CONTRACT_0_1");

fn version(text: &str) -> ContractVersion {
    ContractVersion::parse(text).expect("a version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_0_1_0_loads_beside_the_current_ones() {
    let legacy = load(LEGACY).await;
    assert_eq!(legacy.name(), "legacy-process");
    assert_eq!(legacy.contract(), version("0.1.0"));
    let current = load(PROCESS).await;
    assert_eq!(current.contract(), contract::VERSION);
    assert_eq!(contract::VERSION, version("0.2.0"));

    let refused = legacy
        .validate(&[("program".to_string(), "sleep".to_string())])
        .await
        .expect("validate runs")
        .expect_err("a relative program is refused");
    assert_eq!(refused.property, "program");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_resource_runs_its_process_and_keeps_its_checkpoint() {
    let mut monitor = Monitor::new(64 << 20);
    // A sleep no other test starts, so that it can be found and killed.
    let marker = format!("{}.{}", 900 + std::process::id() % 100, std::process::id());
    let mut legacy = spec(
        "legacy",
        &[("program", "/bin/sleep"), ("args", marker.as_str())],
    );
    legacy.timing.pending_timeout = Some(Duration::from_secs(10));
    legacy.grants = Grants {
        allow_programs: vec!["/bin/sleep".into()],
        ..Grants::default()
    };
    let handle = monitor
        .add(load(LEGACY).await, legacy)
        .await
        .expect("valid spec");
    handle.online().expect("actor runs");
    wait_state(&handle, ResourceState::Online, Duration::from_secs(20)).await;

    let record = handle
        .control("checkpoint", "")
        .await
        .expect("actor runs")
        .expect("the record");
    assert!(record.starts_with("started-at="), "{record}");
    let now: u64 = handle
        .control("now", "")
        .await
        .expect("actor runs")
        .expect("the clock")
        .parse()
        .expect("milliseconds");
    let started: u64 = record["started-at=".len()..]
        .trim()
        .parse()
        .expect("milliseconds");
    assert!(started <= now, "{started} > {now}");

    // Killing the process is a failure the 0.1.0 process interface reports.
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-f", &format!("^/bin/sleep {marker}$")])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no sleep {marker} to kill");
    let failed = handle
        .wait_for(Duration::from_secs(20), |s| {
            s.state == ResourceState::Failed
        })
        .await
        .expect("the exit is a failure");
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("signal 9"), "{reason}");

    handle.online().expect("actor runs");
    wait_state(&handle, ResourceState::Online, Duration::from_secs(20)).await;
    handle.offline().expect("actor runs");
    wait_state(&handle, ResourceState::Offline, Duration::from_secs(20)).await;
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("^/bin/sleep {marker}$")])
        .output()
        .expect("pgrep");
    assert!(left.stdout.is_empty(), "offline left the process running");
    monitor.shutdown().await;
}
