//! The built-in `http-instance` type's check, which is the agent's
//! `probe.http-check` (contract 0.5.0) and nothing else: against Debian's
//! nginx, any 2xx is healthy (200 and 204) and any other status fails
//! naming it, with the connection kept between checks or not;
//! `host-header` reaches the server, and one that would inject a line is
//! refused when the resource opens; a kept connection is replaced by a new
//! one every tenth check, and when the server closed it; and against
//! servers of the test's own, a dead port, a silent server (cut at the
//! answer timeout, and at the call's deadline when that comes first), an
//! answer that is not HTTP, and endless headers all fail the check without
//! harming the next one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use warden::contract::Health;
use warden::runtime::{CallError, Instance};

use crate::common::process::Stopped;
use crate::common::*;

const HTTP_INSTANCE: &str = env!("WARDEN_PLUGIN_HTTP_INSTANCE");

/// An `http-instance` resource with `props` (no program: it only checks).
async fn http_instance(dir: &Path, props: &[(&str, &str)]) -> Instance {
    configured_instance(HTTP_INSTANCE, "web", dir, props).await
}

/// An `http-instance` checking `path` of `address`, its connection kept
/// (`reuse` "true") or not, in a directory of its own under `dir`.
async fn web_at(dir: &Path, address: &str, path: &str, reuse: &str) -> Instance {
    http_instance(
        &dir.join(format!("{reuse}{}", &path[1..])),
        &[
            ("address", address),
            ("path", path),
            ("reuse-connection", reuse),
        ],
    )
    .await
}

/// is-alive within `timeout`, which must not be cut off.
async fn is_alive(instance: &mut Instance, timeout: Duration) -> Health {
    instance
        .is_alive(timeout)
        .await
        .unwrap_or_else(|e| panic!("is-alive was cut off or trapped: {e}"))
}

/// The reason of a check that must fail.
async fn failed(instance: &mut Instance, timeout: Duration) -> String {
    match is_alive(instance, timeout).await {
        Health::Failed(why) => why,
        Health::Healthy => panic!("the check passed"),
    }
}

/// nginx on 127.0.0.1: `/` 200, `/empty` 204, `/broken` 503, `/moved` 301,
/// `/named` 200 only for `Host: mail.example` (404 otherwise). Stopped
/// with SIGTERM when dropped.
fn nginx(dir: &Path) -> (Stopped, String) {
    std::fs::create_dir_all(dir).expect("nginx dir");
    let address = free_address();
    let conf = nginx::nginx_config_with(
        dir,
        &[&address],
        r#"location = / { return 200 "ok\n"; }
        location = /empty { return 204; }
        location = /broken { return 503; }
        location = /moved { return 301 /elsewhere; }
        location = /named {
            if ($host = "mail.example") { return 200 "named\n"; }
            return 404;
        }"#,
    );
    let child = nginx::spawn(dir, &conf);
    let nginx = Stopped(child);
    wait_until("nginx listens", Duration::from_secs(10), || {
        TcpStream::connect(&address).ok()
    });
    (nginx, address)
}

/// A server of the test's own on 127.0.0.1 (`common::tcp_server`).
fn server(serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> String {
    crate::common::tcp_server(serve).to_string()
}

/// Read what the client sent until its request's blank line (or 64 KiB);
/// whether it came whole.
fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        if seen.len() >= 64 * 1024 {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(_) => seen.push(buf[0]),
        }
    }
    true
}

const CHECK: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_2xx_is_healthy_and_any_other_status_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nginx, address) = nginx(&dir.path().join("nginx"));
    for reuse in ["true", "false"] {
        for path in ["/", "/empty"] {
            let mut web = web_at(dir.path(), &address, path, reuse).await;
            for _ in 0..3 {
                let health = is_alive(&mut web, CHECK).await;
                assert!(matches!(health, Health::Healthy), "{path}: {health:?}");
            }
        }
        for (path, status) in [("/broken", "503"), ("/moved", "301"), ("/missing", "404")] {
            let mut web = web_at(dir.path(), &address, path, reuse).await;
            for _ in 0..2 {
                let why = failed(&mut web, CHECK).await;
                assert!(
                    why.starts_with("unexpected answer: ")
                        && why.contains(&format!("answered \"HTTP/1.1 {status}"))
                        && why.contains("expected a 2xx status"),
                    "{path}: {why}"
                );
            }
        }
    }
}

