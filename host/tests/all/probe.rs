//! Contract 0.4.0's `probe` import, driven by `plugins/prober` (through
//! `warden_sdk::probe`) against real services (redis-server, nginx) and
//! against hostile servers of the test's own: the three probes reach a
//! granted address over IPv4 and IPv6; every address the resource's
//! `address` properties do not name is denied before anything is sent;
//! a silent server is cut at the probe's timeout, and at the calling
//! export's deadline when the timeout asked is longer, while other
//! resources' probes go on; answers are capped (a 10 MiB line, endless
//! headers); a status other than the one expected, and a redirect, are
//! unexpected answers (the redirect not followed); a line or path that
//! would inject another is invalid and sends nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden::contract::Health;
use warden::runtime::Instance;

use crate::common::process::{Killed, Stopped};
use crate::common::*;

const PROBER: &str = env!("WARDEN_PLUGIN_PROBER");

/// A `prober` resource whose configured properties are `props` (its
/// `address` properties are what the host grants).
async fn prober(dir: &Path, props: &[(&str, &str)]) -> Instance {
    configured_instance(PROBER, "probed", dir, props).await
}

/// Run the prober's control `code` with `fields` (tab-joined) within
/// `deadline`: the plugin's answer, `Ok("ok ...")` or `Err("kind: ...")`.
async fn run(
    instance: &mut Instance,
    code: &str,
    fields: &[&str],
    deadline: Duration,
) -> Result<String, String> {
    instance
        .control(code, &fields.join("\t"), deadline)
        .await
        .unwrap_or_else(|e| panic!("control {code} {fields:?} was cut off or trapped: {e}"))
}

/// The error of a probe that must fail, checked to start with `kind`.
async fn refused(instance: &mut Instance, code: &str, fields: &[&str], kind: &str) -> String {
    let answer = run(instance, code, fields, Duration::from_secs(10)).await;
    let why = answer.expect_err(&format!("{code} {fields:?} must fail"));
    assert!(why.starts_with(kind), "{code} {fields:?}: {why}");
    why
}

/// redis-server on 127.0.0.1 and ::1, same port, killed when dropped.
fn redis(dir: &Path) -> (Killed, u16) {
    let port = free_port().port();
    let child = Command::new("/usr/bin/redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "::1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt install redis-server)");
    let redis = Killed(child);
    wait_until("redis answers PING", Duration::from_secs(10), || {
        (redis_command(port, "PING").as_deref() == Some("+PONG")).then_some(())
    });
    (redis, port)
}

/// One command to the redis on `port`, its first answer line.
fn redis_command(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut answer = [0u8; 256];
    let read = stream.read(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer[..read]);
    Some(text.lines().next()?.to_string())
}

