//! The built-in Exchange types against the real mail services
//! (examples/mail-services): a virtual server's resources come online in
//! dependency order (Store first), a message sent over SMTP is readable
//! over HTTP and found by the search, and a kill -9 of each service is
//! detected through the exit event (the checks are 60 s apart) and the
//! service comes back with every acknowledged message.
//!
//! The services are built by cargo (`cargo build -p warden-mail-services`)
//! if they are not next to this test's binary already.

use crate::common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::common::mail_client::{ask, http_get};
use crate::common::*;
use warden::monitor::{Monitor, ResourceHandle, ResourceSpec, ResourceState, TimingOverrides};
use warden::runtime::Grants;

/// A resource of a built-in type running `program`, with checks far apart
/// so that a failure seen quickly can only come from the exit event.
fn service_spec(name: &str, program: &Path, props: &[(&str, &str)]) -> ResourceSpec {
    let mut properties: Vec<(String, String)> =
        vec![("program".to_string(), program.display().to_string())];
    properties.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ResourceSpec {
        name: name.to_string(),
        type_name: String::new(),
        properties,
        timing: TimingOverrides {
            pending_timeout: Some(ms(20_000)),
            looks_alive_interval: Some(ms(60_000)),
            is_alive_interval: Some(ms(60_000)),
            check_timeout: Some(ms(5_000)),
            terminate_timeout: Some(ms(5_000)),
        },
        memory_limit: None,
        dirs: dirs_at(&data_dir()),
        grants: Grants {
            allow_programs: vec![program.to_path_buf()],
            ..Grants::default()
        },
    }
}

async fn builtin(name: &str) -> std::sync::Arc<warden::runtime::Plugin> {
    load(&format!("{}/{name}.wasm", env!("WARDEN_PLUGIN_DIR"))).await
}

async fn online(handle: &ResourceHandle) {
    handle.online().expect("actor");
    wait_state(handle, ResourceState::Online, ms(30_000)).await;
}

fn smtp_send(address: &str, mailbox: &str, text: &str) {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    for (line, code) in [
        ("EHLO test".to_string(), "250"),
        ("MAIL FROM:<test@example.com>".to_string(), "250"),
        (format!("RCPT TO:<{mailbox}@example.com>"), "250"),
        ("DATA".to_string(), "354"),
        (format!("Subject: test\r\n\r\n{text}\r\n."), "250"),
        ("QUIT".to_string(), "221"),
    ] {
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        expect(code);
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(ms(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_stores_indexes_serves_and_survives_kill_9() {
    let bin = common::mail_services();
    let (store_at, smtp_at, http_at, search_at) = (
        free_address(),
        free_address(),
        free_address(),
        free_address(),
    );
    let mut monitor = Monitor::default();
    let store = monitor
        .add(
            builtin("store").await,
            service_spec("store", &bin.join("mail-store"), &[("address", &store_at)]),
        )
        .await
        .expect("store spec");
    // Dependency order: the Store first, then what uses it.
    online(&store).await;
    let mut dependents = Vec::new();
    for (name, plugin, program, address, extra) in [
        ("smtp", "smtp_instance", "mail-smtp", &smtp_at, None),
        ("http", "http_instance", "mail-http", &http_at, None),
        (
            "search",
            "ms_search",
            "mail-indexer",
            &search_at,
            Some("--store {store} --data . --listen {address} --poll-ms 50"),
        ),
    ] {
        let mut props = vec![("address", address.as_str()), ("store", store_at.as_str())];
        if let Some(args) = extra {
            props.push(("args", args));
        }
        let spec = service_spec(name, &bin.join(program), &props);
        let handle = monitor
            .add(builtin(plugin).await, spec)
            .await
            .expect("spec");
        online(&handle).await;
        dependents.push(handle);
    }

    smtp_send(&smtp_at, "alice", "warden zebra crossing");
    let mailbox = http_get(&http_at, "/mailbox/alice").expect("the HTTP service answers");
    assert!(
        mailbox.starts_with("HTTP/1.1 200") && mailbox.contains("zebra"),
        "{mailbox}"
    );
    eventually("the search finding the message", || {
        ask(&search_at, "SEARCH zebra").starts_with("HITS 1")
    })
    .await;

    // kill -9 of each service: Failed at once (checks are 60 s apart), and
    // back online with the message still there.
    for handle in std::iter::once(&store).chain(&dependents) {
        let pid: i32 = handle
            .control("pid", "")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        let killed = std::time::Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        wait_state(handle, ResourceState::Failed, ms(3_000)).await;
        assert!(
            killed.elapsed() < ms(3_000),
            "{}: seen after {:?}",
            handle.name(),
            killed.elapsed()
        );
        online(handle).await;
    }
    let mailbox = http_get(&http_at, "/mailbox/alice").expect("the HTTP service answers");
    assert!(
        mailbox.contains("zebra"),
        "lost after the store's kill -9: {mailbox}"
    );
    assert!(
        ask(&store_at, "STATUS").contains("clean=false"),
        "the store recovered"
    );
    monitor.shutdown().await;
}