/// Connections a server of the test's own accepted and requests it
/// answered (`HTTP/1.1 200` with a length, the connection kept open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_is_renewed_every_tenth_check_and_when_the_server_closed_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().expect("tempdir");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let address = server(move |mut stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        // Up to three answers on a connection, then a silent close.
        for _ in 0..3 {
            if !read_request(&mut stream)
                || stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
            {
                return;
            }
        }
    });
    let mut web = http_instance(&dir.path().join("kept"), &[("address", &address)]).await;
    for check in 1..=20 {
        let health = is_alive(&mut web, CHECK).await;
        assert!(
            matches!(health, Health::Healthy),
            "check {check}: {health:?}"
        );
    }
    // Checks 1 and 11 open their own connection (closed after the answer:
    // `Connection: close`); 2-10 and 12-20 share kept ones, three checks
    // each before the server closes it: 2 + 3 + 3 + 3 + 3 + 3 + 3 (and
    // none more: a close is noticed and replaced within the check).
    assert_eq!(connections.load(Ordering::SeqCst), 8);

    let mut fresh = http_instance(
        &dir.path().join("fresh"),
        &[("address", &address), ("reuse-connection", "false")],
    )
    .await;
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..4 {
        let health = is_alive(&mut fresh, CHECK).await;
        assert!(matches!(health, Health::Healthy), "{health:?}");
    }
    assert_eq!(connections.load(Ordering::SeqCst) - before, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_reaches_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nginx, address) = nginx(&dir.path().join("nginx"));
    let mut named = http_instance(
        &dir.path().join("named"),
        &[
            ("address", &address),
            ("path", "/named"),
            ("host-header", "mail.example"),
        ],
    )
    .await;
    let health = is_alive(&mut named, CHECK).await;
    assert!(matches!(health, Health::Healthy), "{health:?}");
    let mut unnamed = http_instance(
        &dir.path().join("unnamed"),
        &[("address", &address), ("path", "/named")],
    )
    .await;
    let why = failed(&mut unnamed, CHECK).await;
    assert!(why.contains("404"), "{why}");

    // A line end or a space: refused when the resource is validated.
    let plugin = load(HTTP_INSTANCE).await;
    for bad in ["mail.example\r\nX-Injected: yes", "mail example"] {
        let refused = plugin
            .validate(&[
                ("address".to_string(), address.clone()),
                ("host-header".to_string(), bad.to_string()),
            ])
            .await
            .expect("validate runs")
            .expect_err("refused");
        assert_eq!(refused.property, "host-header", "{bad:?}");
    }
    // Anything else that is no host: the agent's check refuses it.
    let mut odd = http_instance(
        &dir.path().join("odd"),
        &[
            ("address", &address),
            ("path", "/named"),
            ("host-header", "user@mail.example"),
        ],
    )
    .await;
    let why = failed(&mut odd, CHECK).await;
    assert!(why.starts_with("invalid: the host header"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_port_fails_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bound, then closed: nothing listens there.
    let address = free_address();
    let mut web = http_instance(dir.path(), &[("address", &address), ("path", "/")]).await;
    let why = failed(&mut web, CHECK).await;
    assert!(why.starts_with("cannot connect:"), "{why}");
    assert!(why.contains(&address), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_cut_at_the_answer_timeout_and_at_the_calls_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepts, reads the request, never answers (and holds the connection).
    let address = server(|mut stream| {
        read_request(&mut stream);
        std::thread::sleep(Duration::from_secs(120));
    });
    let mut web = http_instance(
        &dir.path().join("short"),
        &[
            ("address", &address),
            ("path", "/"),
            ("answer-timeout-ms", "300"),
        ],
    )
    .await;
    let started = Instant::now();
    let why = failed(&mut web, CHECK).await;
    assert!(why.starts_with("timed out:"), "{why}");
    assert!(why.contains("300 ms"), "{why}");
    assert!(started.elapsed() < CHECK, "took {:?}", started.elapsed());

    // An answer timeout longer than the call's: the check still answers,
    // before the agent has to cut the call off.
    let mut web = http_instance(
        &dir.path().join("long"),
        &[
            ("address", &address),
            ("path", "/"),
            ("answer-timeout-ms", "600000"),
        ],
    )
    .await;
    let why = failed(&mut web, Duration::from_millis(1500)).await;
    assert!(why.starts_with("timed out:"), "{why}");
    assert!(why.contains("calling export's deadline"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_http_fails_and_endless_headers_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = server(|mut stream| {
        read_request(&mut stream);
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let mut web = http_instance(
        &dir.path().join("garbage"),
        &[("address", &garbage), ("path", "/")],
    )
    .await;
    let why = failed(&mut web, CHECK).await;
    assert!(
        why.starts_with("unexpected answer: ") && why.contains("did not answer HTTP/1.x"),
        "{why}"
    );

    // A status line, then headers without end, as fast as the client reads.
    let endless = server(|mut stream| {
        read_request(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
        let header = b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        while stream.write_all(header).is_ok() {}
    });
    let mut web = http_instance(
        &dir.path().join("endless"),
        &[
            ("address", &endless),
            ("path", "/"),
            ("answer-timeout-ms", "500"),
        ],
    )
    .await;
    // Healthy never: the agent's check refuses headers past 16 KiB.
    match web.is_alive(Duration::from_secs(2)).await {
        Ok(Health::Healthy) => panic!("endless headers passed the check"),
        Ok(Health::Failed(_)) | Err(CallError::TimedOut { .. }) => {}
        Err(other) => panic!("endless headers: {other}"),
    }
    // The resource's next check starts afresh and is cut off the same way.
    assert!(!matches!(
        web.is_alive(Duration::from_secs(2)).await,
        Ok(Health::Healthy)
    ));
}
