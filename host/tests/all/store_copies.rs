//! The built-in `store` type's copies (contract 0.3.0's `replication`
//! export) against the real mail store: two copies of one store, each in a
//! node's own data directory with its own `mail-store` process, driven
//! through the agent's runtime as the agent will drive them (activate,
//! start a passive copy, copy status, deactivate). Messages written to the
//! active copy are on the passive one; after a kill -9 of the active copy's
//! service the passive is activated with a newer generation and serves
//! every acknowledged message; the old copy comes back as a passive one
//! following the new active; a deposed copy takes no writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use tokio::sync::{mpsc, watch};
use warden::contract::{CopyHealth, CopyRole, CopySource, CopyState};
use warden::runtime::{CallDeadline, Grants, Instance, InstanceConfig, ResourceContext};

const MESSAGES: usize = 40;

fn store_wasm() -> String {
    format!("{}/store.wasm", env!("WARDEN_PLUGIN_DIR"))
}

/// The copy of the store on one node: its sandbox, client address and
/// replication address.
struct Copy {
    instance: Instance,
    address: String,
}

async fn copy(
    node: &str,
    root: &Path,
    address: &str,
    listen: &str,
    from: &str,
    extra: &[(&str, &str)],
) -> Copy {
    let program = mail_services().join("mail-store");
    let (exits, _) = mpsc::unbounded_channel();
    let plugin = load(&store_wasm()).await;
    let dirs = dirs_at(&root.join(node));
    dirs.create().expect("resource directories");
    let mut properties = vec![
        ("program".to_string(), program.display().to_string()),
        ("address".to_string(), address.to_string()),
        ("replication-listen".to_string(), listen.to_string()),
        ("replicate-from".to_string(), from.to_string()),
    ];
    properties.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    // As the agent grants it: the program, and connections to the
    // addresses the operator configured (the store's client port).
    let grants = Grants {
        allow_programs: vec![program.clone()],
        configured: properties.clone(),
        ..Grants::default()
    };
    let context = ResourceContext::new("store", "store", grants, dirs, exits);
    let (_cancel, cancel) = watch::channel(0);
    Copy {
        instance: Instance::new(
            plugin,
            context,
            properties,
            InstanceConfig::default(),
            cancel,
        ),
        address: address.to_string(),
    }
}

fn deadline() -> CallDeadline {
    CallDeadline::fixed(Duration::from_secs(20))
}

fn source(node: &str, generation: u64) -> CopySource {
    CopySource {
        node: Some(node.to_string()),
        generation,
    }
}

async fn status(copy: &mut Copy) -> CopyState {
    copy.instance
        .copy_status(Duration::from_secs(5))
        .await
        .expect("copy-status runs")
}

/// `PUT mailbox` with `body` on the store's client port: its one-line answer.
fn put(address: &str, mailbox: &str, body: &str) -> String {
    let stream = TcpStream::connect(address).expect("connect to the store");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    write!(writer, "PUT {mailbox} {}\n{body}", body.len()).expect("send PUT");
    let mut line = String::new();
    reader.read_line(&mut line).expect("answer");
    line.trim_end().to_string()
}

/// The bodies of `mailbox` on the store at `address`.
fn bodies(address: &str, mailbox: &str) -> Vec<String> {
    let stream = TcpStream::connect(address).expect("connect to the store");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    writeln!(writer, "GET {mailbox}").expect("send GET");
    let mut line = String::new();
    reader.read_line(&mut line).expect("MSGS line");
    let count: usize = line
        .trim_end()
        .strip_prefix("MSGS ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a MSGS line: {line:?}"));
    (0..count)
        .map(|_| {
            let mut header = String::new();
            reader.read_line(&mut header).expect("message header");
            let len: usize = header
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a message header: {header:?}"));
            let mut body = vec![0; len + 1];
            reader.read_exact(&mut body).expect("message body");
            body.pop();
            String::from_utf8(body).expect("utf-8 body")
        })
        .collect()
}

