//! Every contract version the agent supports runs: a plugin built against
//! the released 0.1.0 (`plugins/contract-0-1`, the raw bindings of
//! `wit/released/0.1.0/`) loads and runs unchanged beside the built-in
//! types, which are built against the current 0.5.0, through each import
//! 0.1.0 has (log, clock, sleep, progress, process, checkpoint); one built
//! against 0.2.0 (`plugins/contract-0-2`) reaches its `network` import too.
//! The `replication` export (new in 0.3.0) is called, with its rules, on a
//! type that has it (`plugins/replica`) and refused on one that has not;
//! a replicated type built against the frozen 0.3.0 (`plugins/contract-0-3`)
//! has its export found under 0.3.0's name and its copy calls run; one
//! built against the frozen 0.4.0 (`plugins/contract-0-4`) has its export
//! found under 0.4.0's name and its three probes (0.4.0's `probe`, which
//! 0.5.0 grew) answered by the current code.

use std::time::Duration;

use crate::common::*;
use warden::contract::{self, ContractVersion};
use warden::monitor::{Monitor, ResourceState};
use warden::runtime::Grants;

const LEGACY: &str = env!("WARDEN_PLUGIN_CONTRACT_0_1");
const LEGACY_NETWORK: &str = env!("WARDEN_PLUGIN_CONTRACT_0_2");
const REPLICA: &str = env!("WARDEN_PLUGIN_REPLICA");
const LEGACY_REPLICA: &str = env!("WARDEN_PLUGIN_CONTRACT_0_3");
const LEGACY_PROBER: &str = env!("WARDEN_PLUGIN_CONTRACT_0_4");

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
    assert_eq!(contract::VERSION, version("0.5.0"));
    assert!(!current.is_replicated());

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_0_resource_reaches_every_import_it_has() {
    let plugin = load(LEGACY_NETWORK).await;
    assert_eq!(plugin.name(), "legacy-network");
    assert_eq!(plugin.contract(), version("0.2.0"));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut instance = plugin_instance(LEGACY_NETWORK, "legacy", dir.path(), &[]).await;
    let deadline = || warden::runtime::CallDeadline::fixed(Duration::from_secs(10));
    instance
        .online(deadline())
        .await
        .expect("online runs")
        .expect("online succeeds");
    let health = instance
        .is_alive(Duration::from_secs(5))
        .await
        .expect("is-alive");
    assert!(matches!(health, contract::Health::Healthy), "{health:?}");
    let record = instance
        .control("checkpoint", "", Duration::from_secs(5))
        .await
        .expect("control runs")
        .expect("the record");
    assert!(record.starts_with("online-at="), "{record}");

    // 0.2.0's network import, forwarded to the current one: without a grant
    // each call is refused, naming the grant the type lacks.
    let lookup = instance
        .control("lookup", "mail", Duration::from_secs(5))
        .await
        .expect("control runs")
        .expect_err("no DNS grant");
    assert!(lookup.contains("[plugins.legacy-network.dns]"), "{lookup}");
    let query = instance
        .control("query", "198.18.0.10/24 lo", Duration::from_secs(5))
        .await
        .expect("control runs")
        .expect_err("no address grant");
    assert!(query.contains("[plugins.legacy-network.ip]"), "{query}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_calls_keep_the_generation_rules_and_refuse_a_type_without_them() {
    let replica = load(REPLICA).await;
    assert_eq!(replica.contract(), contract::VERSION);
    assert!(replica.is_replicated());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut copy = plugin_instance(REPLICA, "db", dir.path().join("db").as_path(), &[]).await;
    let deadline = || warden::runtime::CallDeadline::fixed(Duration::from_secs(10));
    let timeout = Duration::from_secs(5);

    // A fresh copy follows generation 1 of n1, then is made active with 2.
    let source = contract::CopySource {
        node: Some("n1".to_string()),
        generation: 1,
    };
    copy.start_passive(source.clone(), deadline())
        .await
        .expect("start-passive runs")
        .expect("a fresh copy follows");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Passive),
        "{status:?}"
    );
    assert_eq!(status.generation, 1);
    let refused = copy
        .control("write", "m1", timeout)
        .await
        .expect("control runs")
        .expect_err("a passive copy takes no writes");
    assert!(refused.contains("takes no writes"), "{refused}");

    copy.activate(2, deadline())
        .await
        .expect("activate runs")
        .expect("generation 2 is newer");
    for (text, position) in [("m1", "1"), ("m2", "2")] {
        let written = copy
            .control("write", text, timeout)
            .await
            .expect("control runs")
            .expect("the active copy takes writes");
        assert_eq!(written, position);
    }
    let stale = copy
        .activate(2, deadline())
        .await
        .expect("activate runs")
        .expect_err("generation 2 again is not newer");
    assert!(stale.contains("not newer"), "{stale}");

    // Deposed by generation 3: no writes, and a source of generation 1 is
    // refused as older than what the copy knows.
    copy.deactivate(3, deadline())
        .await
        .expect("deactivate runs")
        .expect("3 replaces 2");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Deposed),
        "{status:?}"
    );
    assert_eq!(
        (status.generation, status.copied, status.replayed),
        (3, 2, 2)
    );
    let older = copy
        .start_passive(source, deadline())
        .await
        .expect("start-passive runs")
        .expect_err("generation 1 is older than 3");
    assert!(older.contains("older"), "{older}");

    // The copy's own failure text is the plugin's: cut and kept on one line.
    let reason = format!("failed {}", "disk full\n".repeat(5_000));
    copy.control("health", &reason, timeout)
        .await
        .expect("control runs")
        .expect("health set");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    let contract::CopyHealth::Failed(text) = status.health else {
        panic!("not failed: {status:?}");
    };
    assert!(
        text.len() <= 4 * 1024 + 8 && !text.contains('\n'),
        "{} bytes",
        text.len()
    );

    // A type without the export: refused before anything is called.
    let mut plain = chaos_instance("plain", dir.path().join("plain").as_path(), &[]).await;
    let err = plain
        .activate(1, deadline())
        .await
        .expect_err("chaos is not replicated");
    let text = err.to_string();
    assert!(
        text.contains("activate")
            && text.contains("chaos")
            && text.contains(contract::REPLICATION_EXPORT),
        "{text}"
    );
    assert_eq!(plain.generations(), 0, "nothing was instantiated");
}

