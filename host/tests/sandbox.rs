//! The sandbox of a resource, probed from inside by the `chaos` plugin:
//! it sees its data directory as /data and no other file; it connects only
//! to the addresses its properties name, and the log says what was denied;
//! its checkpoint survives a new instance and a restart of the agent. A
//! neighbour stays Online throughout. (A program that is not allowed is
//! refused: see `all/loading.rs`.)
//!
//! A binary of its own, not a module of `tests/all`: to read what the agent
//! logs it installs the process's global tracing subscriber, which would
//! take every other test's log too (theirs in its buffer, and a denial
//! another test provoked could satisfy a check here).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use warden::monitor::{Monitor, ResourceHandle, ResourceState, SpecError};
use warden::runtime::{CHECKPOINT_FILE, Instance};

/// Everything the agent logs in this test binary, to check what a denial
/// says.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
        buffer
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

/// A chaos resource online with its own data directory.
async fn probe_resource(
    monitor: &mut Monitor,
    name: &str,
    props: &[(&str, &str)],
) -> (ResourceHandle, std::path::PathBuf) {
    let dir = data_dir();
    let mut spec = spec(name, props);
    spec.dirs = dirs_at(&dir);
    let handle = monitor
        .add(load(CHAOS).await, spec)
        .await
        .expect("valid spec");
    handle.online().expect("actor");
    wait_state(&handle, ResourceState::Online, ms(10_000)).await;
    (handle, dir)
}

async fn ask(handle: &ResourceHandle, code: &str, payload: &str) -> Result<String, String> {
    handle.control(code, payload).await.expect("actor runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_sees_its_data_directory_and_nothing_else() {
    log();
    let mut monitor = Monitor::default();
    let neighbour = online_chaos(&mut monitor, "neighbour", &[]).await;
    let (handle, dir) = probe_resource(&mut monitor, "files", &[]).await;

    let wrote = ask(&handle, "write-file", "/data/note.txt\nhello").await;
    assert_eq!(wrote, Ok("wrote 5 bytes".to_string()));
    assert_eq!(
        std::fs::read_to_string(dir.join("note.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        ask(&handle, "read-file", "/data/note.txt").await,
        Ok("hello".to_string())
    );

    // A file next to the data directory, by every route: the host path,
    // a path that climbs out of /data, a system file.
    let outside = dir
        .parent()
        .unwrap()
        .join(format!("secret-{}", std::process::id()));
    std::fs::write(&outside, "secret").unwrap();
    let name = outside.file_name().unwrap().to_str().unwrap();
    for path in [
        outside.to_str().unwrap().to_string(),
        format!("/data/../{name}"),
        "/etc/passwd".to_string(),
        format!("{}/note.txt", dir.display()),
    ] {
        let got = ask(&handle, "read-file", &path).await;
        let err = got.expect_err(&format!("{path} must not be readable"));
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
    }
    let err = ask(&handle, "write-file", "/tmp/escape\nx")
        .await
        .unwrap_err();
    assert!(err.starts_with("/tmp/escape: "), "{err}");
    let _ = std::fs::remove_file(outside);

    assert_eq!(handle.status().state, ResourceState::Online);
    assert_eq!(neighbour.status().state, ResourceState::Online);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_connects_only_to_the_addresses_its_properties_name() {
    log();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_addr = allowed.local_addr().unwrap().to_string();
    let other_addr = other.local_addr().unwrap().to_string();

    let mut monitor = Monitor::default();
    let neighbour = online_chaos(&mut monitor, "net-neighbour", &[]).await;
    let (handle, _) =
        probe_resource(&mut monitor, "net", &[("allow-connect", &allowed_addr)]).await;

    assert_eq!(
        ask(&handle, "connect", &allowed_addr).await,
        Ok(format!("connected to {allowed_addr}"))
    );
    let err = ask(&handle, "connect", &other_addr).await.unwrap_err();
    assert!(err.contains(&other_addr), "{err}");
    let log = logged();
    assert!(
        log.lines().any(|l| l.contains(&format!(
            "denied: resource net may not connect to {other_addr} (it may connect to: \
             {allowed_addr} (allow-connect={allowed_addr}))"
        ))),
        "no denial naming the resource, the address and what is allowed in:\n{log}"
    );

    // Without an address property there is no network at all.
    let (closed, _) = probe_resource(&mut monitor, "no-net", &[]).await;
    assert!(ask(&closed, "connect", &allowed_addr).await.is_err());
    // And names are not looked up by the plugin.
    let err = ask(&handle, "connect", "example.com:80").await.unwrap_err();
    assert!(err.contains("cannot look names up"), "{err}");

    assert_eq!(handle.status().state, ResourceState::Online);
    assert_eq!(neighbour.status().state, ResourceState::Online);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_address_is_refused_before_anything_starts() {
    let mut monitor = Monitor::default();
    let err = monitor
        .add(
            load(CHAOS).await,
            spec("bad-addr", &[("allow-connect", "localhost")]),
        )
        .await
        .expect_err("no port");
    assert!(
        matches!(&err, SpecError::BadValue { property, .. } if property == "allow-connect"),
        "{err}"
    );
    assert!(err.to_string().contains("address (host:port)"), "{err}");
}

async fn control(instance: &mut Instance, code: &str, payload: &str) -> Result<String, String> {
    instance
        .control(code, payload, ms(5000))
        .await
        .map_err(|e| e.to_string())
        .and_then(|answer| answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_survive_a_new_instance_and_an_agent_restart() {
    let dir = data_dir();
    let mut first = chaos_instance("kept", &dir, &[]).await;
    assert_eq!(
        control(&mut first, "checkpoint-get", "db").await.as_deref(),
        Ok("(none)")
    );
    control(&mut first, "checkpoint-set", "db=mounted")
        .await
        .unwrap();
    control(&mut first, "checkpoint-set", "gen=7")
        .await
        .unwrap();
    control(&mut first, "checkpoint-delete", "gen")
        .await
        .unwrap();

    // A trap throws the instance away; the next one finds the record.
    let err = control(&mut first, "trap", "").await.unwrap_err();
    assert!(err.contains("deliberate trap"), "{err}");
    assert_eq!(
        control(&mut first, "checkpoint-get", "db").await.as_deref(),
        Ok("mounted")
    );
    assert_eq!(first.generations(), 2);

    // Too big: refused with the cap in the reason, and nothing changes.
    let huge = format!("blob={}", "x".repeat(70_000));
    let err = control(&mut first, "checkpoint-set", &huge)
        .await
        .unwrap_err();
    assert!(err.contains("over its cap of 65536 bytes"), "{err}");
    drop(first);

    // A new context and instance over the same directory: the agent after
    // a restart.
    // Kept in the agent's private directory, out of the plugin's reach.
    assert!(dirs_at(&dir).private.join(CHECKPOINT_FILE).exists());
    assert!(!dir.join(CHECKPOINT_FILE).exists());
    let mut second = chaos_instance("kept", &dir, &[]).await;
    assert_eq!(
        control(&mut second, "checkpoint-list", "").await.as_deref(),
        Ok("db=mounted")
    );
}
