//! Contract 0.5.0's `probe.http-check`, driven by `plugins/prober` (through
//! `warden_sdk::probe::http_check`) against real nginx and against hostile
//! servers of the test's own: a kept connection is reused (nginx counts one
//! connection for many checks) and a fresh one opened per check without
//! reuse; a status class passes 204 and fails 503 naming both; a kept
//! connection the server closed between checks, or closed on the next
//! request without answering, is replaced and the check passes; chunked,
//! unknown-length and huge bodies pass without the connection being kept;
//! a server that stops answering on the kept connection is `timed out`,
//! and the next check opens a new one; a host header that would inject a
//! line, or is no host, is invalid and nothing is sent; the host header
//! given is the one sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use warden::runtime::Instance;

use crate::common::http_server::{http_server, ok_with_length};
use crate::common::process::Stopped;
use crate::common::*;

const PROBER: &str = env!("WARDEN_PLUGIN_PROBER");

/// A `prober` resource granted `address`.
async fn prober(dir: &Path, address: &str) -> Instance {
    configured_instance(PROBER, "checked", dir, &[("address", address)]).await
}

/// One `http-check` through the prober: `Ok("ok STATUS")` or the SDK's
/// error text.
async fn check(
    instance: &mut Instance,
    address: &str,
    path: &str,
    expect: &str,
    host: &str,
    reuse: bool,
) -> Result<String, String> {
    check_within(instance, address, path, expect, host, reuse, 5_000).await
}

/// [`check`] with a timeout of `timeout_ms`.
async fn check_within(
    instance: &mut Instance,
    address: &str,
    path: &str,
    expect: &str,
    host: &str,
    reuse: bool,
    timeout_ms: u64,
) -> Result<String, String> {
    let reuse = if reuse { "reuse" } else { "fresh" };
    let fields = [address, &timeout_ms.to_string(), path, expect, host, reuse].join("\t");
    instance
        .control("http-check", &fields, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("http-check {fields:?} was cut off or trapped: {e}"))
}

/// nginx on 127.0.0.1: `/` 200 with a length, `/empty` 204, `/busy` 503,
/// `/status` its stub status (connections accepted).
fn nginx(dir: &Path) -> (Stopped, String) {
    let port = free_port().port();
    let address = format!("127.0.0.1:{port}");
    let conf = nginx::nginx_config_with(
        dir,
        &[&address],
        r#"location = / { return 200 "ok\n"; }
        location = /empty { return 204; }
        location = /busy { return 503; }
        location = /status { stub_status; }"#,
    );
    let nginx = Stopped(nginx::spawn(dir, &conf));
    wait_until("nginx listens", Duration::from_secs(10), || {
        TcpStream::connect(&address).ok()
    });
    (nginx, address)
}