/// The replication export is the plugin's code like any other: a copy call
/// that spins is cut off at its deadline and one that traps is reported
/// with the plugin's message; either way the sandbox is thrown away and the
/// next call runs on a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_call_that_hangs_or_traps_is_cut_off_and_the_next_runs_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut copy = plugin_instance(REPLICA, "db", dir.path(), &[]).await;
    let short = Duration::from_millis(500);

    copy.control("misbehave", "copy-status spin", short)
        .await
        .expect("control runs")
        .expect("set");
    let hung = copy
        .copy_status(short)
        .await
        .expect_err("a spinning copy-status");
    assert!(
        matches!(
            hung,
            warden::runtime::CallError::TimedOut {
                call: "copy-status",
                ..
            }
        ),
        "{hung:?}"
    );
    let before = copy.generations();
    copy.control("misbehave", "activate trap", short)
        .await
        .expect("control runs on a fresh instance")
        .expect("set");
    assert_eq!(
        copy.generations(),
        before + 1,
        "a new sandbox after the cut-off"
    );
    let trapped = copy
        .activate(1, warden::runtime::CallDeadline::fixed(short))
        .await
        .expect_err("a trapping activate");
    let text = trapped.to_string();
    assert!(
        text.contains("activate") && text.contains("deliberate trap in activate"),
        "{text}"
    );

    copy.control("misbehave", "", short)
        .await
        .expect("control runs")
        .expect("cleared");
    copy.activate(
        1,
        warden::runtime::CallDeadline::fixed(Duration::from_secs(5)),
    )
    .await
    .expect("activate runs")
    .expect("generation 1 on a fresh copy");
    let status = copy
        .copy_status(Duration::from_secs(5))
        .await
        .expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Active),
        "{status:?}"
    );
}

/// A replicated type built against the frozen 0.3.0: loaded on its own
/// bindings line, its `replication` export found under 0.3.0's name, each
/// copy call run with the values converted both ways, and its imports
/// (`host`, `process`, `checkpoint`, `network`) answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_type_built_against_0_3_0_runs_its_copy_calls() {
    let plugin = load(LEGACY_REPLICA).await;
    assert_eq!(plugin.name(), "legacy-replica");
    assert_eq!(plugin.contract(), version("0.3.0"));
    assert!(
        plugin.is_replicated(),
        "the 0.3.0 replication export was not found"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut copy = plugin_instance(LEGACY_REPLICA, "old", dir.path(), &[]).await;
    let deadline = || warden::runtime::CallDeadline::fixed(Duration::from_secs(10));
    let timeout = Duration::from_secs(5);

    let source = contract::CopySource {
        node: Some("n2".to_string()),
        generation: 4,
    };
    copy.start_passive(source.clone(), deadline())
        .await
        .expect("start-passive runs")
        .expect("a fresh copy follows");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Passive),
        "{status:?}"
    );
    assert_eq!(
        (
            status.generation,
            status.copied,
            status.replayed,
            status.lag
        ),
        (4, 7, 5, 2)
    );
    assert!(
        matches!(&status.health, contract::CopyHealth::Diverged(why) if why == "a 0.3.0 copy's own words"),
        "{status:?}"
    );
    let record = copy
        .control("checkpoint", "", timeout)
        .await
        .expect("control runs")
        .expect("the record");
    assert!(record.contains("source=n2"), "{record}");

    let stale = copy
        .activate(4, deadline())
        .await
        .expect("activate runs")
        .expect_err("generation 4 is not newer");
    assert!(stale.contains("not newer"), "{stale}");
    copy.activate(5, deadline())
        .await
        .expect("activate runs")
        .expect("generation 5 is newer");
    copy.deactivate(6, deadline())
        .await
        .expect("deactivate runs")
        .expect("6 replaces 5");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Deposed),
        "{status:?}"
    );
    assert_eq!(status.generation, 6);
    let older = copy
        .start_passive(source, deadline())
        .await
        .expect("start-passive runs")
        .expect_err("generation 4 is older than 6");
    assert!(older.contains("older"), "{older}");
    copy.stop_passive(deadline())
        .await
        .expect("stop-passive runs")
        .expect("stopped");

    let state = copy
        .control("state", "", timeout)
        .await
        .expect("control runs")
        .expect("the process state");
    assert_eq!(state, "not-started");
    copy.control("now", "", timeout)
        .await
        .expect("control runs")
        .expect("the clock")
        .parse::<u64>()
        .expect("milliseconds");
    let lookup = copy
        .control("lookup", "mail", timeout)
        .await
        .expect("control runs")
        .expect_err("no DNS grant");
    assert!(lookup.contains("[plugins.legacy-replica.dns]"), "{lookup}");
}

