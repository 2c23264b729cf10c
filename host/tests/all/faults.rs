//! Fault tests: plugins that hang, trap, exhaust memory or recurse, in every
//! export. Each resource must end Failed within its deadline plus a margin,
//! with a reason that says what happened, while a healthy resource in the
//! same monitor keeps its checks on schedule.
//!
//! Deadlines in these tests are short (100-500 ms). The margin allowed on
//! top is generous (CI machines have two cores); how precise the cut-off
//! really is, is measured by the benchmark, not asserted here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use warden::contract::Health;
use warden::monitor::{EventKind, Monitor, ResourceState};
use warden::runtime::CallError;

const MARGIN: Duration = Duration::from_millis(1500);

/// Bring up a `chaos` resource with `fault`, trigger the faulty export,
/// and return the reason it failed with and how long that took from the
/// moment the faulty call started (approximately).
async fn fail_with(fault: &str) -> (String, Duration) {
    let mut monitor = Monitor::default();
    let export = fault.split_once(':').map(|(_, e)| e).unwrap_or("");
    let handle = monitor
        .add(
            load(CHAOS).await,
            spec(
                &format!("r-{}", fault.replace(':', "-")),
                &[("fault", fault)],
            ),
        )
        .await
        .expect("valid spec");
    let started;
    match export {
        "open" | "online" => {
            started = Instant::now();
            handle.online().expect("actor");
        }
        "offline" => {
            handle.online().expect("actor");
            wait_state(&handle, ResourceState::Online, ms(5000)).await;
            started = Instant::now();
            handle.offline().expect("actor");
        }
        // Checks start one interval after online.
        "is-alive" | "looks-alive" => {
            handle.online().expect("actor");
            wait_state(&handle, ResourceState::Online, ms(5000)).await;
            started = Instant::now();
        }
        other => panic!("no trigger for {other}"),
    }
    let status = handle
        .wait_for(ms(10_000), |s| s.state == ResourceState::Failed)
        .await
        .unwrap_or_else(|| panic!("{fault}: never Failed: {:?}", handle.status()));
    let took = started.elapsed();
    monitor.shutdown().await;
    (status.reason.unwrap_or_default(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_are_cut_off_at_their_deadline() {
    // Pending timeout 500 ms; checks every 100/150 ms with a 300 ms timeout.
    for (fault, reason, deadline) in [
        ("hang:online", "online timed out after 500ms", ms(500)),
        ("block:online", "online timed out after 500ms", ms(500)),
        ("hang:offline", "offline timed out after 500ms", ms(500)),
        ("block:offline", "offline timed out after 500ms", ms(500)),
        (
            "hang:looks-alive",
            "looks-alive timed out after 300ms",
            ms(100 + 300),
        ),
        (
            "block:looks-alive",
            "looks-alive timed out after 300ms",
            ms(100 + 300),
        ),
        (
            "hang:is-alive",
            "is-alive timed out after 300ms",
            ms(150 + 300),
        ),
        (
            "block:is-alive",
            "is-alive timed out after 300ms",
            ms(150 + 300),
        ),
        // Open is bounded by the check timeout; the terminate that follows
        // the failure opens a fresh instance, which hangs as well.
        ("hang:open", "open timed out after 300ms", ms(300 + 300)),
        ("block:open", "open timed out after 300ms", ms(300 + 300)),
    ] {
        let (got, took) = fail_with(fault).await;
        assert!(
            got.starts_with(reason),
            "{fault}: reason {got:?}, wanted {reason:?}"
        );
        assert!(took < deadline + MARGIN, "{fault}: took {took:?}");
    }
}

/// The epoch ticker sleeps while no call is in flight, and the first call
/// to start wakes it. This hammers that hand-over: two tasks make short
/// healthy calls back to back, so the count of calls in flight keeps
/// falling to zero and the ticker keeps going to sleep, while hung calls
/// start again and again; every one must be cut off. A hung call left
/// without ticks would spin on its worker for ever, never coming back to
/// be cut off, so its outcome is awaited from this plain thread, with a
/// bound far above the second or so the test takes.
#[test]
fn hung_calls_are_cut_off_while_short_calls_come_and_go() {
    const HUNG_CALLS: usize = 40;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (done, outcome) = std::sync::mpsc::channel();
    tokio.spawn(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let mut short = Vec::new();
        for i in 0..2 {
            let mut instance = chaos_instance(&format!("short-{i}"), &data_dir(), &[]).await;
            let stop = stop.clone();
            short.push(tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let health = instance.is_alive(ms(10_000)).await;
                    assert!(matches!(health, Ok(Health::Healthy)), "{health:?}");
                    calls += 1;
                    tokio::task::yield_now().await;
                }
                calls
            }));
        }
        let mut hung = chaos_instance("hung", &data_dir(), &[("fault", "hang:is-alive")]).await;
        let mut results = Vec::new();
        for _ in 0..HUNG_CALLS {
            results.push(hung.is_alive(ms(20)).await);
        }
        stop.store(true, Ordering::Relaxed);
        let mut calls = 0;
        for task in short {
            calls += task.await.expect("the short calls all succeeded");
        }
        let _ = done.send((results, calls));
    });
    let (results, calls) = match outcome.recv_timeout(Duration::from_secs(120)) {
        Ok(outcome) => outcome,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // A worker is stuck in the guest: dropping the runtime would
            // wait for it for ever.
            std::mem::forget(tokio);
            panic!("a hung call was never cut off (no epoch ticks while it ran)");
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the test's task failed (see the panic above)")
        }
    };
    for (i, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(CallError::TimedOut { .. })),
            "hung call {i}: expected a time-out, got {result:?}"
        );
    }
    assert!(calls > 0, "no short call ran beside the hung ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_in_every_export_are_reported_with_the_plugins_words() {
    for (fault, reason) in [
        ("trap:open", "open trapped"),
        ("trap:online", "online trapped"),
        ("trap:looks-alive", "looks-alive trapped"),
        ("trap:is-alive", "is-alive trapped"),
        ("trap:offline", "offline trapped"),
    ] {
        let (got, _) = fail_with(fault).await;
        assert!(got.starts_with(reason), "{fault}: {got:?}");
        let export = fault.trim_start_matches("trap:");
        assert!(
            got.contains(&format!("chaos: deliberate trap in {export}")),
            "{fault}: the panic message is missing from {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_stops_at_the_memory_limit() {
    for export in ["online", "is-alive", "looks-alive", "offline"] {
        let (got, _) = fail_with(&format!("oom:{export}")).await;
        assert!(
            got.starts_with(&format!("{export} stopped: memory limit of 32 MiB reached")),
            "oom:{export}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_stack_not_the_agent() {
    for export in ["online", "is-alive", "looks-alive", "offline"] {
        let (got, _) = fail_with(&format!("recurse:{export}")).await;
        assert_eq!(
            got,
            format!("{export} overflowed its stack (unbounded recursion?)"),
            "recurse:{export}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_terminate_is_reported_and_the_resource_still_fails() {
    let mut monitor = Monitor::default();
    let mut events = monitor.subscribe();
    let handle = online_chaos(&mut monitor, "t", &[("fault", "trap:terminate")]).await;
    handle
        .control("fail", "disk on fire")
        .await
        .expect("actor")
        .expect("control");
    let status = handle
        .wait_for(ms(5000), |s| s.state == ResourceState::Failed)
        .await
        .expect("fails");
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("disk on fire"),
        "{status:?}"
    );
    let mut saw_terminate_failed = false;
    while let Ok(event) = events.try_recv() {
        if let EventKind::TerminateFailed { reason } = &event.kind {
            assert!(reason.starts_with("terminate trapped"), "{reason}");
            saw_terminate_failed = true;
        }
    }
    assert!(saw_terminate_failed);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_control_answers_an_error_and_the_next_call_gets_a_fresh_instance() {
    let mut monitor = Monitor::default();
    let handle = online_chaos(&mut monitor, "c", &[("fault", "trap:control")]).await;
    let answer = handle.control("anything", "").await.expect("actor");
    let err = answer.expect_err("control trapped");
    assert!(err.starts_with("control trapped"), "{err}");
    // The resource stays online; the next check runs on a new instance.
    let checks = handle.status().checks;
    handle
        .wait_for(ms(5000), |s| s.checks >= checks + 2)
        .await
        .expect("checks go on");
    let status = handle.status();
    assert_eq!(status.state, ResourceState::Online);
    assert_eq!(
        status.instances, 2,
        "one instance before the trap, one after"
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_resource_keeps_its_schedule_while_others_misbehave() {
    let mut monitor = Monitor::default();
    let mut events = monitor.subscribe();
    let healthy = online_chaos(&mut monitor, "healthy", &[]).await;
    let plugin = load(CHAOS).await;
    let mut bad = Vec::new();
    // The last one spins in online, cut off every 500 ms.
    for fault in [
        "hang:is-alive",
        "hang:looks-alive",
        "oom:is-alive",
        "recurse:looks-alive",
        "trap:is-alive",
        "hang:online",
    ] {
        let s = spec(
            &format!("bad-{}", fault.replace(':', "-")),
            &[("fault", fault)],
        );
        let handle = monitor.add(plugin.clone(), s).await.expect("valid");
        handle.online().expect("actor");
        bad.push(handle);
    }
    // Fail, restart, fail again, for the whole test: what the group policy
    // would do with an endless restart budget.
    let restarter = {
        let bad = bad.clone();
        tokio::spawn(async move {
            loop {
                for handle in &bad {
                    if handle.status().state == ResourceState::Failed {
                        let _ = handle.online();
                    }
                }
                tokio::time::sleep(ms(50)).await;
            }
        })
    };

    let window = Duration::from_secs(4);
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let mut worst = Duration::ZERO;
    let mut healthy_checks = 0;
    while start.elapsed() < window {
        let Ok(Ok(event)) = tokio::time::timeout(ms(200), events.recv()).await else {
            continue;
        };
        if event.resource != "healthy" {
            continue;
        }
        if let EventKind::Check {
            check: "is-alive",
            healthy: ok,
            ..
        } = event.kind
        {
            assert!(ok, "the healthy resource failed a check");
            let now = Instant::now();
            if let Some(prev) = last {
                worst = worst.max(now - prev);
            }
            last = Some(now);
            healthy_checks += 1;
        }
    }
    // is-alive every 150 ms for 4 s: about 26 checks.
    assert!(
        healthy_checks >= 15,
        "only {healthy_checks} checks in {window:?}"
    );
    assert!(
        worst < ms(150) + ms(400),
        "a gap of {worst:?} between checks of the healthy resource"
    );
    assert_eq!(healthy.status().state, ResourceState::Online);
    restarter.abort();
    for handle in &bad {
        assert!(
            handle.status().failures >= 2,
            "{} failed only {:?}",
            handle.name(),
            handle.status()
        );
    }
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_extend_the_pending_deadline_up_to_the_cap() {
    let mut monitor = Monitor::default();
    let plugin = load(CHAOS).await;
    // 1.5 s of online with a 500 ms pending timeout, reporting every 200 ms.
    let slow = monitor
        .add(
            plugin.clone(),
            spec("slow", &[("online-ms", "1500"), ("progress-ms", "200")]),
        )
        .await
        .expect("valid");
    slow.online().expect("actor");
    wait_state(&slow, ResourceState::Online, ms(5000)).await;

    // Without progress the same online times out.
    let silent = monitor
        .add(plugin.clone(), spec("silent", &[("online-ms", "1500")]))
        .await
        .expect("valid");
    silent.online().expect("actor");
    let status = silent
        .wait_for(ms(5000), |s| s.state == ResourceState::Failed)
        .await
        .expect("fails");
    assert_eq!(
        status.reason.as_deref(),
        Some("online timed out after 500ms")
    );

    // Progress cannot stretch a call past 10 pending timeouts (5 s here).
    let endless = monitor
        .add(
            plugin,
            spec("endless", &[("online-ms", "60000"), ("progress-ms", "100")]),
        )
        .await
        .expect("valid");
    let started = Instant::now();
    endless.online().expect("actor");
    let status = endless
        .wait_for(ms(15_000), |s| s.state == ResourceState::Failed)
        .await
        .expect("fails at the cap");
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("online timed out after 5"),
        "{status:?}"
    );
    assert!(started.elapsed() >= ms(5000));
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_cancel_a_pending_online() {
    let mut monitor = Monitor::default();
    let mut s = spec("stuck", &[("fault", "hang:online")]);
    s.timing.pending_timeout = Some(Duration::from_secs(600));
    let handle = monitor.add(load(CHAOS).await, s).await.expect("valid");
    handle.online().expect("actor");
    wait_state(&handle, ResourceState::OnlinePending, ms(5000)).await;
    tokio::time::sleep(ms(200)).await;
    handle.cancel_pending();
    let status = handle
        .wait_for(ms(5000), |s| s.state == ResourceState::Failed)
        .await
        .expect("cancelled");
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("online was cancelled by the operator"),
        "{status:?}"
    );
    monitor.shutdown().await;
}