/// nginx on 127.0.0.1 and ::1, same port: `/` 200, `/broken` 500,
/// `/moved` 301 to `/elsewhere`; stopped with SIGTERM (which takes its
/// worker with it) when dropped.
fn nginx(dir: &Path) -> (Stopped, u16) {
    let port = free_port().port();
    let conf = nginx::nginx_config_with(
        dir,
        &[&format!("127.0.0.1:{port}"), &format!("[::1]:{port}")],
        r#"location = / { return 200 "ok\n"; }
        location = /broken { return 500; }
        location = /moved { return 301 /elsewhere; }"#,
    );
    let child = nginx::spawn(dir, &conf);
    let nginx = Stopped(child);
    wait_until("nginx listens", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (nginx, port)
}

/// A server of the test's own on 127.0.0.1 (`common::tcp_server`).
fn server(serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> u16 {
    crate::common::tcp_server(serve).port()
}

/// A server that accepts and never answers (it holds each connection
/// until the peer closes it).
fn silent_server() -> u16 {
    server(|mut stream| {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    })
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_probes_reach_redis_and_nginx_over_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_redis, redis_port) = redis(dir.path());
    let web = dir.path().join("nginx");
    std::fs::create_dir(&web).expect("nginx dir");
    let (_nginx, web_port) = nginx(&web);

    for (n, (redis_at, web_at)) in [
        (local(redis_port), local(web_port)),
        (format!("[::1]:{redis_port}"), format!("[::1]:{web_port}")),
    ]
    .into_iter()
    .enumerate()
    {
        let data = dir.path().join(format!("prober-{n}"));
        let mut probe = prober(&data, &[("address", &redis_at), ("address-2", &web_at)]).await;
        let connected = run(&mut probe, "connect", &[&redis_at, "2000"], ms(10_000)).await;
        assert!(
            connected.as_deref().is_ok_and(|a| a.starts_with("ok ")),
            "{connected:?}"
        );
        let pong = run(
            &mut probe,
            "line",
            &[&redis_at, "2000", "PING", "+PONG"],
            ms(10_000),
        )
        .await;
        assert_eq!(pong.as_deref(), Ok("ok +PONG"), "{redis_at}");
        let any = run(
            &mut probe,
            "line",
            &[&redis_at, "2000", "ECHO hi", ""],
            ms(10_000),
        )
        .await;
        assert_eq!(
            any.as_deref(),
            Ok("ok $2"),
            "an empty prefix takes any line"
        );
        let page = run(
            &mut probe,
            "http",
            &[&web_at, "2000", "/", "200"],
            ms(10_000),
        )
        .await;
        assert_eq!(page.as_deref(), Ok("ok 200"), "{web_at}");
    }

    // A name an address property holds is granted as written (its
    // addresses resolved at open); is-alive runs the probe the `check`
    // property names, and fails, naming why, once redis is gone.
    let named = format!("localhost:{redis_port}");
    let check = format!("line\t{named}\t2000\tPING\t+PONG");
    let mut probe = prober(
        &dir.path().join("named"),
        &[("address", &named), ("check", &check)],
    )
    .await;
    let health = probe.is_alive(ms(10_000)).await.expect("is-alive runs");
    assert!(matches!(health, Health::Healthy), "{health:?}");
    drop(_redis);
    let health = probe.is_alive(ms(10_000)).await.expect("is-alive runs");
    let Health::Failed(why) = health else {
        panic!("healthy with redis killed");
    };
    assert!(
        why.starts_with("cannot connect: ") && why.contains(&named),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_not_named_by_an_address_property_is_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_redis, port) = redis(dir.path());
    // A listener the decoy property names: it must never see a connection.
    let decoy = TcpListener::bind("127.0.0.1:0").expect("bind");
    decoy.set_nonblocking(true).expect("nonblocking");
    let decoy_at = decoy.local_addr().expect("address").to_string();
    let mut probe = prober(
        &dir.path().join("p"),
        &[("address", &local(port)), ("decoy", &decoy_at)],
    )
    .await;

    let other_port = local(if port == u16::MAX { port - 1 } else { port + 1 });
    let v6 = format!("[::1]:{port}");
    let name = format!("localhost:{port}");
    let any = format!("0.0.0.0:{port}");
    for address in [&other_port, &v6, &name, &any, &decoy_at] {
        for (code, fields) in [
            ("connect", vec![address.as_str(), "2000"]),
            ("line", vec![address.as_str(), "2000", "PING", "+PONG"]),
            ("http", vec![address.as_str(), "2000", "/", "200"]),
        ] {
            let why = refused(&mut probe, code, &fields, "denied: ").await;
            assert!(
                why.contains(address.as_str())
                    && why.contains(&format!("address=127.0.0.1:{port}")),
                "the denial names the address and the grant: {why}"
            );
        }
    }
    assert!(
        matches!(decoy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a denied probe connected to the decoy"
    );

    // Not an address at all: invalid, and a huge one is quoted cut.
    for bad in [
        "127.0.0.1",
        "::1:80",
        ":80",
        "127.0.0.1:99999",
        "a\r\nX-Forged: 1\r\n:80",
        "local host:80",
    ] {
        refused(&mut probe, "connect", &[bad, "2000"], "invalid: ").await;
    }
    let huge = format!("{}:80", "a".repeat(1 << 20));
    let why = refused(&mut probe, "connect", &[&huge, "2000"], "invalid: ").await;
    assert!(why.len() < 1024, "{} bytes", why.len());
    // The granted address still answers: nothing above broke the sandbox.
    let pong = run(
        &mut probe,
        "line",
        &[&local(port), "2000", "PING", "+PONG"],
        ms(10_000),
    )
    .await;
    assert_eq!(pong.as_deref(), Ok("ok +PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_cut_at_the_timeout_and_at_the_export_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_redis, redis_port) = redis(dir.path());
    let silent = local(silent_server());
    let mut probe = prober(&dir.path().join("p"), &[("address", &silent)]).await;

    // The timeout asked, well inside the export's deadline.
    let why = refused(
        &mut probe,
        "line",
        &[&silent, "300", "PING", "+PONG"],
        "timed out: ",
    )
    .await;
    assert!(
        why.contains("within 300 ms") && !why.contains("deadline"),
        "{why}"
    );
    let why = refused(
        &mut probe,
        "http",
        &[&silent, "300", "/", "200"],
        "timed out: ",
    )
    .await;
    assert!(why.contains("status line and headers"), "{why}");

    // A timeout of ten minutes in a call with 1 s left: the probe ends by
    // the export's deadline, and meanwhile another resource's probes go on.
    let mut other = prober(&dir.path().join("o"), &[("address", &local(redis_port))]).await;
    let sandboxes = probe.generations();
    let started = Instant::now();
    let hung = tokio::spawn(async move {
        let fields = [silent.as_str(), "600000", "PING", "+PONG"].join("\t");
        let outcome = probe.control("line", &fields, ms(1_000)).await;
        (outcome, probe)
    });
    for _ in 0..3 {
        let pong = run(
            &mut other,
            "line",
            &[&local(redis_port), "2000", "PING", "+PONG"],
            ms(10_000),
        )
        .await;
        assert_eq!(pong.as_deref(), Ok("ok +PONG"));
    }
    assert!(
        !hung.is_finished(),
        "the silent probe ended before the others ran"
    );
    let (outcome, mut probe) = tokio::time::timeout(ms(30_000), hung)
        .await
        .expect("the probe of ten minutes was not cut at the call's deadline")
        .expect("the task");
    assert!(started.elapsed() < ms(60_000));
    // The host's own bound: the plugin gets `timed-out` back before its
    // call is cut off (a host call waiting on a socket is not cut by the
    // epoch, and a cut-off call would throw the sandbox away).
    match outcome {
        Ok(Err(why)) => assert!(
            why.starts_with("timed out: ") && why.contains("deadline"),
            "{why}"
        ),
        other => panic!("the probe did not end by the export's deadline: {other:?}"),
    }
    assert_eq!(
        probe.generations(),
        sandboxes,
        "the sandbox was thrown away"
    );
    // The resource carries on: its next probe runs.
    let why = refused(&mut probe, "connect", &["127.0.0.1:1", "300"], "denied: ").await;
    assert!(why.contains("127.0.0.1:1"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_capped_and_unexpected_ones_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("nginx");
    std::fs::create_dir(&web).expect("nginx dir");
    let (_nginx, web_port) = nginx(&web);
    let flood = local(server(|mut stream| {
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..160 {
            // 10 MiB without a line end, until the probe hangs up.
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    }));
    let headers = local(server(|mut stream| {
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
        while stream.write_all(b"X-Endless: yes\r\n").is_ok() {}
    }));
    let exact = local(server(|mut stream| {
        let mut line = vec![b'y'; 4096];
        line.extend_from_slice(b"\r\nmore after the line\r\n");
        let _ = stream.write_all(&line);
    }));
    let closing = local(server(drop));
    let web_at = local(web_port);
    let mut probe = prober(
        &dir.path().join("p"),
        &[
            ("address", &flood),
            ("address-2", &headers),
            ("decoy", "unused"),
        ],
    )
    .await;

    let why = refused(
        &mut probe,
        "line",
        &[&flood, "5000", "", ""],
        "unexpected answer: ",
    )
    .await;
    assert!(
        why.contains("longer than 4 KiB") && why.len() < 1024,
        "{why}"
    );
    let why = refused(
        &mut probe,
        "http",
        &[&headers, "5000", "/", "200"],
        "unexpected answer: ",
    )
    .await;
    assert!(
        why.contains("longer than 16 KiB") && why.len() < 1024,
        "{why}"
    );

    let mut probe = prober(
        &dir.path().join("q"),
        &[("address", &exact), ("address-2", &web_at)],
    )
    .await;
    // A line of exactly 4 KiB is whole.
    let line = run(&mut probe, "line", &[&exact, "5000", "", "yyy"], ms(10_000)).await;
    assert_eq!(line.map(|l| l.len()), Ok("ok ".len() + 4096));
    // A status other than the one expected; a redirect, not followed.
    let why = refused(
        &mut probe,
        "http",
        &[&web_at, "5000", "/broken", "200"],
        "unexpected answer: ",
    )
    .await;
    assert!(
        why.contains("500") && why.contains("expected status 200"),
        "{why}"
    );
    let why = refused(
        &mut probe,
        "http",
        &[&web_at, "5000", "/moved", "200"],
        "unexpected answer: ",
    )
    .await;
    assert!(
        why.contains("301")
            && why.contains("redirects are not followed")
            && why.contains("/elsewhere"),
        "{why}"
    );
    let moved = run(
        &mut probe,
        "http",
        &[&web_at, "5000", "/moved", "301"],
        ms(10_000),
    )
    .await;
    assert_eq!(moved.as_deref(), Ok("ok 301"));
    // A prefix the line does not start with, quoted.
    let why = refused(
        &mut probe,
        "line",
        &[&exact, "5000", "", "+PONG"],
        "unexpected answer: ",
    )
    .await;
    assert!(
        why.contains("expected a line starting with") && why.contains("+PONG"),
        "{why}"
    );

    let mut probe = prober(&dir.path().join("r"), &[("address", &closing)]).await;
    let why = refused(&mut probe, "line", &[&closing, "5000", "PING", "+PONG"], "").await;
    assert!(
        why.starts_with("unexpected answer: ") && why.contains("closed the connection")
            || why.starts_with("cannot connect: "),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_or_path_that_would_inject_another_is_invalid_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_redis, port) = redis(dir.path());
    let web = dir.path().join("nginx");
    std::fs::create_dir(&web).expect("nginx dir");
    let (_nginx, web_port) = nginx(&web);
    let (redis_at, web_at) = (local(port), local(web_port));
    assert_eq!(redis_command(port, "SET kept 1").as_deref(), Some("+OK"));
    let mut probe = prober(
        &dir.path().join("p"),
        &[("address", &redis_at), ("address-2", &web_at)],
    )
    .await;

    for send in ["PING\r\nFLUSHALL", "PING\nFLUSHALL", "FLUSHALL\r"] {
        refused(
            &mut probe,
            "line",
            &[&redis_at, "2000", send, "+PONG"],
            "invalid: ",
        )
        .await;
    }
    refused(
        &mut probe,
        "line",
        &[&redis_at, "2000", "PING", "+PO\r\nNG"],
        "invalid: ",
    )
    .await;
    assert_eq!(
        redis_command(port, "GET kept").as_deref(),
        Some("$1"),
        "FLUSHALL reached redis"
    );
    for path in ["/\r\nX-Injected: 1", "health", "/a b", ""] {
        refused(
            &mut probe,
            "http",
            &[&web_at, "2000", path, "200"],
            "invalid: ",
        )
        .await;
    }
}