async fn wait_for(copy: &mut Copy, what: &str, done: impl Fn(&CopyState) -> bool) -> CopyState {
    let mut last = None;
    for _ in 0..200 {
        let state = status(copy).await;
        if done(&state) {
            return state;
        }
        last = Some(state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s; last status {last:?}");
}

fn kill_service(pid: &str) {
    let killed = std::process::Command::new("kill")
        .args(["-9", pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "no process {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_copy_takes_over_with_every_acknowledged_message() {
    let root = tempfile::tempdir().expect("tempdir");
    let [store_1, store_2, listen_1, listen_2] = service_ports::<4>().map(|a| a.to_string());
    let mut n1 = copy("n1", root.path(), &store_1, &listen_1, &listen_2, &[]).await;
    let mut n2 = copy("n2", root.path(), &store_2, &listen_2, &listen_1, &[]).await;

    // n1 is activated with generation 1 from nothing; n2 follows it.
    n1.instance
        .activate(1, deadline())
        .await
        .expect("activate runs")
        .expect("n1 becomes the active copy");
    n2.instance
        .start_passive(source("n1", 1), deadline())
        .await
        .expect("start-passive runs")
        .expect("n2 follows n1");
    wait_for(&mut n1, "a passive copy connected", |s| {
        matches!(s.role, CopyRole::Active) && matches!(s.health, CopyHealth::Healthy)
    })
    .await;

    // Sync mode: every OK is on both disks.
    for i in 0..MESSAGES {
        let answer = put(&n1.address, "alice", &format!("message {i}"));
        assert!(answer.starts_with("OK "), "message {i}: {answer}");
    }
    let passive = wait_for(&mut n2, "the passive copy caught up", |s| {
        s.replayed == MESSAGES as u64 && s.lag == 0
    })
    .await;
    assert!(matches!(passive.role, CopyRole::Passive), "{passive:?}");
    assert_eq!((passive.generation, passive.copied), (1, MESSAGES as u64));
    let refused = put(&n2.address, "alice", "to the passive");
    assert!(refused.starts_with("UNAVAILABLE"), "{refused}");

    // kill -9 of the active copy's service; n2 is activated with 2.
    let pid = n1
        .instance
        .control("pid", "", Duration::from_secs(5))
        .await
        .expect("control runs")
        .expect("the store's pid");
    kill_service(&pid);
    n2.instance
        .activate(2, deadline())
        .await
        .expect("activate runs")
        .expect("n2 becomes the active copy");
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    assert_eq!(bodies(&n2.address, "alice"), expected);
    // Asked again (a call cut off after the store answered): still fine.
    n2.instance
        .activate(2, deadline())
        .await
        .expect("activate runs")
        .expect("activating the active copy at its own generation again is not an error");
    let answer = put(&n2.address, "alice", "after the failover");
    // Sync, and no passive yet: refused rather than acknowledged on one disk.
    assert!(answer.starts_with("UNAVAILABLE"), "{answer}");

    // n1 comes back as a passive copy following n2 and catches up; the
    // write that waited for a passive copy goes through.
    n1.instance
        .start_passive(source("n2", 2), deadline())
        .await
        .expect("start-passive runs")
        .expect("n1 follows n2");
    wait_for(&mut n2, "n1 connected to n2", |s| {
        matches!(s.health, CopyHealth::Healthy)
    })
    .await;
    let answer = put(&n2.address, "alice", "with a passive again");
    assert!(answer.starts_with("OK "), "{answer}");
    let back = wait_for(&mut n1, "n1 caught up with n2", |s| {
        s.lag == 0 && s.replayed == s.copied && s.copied > MESSAGES as u64
    })
    .await;
    assert!(matches!(back.role, CopyRole::Passive), "{back:?}");
    assert_eq!(back.generation, 2);

    // A newer generation elsewhere deposes n2: no more writes there.
    n2.instance
        .deactivate(3, deadline())
        .await
        .expect("deactivate runs")
        .expect("n2 steps down");
    let deposed = status(&mut n2).await;
    assert!(matches!(deposed.role, CopyRole::Deposed), "{deposed:?}");
    let refused = put(&n2.address, "alice", "to a deposed copy");
    assert!(refused.starts_with("UNAVAILABLE"), "{refused}");
    // And activating it again at an older generation than it knows fails.
    let stale = n2
        .instance
        .activate(2, deadline())
        .await
        .expect("activate runs")
        .expect_err("generation 2 is not newer than 3");
    assert!(stale.contains("not newer"), "{stale}");

    for node in [&mut n1, &mut n2] {
        node.instance
            .stop_passive(deadline())
            .await
            .expect("stop-passive runs")
            .expect("the service stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_settings_are_checked_and_a_store_without_copies_refuses_copy_calls() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugin = load(&store_wasm()).await;
    let props = |extra: &[(&str, &str)]| {
        let mut props = vec![
            ("program".to_string(), "/usr/bin/mail-store".to_string()),
            ("address".to_string(), "127.0.0.1:7000".to_string()),
        ];
        props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        props
    };
    for (extra, property, words) in [
        (
            vec![("replication-listen", "127.0.0.1:7100")],
            "replicate-from",
            "go together",
        ),
        (
            vec![("sync-mode", "eventually")],
            "sync-mode",
            "neither sync nor async",
        ),
        (
            vec![("max-async-lag", "10")],
            "max-async-lag",
            "only an async store",
        ),
        (
            vec![("sync-mode", "async"), ("max-async-lag", "0")],
            "max-async-lag",
            "above 0",
        ),
    ] {
        let refused = plugin
            .validate(&props(&extra))
            .await
            .expect("validate runs")
            .expect_err("refused");
        assert_eq!(refused.property, property, "{extra:?}");
        assert!(
            refused.reason.contains(words),
            "{extra:?}: {}",
            refused.reason
        );
    }

    let [address] = service_ports::<1>().map(|a| a.to_string());
    let mut plain = copy("plain", root.path(), &address, "", "", &[]).await;
    let refused = plain
        .instance
        .activate(1, deadline())
        .await
        .expect("activate runs")
        .expect_err("no copies configured");
    assert!(refused.contains("has no copies"), "{refused}");
    let state = status(&mut plain).await;
    assert!(matches!(state.role, CopyRole::None), "{state:?}");
    assert!(matches!(state.health, CopyHealth::Failed(_)), "{state:?}");
}
