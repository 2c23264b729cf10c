//! Bad plugin files and bad resource configurations: each is refused with
//! an error that names what is wrong, and nothing else is affected.

use std::time::Duration;

use crate::common::*;
use warden::monitor::{Monitor, ResourceState, SpecError};
use warden::runtime::{Grants, LoadError, Plugin};

async fn load_err(bytes: &[u8]) -> LoadError {
    Plugin::load(&runtime(), bytes)
        .await
        .expect_err("must not load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_file_gets_its_own_reason() {
    let text = load_err(b"#!/bin/sh\necho not wasm\n").await;
    assert!(matches!(text, LoadError::NotWasm(_)), "{text}");

    let core = wat::parse_str("(module)").expect("wat");
    let err = load_err(&core).await;
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");

    let chaos = std::fs::read(CHAOS).expect("chaos");
    let err = load_err(&chaos[..chaos.len() / 2]).await;
    assert!(matches!(err, LoadError::Compile(_)), "truncated: {err}");

    let other_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $api (export "f" (func $f)))
             (export "acme:other/api@1.0.0" (instance $api)))"#,
    )
    .expect("wat");
    let err = load_err(&other_world).await;
    let text = err.to_string();
    assert!(
        text.contains("does not export warden:resource/resource-type")
            && text.contains("acme:other/api@1.0.0"),
        "{text}"
    );

    let future = std::fs::read(FUTURE_CONTRACT).expect("future");
    let text = load_err(&future).await.to_string();
    assert!(
        text.contains("warden:resource@0.6.0") && text.contains("warden:resource@0.5.0"),
        "names both versions: {text}"
    );

    let traps = std::fs::read(DESCRIBE_TRAPS).expect("describe-traps");
    let text = load_err(&traps).await.to_string();
    assert!(
        text.starts_with("describe() failed: describe trapped")
            && text.contains("describe-traps: deliberate trap in describe"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_plugin_describes_itself() {
    let plugin = load(CHAOS).await;
    let info = plugin.info();
    assert_eq!(info.name, "chaos");
    assert!(info.properties.iter().any(|p| p.name == "fault"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resource_specs_are_refused_and_name_the_property() {
    let plugin = load(CHAOS).await;
    let mut monitor = Monitor::default();
    let running = online_chaos(&mut monitor, "running", &[]).await;

    let err = monitor
        .add(plugin.clone(), spec("a", &[("falt", "none")]))
        .await
        .expect_err("unknown property");
    assert!(
        matches!(&err, SpecError::UnknownProperty { property, .. } if property == "falt"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("known: fault, online-ms, progress-ms"),
        "{err}"
    );

    let err = monitor
        .add(plugin.clone(), spec("b", &[("online-ms", "soon")]))
        .await
        .expect_err("bad kind");
    assert_eq!(
        err.to_string(),
        "resource \"b\": property \"online-ms\": \"soon\" is not a valid duration in milliseconds"
    );

    let err = monitor
        .add(plugin.clone(), spec("c", &[("fault", "explode:online")]))
        .await
        .expect_err("plugin refuses");
    assert!(
        err.to_string()
            .starts_with("resource \"c\": property \"fault\": unknown mode \"explode\""),
        "{err}"
    );

    let err = monitor
        .add(plugin.clone(), spec("running", &[]))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, SpecError::Duplicate(_)), "{err}");

    let err = monitor
        .add(plugin.clone(), spec("no spaces please", &[]))
        .await
        .expect_err("bad name");
    assert!(matches!(err, SpecError::BadName(_)), "{err}");

    // None of that touched the resource that was running.
    assert_eq!(running.status().state, ResourceState::Online);
    assert!(monitor.get("a").is_none() && monitor.get("b").is_none());
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_is_not_allowed_is_refused_and_logged() {
    let plugin = load(PROCESS).await;
    let mut monitor = Monitor::default();
    let mut s = spec("sneaky", &[("program", "/bin/sh"), ("args", "-c true")]);
    s.grants = Grants {
        allow_programs: vec!["/usr/bin/sleep".into()],
        ..Grants::default()
    };
    let handle = monitor.add(plugin, s).await.expect("valid spec");
    handle.online().expect("actor");
    let status = handle
        .wait_for(Duration::from_secs(5), |s| s.state == ResourceState::Failed)
        .await
        .expect("fails");
    assert_eq!(
        status.reason.as_deref(),
        Some(
            "online failed: program /bin/sh is not allowed for this plugin (allowed: /usr/bin/sleep)"
        )
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_is_noticed_at_once_through_its_exit() {
    let plugin = load(PROCESS).await;
    let mut monitor = Monitor::default();
    let mut s = spec(
        "sleeper",
        &[
            ("program", "/usr/bin/sleep"),
            ("args", "600"),
            ("startup-ms", "50"),
        ],
    );
    s.grants = Grants {
        allow_programs: vec!["/usr/bin/sleep".into()],
        ..Grants::default()
    };
    // Poll rarely: the exit must be seen through the exit event, not a poll.
    s.timing.is_alive_interval = Some(Duration::from_secs(600));
    s.timing.looks_alive_interval = Some(Duration::ZERO);
    s.dirs = dirs_at(&data_dir());
    let handle = monitor.add(plugin, s).await.expect("valid");
    handle.online().expect("actor");
    wait_state(&handle, ResourceState::Online, Duration::from_secs(5)).await;
    let pid = |h: &warden::monitor::ResourceHandle| {
        let h = h.clone();
        async move {
            let answer = h.control("state", "").await.expect("actor").expect("state");
            answer
                .strip_prefix("running as pid ")
                .and_then(|p| p.parse::<i32>().ok())
                .unwrap_or_else(|| panic!("not running: {answer}"))
        }
    };
    let first = pid(&handle).await;
    let killed_at = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let failed = handle
        .wait_for(Duration::from_secs(5), |s| s.failures == 1)
        .await
        .expect("the exit is noticed");
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("killed by signal 9"),
        "{failed:?}"
    );
    assert_eq!(failed.state, ResourceState::Failed);
    // Restarting is the group policy's decision; asked, it starts anew.
    handle.online().expect("actor");
    wait_state(&handle, ResourceState::Online, Duration::from_secs(5)).await;
    let second = pid(&handle).await;
    assert_ne!(first, second, "a new process runs");
    monitor.shutdown().await;
    // Offline stopped it.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(second), None).is_err());
}