/// How many connections nginx at `address` has accepted (this one asking
/// included).
fn accepted(address: &str) -> usize {
    let mut stream = TcpStream::connect(address).expect("connect to nginx");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("ask nginx");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("nginx's status");
    // "server accepts handled requests\n N N N"
    let counts = answer
        .split("requests")
        .nth(1)
        .unwrap_or_else(|| panic!("no stub status: {answer}"));
    counts
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no accepts count: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_serves_many_checks_on_one_kept_connection_and_a_class_names_its_misses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("nginx");
    std::fs::create_dir(&web).expect("nginx dir");
    let (_nginx, address) = nginx(&web);
    let mut probe = prober(&dir.path().join("p"), &address).await;

    let before = accepted(&address);
    for _ in 0..5 {
        let passed = check(&mut probe, &address, "/", "200", "-", true).await;
        assert_eq!(passed.as_deref(), Ok("ok 200"));
    }
    // One connection for the five checks, one for this question.
    assert_eq!(accepted(&address) - before, 2, "the connection was kept");

    let before = accepted(&address);
    for _ in 0..3 {
        let passed = check(&mut probe, &address, "/", "2xx", "-", false).await;
        assert_eq!(passed.as_deref(), Ok("ok 200"));
    }
    assert_eq!(accepted(&address) - before, 4, "a connection per check");

    // A class: 204 passes 2xx, 503 fails it, named; on the kept connection.
    for reuse in [true, false] {
        let empty = check(&mut probe, &address, "/empty", "2xx", "-", reuse).await;
        assert_eq!(empty.as_deref(), Ok("ok 204"));
        let why = check(&mut probe, &address, "/busy", "2xx", "-", reuse)
            .await
            .expect_err("503 is not 2xx");
        assert!(
            why.starts_with("unexpected answer: ") && why.contains("503") && why.contains("2xx"),
            "{why}"
        );
        let why = check(&mut probe, &address, "/empty", "200", "-", reuse)
            .await
            .expect_err("204 is not 200");
        assert!(
            why.contains("204") && why.contains("expected status 200"),
            "{why}"
        );
    }
    // An answer that failed the check still leaves a reusable connection.
    let before = accepted(&address);
    for path in ["/busy", "/", "/empty", "/"] {
        let _ = check(&mut probe, &address, path, "2xx", "-", true).await;
    }
    assert_eq!(accepted(&address) - before, 1, "only this question's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_closed_is_replaced_within_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Answers once, then closes (as a server whose keep-alive timed out).
    let (after_one, closing) = http_server(|stream, _| {
        ok_with_length(stream, "ok");
        false
    });
    let mut probe = prober(&dir.path().join("p"), &after_one).await;
    for _ in 0..4 {
        let passed = check(&mut probe, &after_one, "/", "200", "-", true).await;
        assert_eq!(passed.as_deref(), Ok("ok 200"));
    }
    assert_eq!(closing.connections(), 4);
    assert_eq!(closing.requests().len(), 4, "no request was sent twice");

    // Reads the second request on a connection and closes without a byte
    // (the close raced the request): the check is made again, once.
    let (racing, raced) = http_server(|stream, nth| nth == 0 && ok_with_length(stream, "ok"));
    let mut probe = prober(&dir.path().join("q"), &racing).await;
    for _ in 0..3 {
        let passed = check(&mut probe, &racing, "/", "200", "-", true).await;
        assert_eq!(passed.as_deref(), Ok("ok 200"));
    }
    assert_eq!(
        raced.connections(),
        3,
        "each close replaced by one connection"
    );
    assert_eq!(
        raced.requests().len(),
        5,
        "the first check once, each next twice"
    );

    // A fresh server that closes at once is an error, not a retry loop.
    let (slammer, slammed) = http_server(|_, _| false);
    let mut probe = prober(&dir.path().join("r"), &slammer).await;
    let why = check(&mut probe, &slammer, "/", "200", "-", true)
        .await
        .expect_err("no answer");
    assert!(
        why.starts_with("unexpected answer: ") && why.contains("without answering"),
        "{why}"
    );
    assert_eq!(slammed.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_unknown_and_huge_bodies_pass_without_keeping_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunked = |stream: &mut TcpStream, _| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        );
        true
    };
    let unknown = |stream: &mut TcpStream, _| {
        // No length: the body runs to the close, which never comes.
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nsome body");
        true
    };
    let huge = |stream: &mut TcpStream, _| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n");
        let chunk = vec![b'x'; 64 << 10];
        // 100 MiB, until the check hangs up.
        for _ in 0..1600 {
            if stream.write_all(&chunk).is_err() {
                return false;
            }
        }
        true
    };
    let (chunked, chunked_seen) = http_server(chunked);
    let (unknown, unknown_seen) = http_server(unknown);
    let (huge, huge_seen) = http_server(huge);
    for (address, seen) in [
        (&chunked, &chunked_seen),
        (&unknown, &unknown_seen),
        (&huge, &huge_seen),
    ] {
        let mut probe = prober(&dir.path().join(address.replace(':', "_")), address).await;
        for _ in 0..3 {
            let passed = check(&mut probe, address, "/", "2xx", "-", true).await;
            assert_eq!(passed.as_deref(), Ok("ok 200"), "{address}");
        }
        assert_eq!(seen.connections(), 3, "{address}: not kept");
    }

    // Endless headers: capped as http-get's are.
    let (endless, _) = http_server(|stream, _| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
        while stream.write_all(b"X-Endless: yes\r\n").is_ok() {}
        false
    });
    let mut probe = prober(&dir.path().join("e"), &endless).await;
    let why = check(&mut probe, &endless, "/", "2xx", "-", true)
        .await
        .expect_err("endless headers");
    assert!(
        why.contains("longer than 16 KiB") && why.len() < 1024,
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_that_stops_answering_times_out_and_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Answers the first request on a connection, then reads and holds.
    let (stalling, seen) = http_server(|stream, nth| {
        if nth == 0 {
            return ok_with_length(stream, "ok");
        }
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        false
    });
    let mut probe = prober(&dir.path().join("p"), &stalling).await;
    let passed = check(&mut probe, &stalling, "/", "200", "-", true).await;
    assert_eq!(passed.as_deref(), Ok("ok 200"));
    let why = check_within(&mut probe, &stalling, "/", "200", "-", true, 300)
        .await
        .expect_err("the kept connection holds the answer");
    assert!(
        why.starts_with("timed out: ") && why.contains("300 ms"),
        "{why}"
    );
    // The stalled connection was dropped: the next check opens a new one.
    let passed = check(&mut probe, &stalling, "/", "200", "-", true).await;
    assert_eq!(passed.as_deref(), Ok("ok 200"));
    assert_eq!(seen.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_is_sent_as_given_and_one_that_would_inject_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, seen) = http_server(|stream, _| ok_with_length(stream, "ok"));
    let mut probe = prober(&dir.path().join("p"), &server).await;

    let passed = check(&mut probe, &server, "/h", "200", "www.example.org", false).await;
    assert_eq!(passed.as_deref(), Ok("ok 200"));
    let passed = check(&mut probe, &server, "/n", "200", "-", false).await;
    assert_eq!(passed.as_deref(), Ok("ok 200"));
    let requests = seen.requests();
    assert!(
        requests[0].starts_with("GET /h HTTP/1.1\r\n")
            && requests[0].contains("\r\nHost: www.example.org\r\n")
            && requests[0].contains("\r\nConnection: close\r\n"),
        "{requests:?}"
    );
    assert!(
        requests[1].contains(&format!("\r\nHost: {server}\r\n")),
        "{requests:?}"
    );

    for bad in [
        "www.example.org\r\nX-Injected: yes",
        "www.example.org\nX-Injected: yes",
        "www.example.org\r\n\r\nGET /other HTTP/1.1",
        "a b",
        "user@www.example.org",
        "www.example.org/path",
        "www.example.org:99999",
    ] {
        for reuse in [true, false] {
            let why = check(&mut probe, &server, "/", "200", bad, reuse)
                .await
                .expect_err("refused");
            assert!(
                why.starts_with("invalid: the host header") && !why.contains('\n'),
                "{bad:?}: {why}"
            );
        }
    }
    for (path, expect) in [("/a\r\nX: y", "200"), ("/", "600"), ("/", "7xx")] {
        let why = check(&mut probe, &server, path, expect, "-", true)
            .await
            .expect_err("refused");
        assert!(why.starts_with("invalid: "), "{path:?} {expect}: {why}");
    }
    assert_eq!(
        seen.requests().len(),
        2,
        "nothing refused reached the server"
    );
    assert_eq!(seen.connections(), 2, "nothing refused connected");
}