/// A replicated type built against the frozen 0.4.0: its `replication`
/// export found under 0.4.0's name and called, and its `probe` import
/// (connect, exchange-line, http-get) answered within its grant, a
/// refusal and a failure in 0.4.0's error cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_built_against_0_4_0_runs_its_copy_calls_and_probes() {
    use std::io::{Read, Write};

    let plugin = load(LEGACY_PROBER).await;
    assert_eq!(plugin.name(), "legacy-prober");
    assert_eq!(plugin.contract(), version("0.4.0"));
    assert!(
        plugin.is_replicated(),
        "the 0.4.0 replication export was not found"
    );
    // Answers a line with `+PONG`, an HTTP request with 200.
    let server = tcp_server(|mut stream| {
        let mut asked = [0u8; 1024];
        let Ok(read) = stream.read(&mut asked) else {
            return;
        };
        let answer: &[u8] = if asked[..read].starts_with(b"GET ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        } else {
            b"+PONG\r\n"
        };
        let _ = stream.write_all(answer);
    })
    .to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut copy = configured_instance(
        LEGACY_PROBER,
        "old",
        &dir.path().join("granted"),
        &[("address", server.as_str())],
    )
    .await;
    let deadline = || warden::runtime::CallDeadline::fixed(Duration::from_secs(10));
    let timeout = Duration::from_secs(5);
    copy.start_passive(
        contract::CopySource {
            node: Some("n2".to_string()),
            generation: 2,
        },
        deadline(),
    )
    .await
    .expect("start-passive runs")
    .expect("a fresh copy follows");
    copy.activate(3, deadline())
        .await
        .expect("activate runs")
        .expect("generation 3 is newer");
    let status = copy.copy_status(timeout).await.expect("copy-status runs");
    assert!(
        matches!(status.role, contract::CopyRole::Active) && status.generation == 3,
        "{status:?}"
    );
    assert!(
        matches!(&status.health, contract::CopyHealth::Diverged(why) if why == "a 0.4.0 copy's own words"),
        "{status:?}"
    );

    let control = |code: &'static str, payload: &'static str| (code, payload);
    for (code, payload) in [control("connect", ""), control("line", "PING\t+PONG")] {
        let answer = copy
            .control(code, payload, timeout)
            .await
            .expect("control runs");
        assert!(
            answer.as_deref().is_ok_and(|a| a.starts_with("ok")),
            "{code}: {answer:?}"
        );
    }
    let answer = copy
        .control("http", "/", timeout)
        .await
        .expect("control runs");
    assert_eq!(answer.as_deref(), Ok("ok 200"));
    let answer = copy
        .control("http", "/a\r\nX: y", timeout)
        .await
        .expect("control runs");
    assert!(
        answer
            .as_ref()
            .is_err_and(|why| why.starts_with("invalid: ")),
        "{answer:?}"
    );

    // Granted, but nothing listens there: 0.4.0's `connect` case.
    let mut ungranted = configured_instance(
        LEGACY_PROBER,
        "old",
        &dir.path().join("ungranted"),
        &[("address", "127.0.0.1:9")],
    )
    .await;
    let answer = ungranted
        .control("connect", "", timeout)
        .await
        .expect("control runs");
    assert!(
        answer
            .as_ref()
            .is_err_and(|why| why.starts_with("connect: ")),
        "port 9 takes no connection: {answer:?}"
    );
}
