//! A message's whole path: SMTP in, stored, indexed, read over HTTP; then
//! the same services with the store gone.

mod common;

use common::*;

/// What `json_string` must produce for `s`, written out independently.
fn json_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

#[test]
fn smtp_to_store_to_index_and_http() {
    let dir = TempDir::new("e2e");
    let mut store = Service::start(
        STORE,
        &["--data", &dir.arg("store"), "--listen", "127.0.0.1:0"],
    );
    let s = store.addr.to_string();
    let smtp = Service::start(
        SMTP,
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &s,
            "--hostname",
            "mx.test",
        ],
    );
    let http = Service::start(HTTP, &["--listen", "127.0.0.1:0", "--store", &s]);
    let mut indexer = Service::start(
        INDEXER,
        &[
            "--store",
            &s,
            "--data",
            &dir.arg("index"),
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "50",
        ],
    );

    // The banner names the host and the product.
    let mut c = Line::connect(smtp.addr).unwrap();
    assert_eq!(c.smtp_reply(), "220 mx.test ESMTP warden-mail");
    drop(c);

    let body = "Subject: \"quarterly\" numbers\r\n\r\nThe Zanzibar figures are in.\r\n.a line that starts with a dot\r\n\tand a tab \\ backslash";
    let reply = smtp_send(
        smtp.addr,
        "sender@example.org",
        &["Alice@Example.COM"],
        body,
    );
    assert_eq!(reply, "250 OK queued as 1");
    let reply = smtp_send(
        smtp.addr,
        "",
        &["bob@example.com", "carol@example.com"],
        "Hello both",
    );
    assert_eq!(reply, "250 OK queued as 2,3");

    // Readable over HTTP, exactly as sent (CRLF line ends, dots unstuffed).
    let (status, json) = http_get(http.addr, "/mailbox/alice");
    assert_eq!(status, 200, "{json}");
    let expected = format!(
        "{{\"mailbox\":\"alice\",\"messages\":[{{\"seq\":1,\"body\":\"{}\"}}]}}",
        json_escaped(&format!("{body}\r\n"))
    );
    assert_eq!(json, expected);
    let (status, json) = http_get(http.addr, "/mailbox/carol");
    assert_eq!(
        (status, json.as_str()),
        (
            200,
            r#"{"mailbox":"carol","messages":[{"seq":3,"body":"Hello both\r\n"}]}"#
        )
    );
    assert_eq!(
        http_get(http.addr, "/mailbox/nobody").1,
        r#"{"mailbox":"nobody","messages":[]}"#
    );
    assert_eq!(http_get(http.addr, "/health"), (200, "ok\n".into()));
    assert_eq!(http_get(http.addr, "/nope").0, 404);
    assert_eq!(http_get(http.addr, "/mailbox/bad%20name").0, 400);
    assert_eq!(
        http_request(
            http.addr,
            "POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(
        http_request(http.addr, "DELETE /mailbox/alice HTTP/1.1\r\n\r\n").0,
        405
    );
    assert_eq!(http_request(http.addr, "nonsense\r\n\r\n").0, 400);

    // Indexed within a few seconds; the lag drains to zero.
    let mut ix = Line::connect(indexer.addr).unwrap();
    assert_eq!(ix.cmd("PING"), "PONG");
    eventually("the indexer to catch up", || {
        (ix.cmd("INDEXED") == "INDEXED 3").then_some(())
    });
    assert_eq!(ix.cmd("SEARCH zanzibar"), "HITS 1");
    assert_eq!(ix.line().unwrap(), "alice 1");
    assert_eq!(ix.cmd("SEARCH HELLO"), "HITS 2");
    assert_eq!(
        (ix.line().unwrap(), ix.line().unwrap()),
        ("bob 2".into(), "carol 3".into())
    );
    assert_eq!(ix.cmd("SEARCH absent"), "HITS 0");
    assert_eq!(ix.cmd("LAG"), "LAG 0");

    // The index survives a restart; with the store gone, LAG is unknown,
    // HTTP says 502 and SMTP says 451 (try later).
    let status = indexer.terminate();
    assert!(status.success(), "indexer exit: {status}");
    store.kill9();
    let indexer = Service::start(
        INDEXER,
        &[
            "--store",
            &s,
            "--data",
            &dir.arg("index"),
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "50",
        ],
    );
    let mut ix = Line::connect(indexer.addr).unwrap();
    assert_eq!(ix.cmd("INDEXED"), "INDEXED 3");
    assert_eq!(ix.cmd("SEARCH zanzibar"), "HITS 1");
    assert_eq!(ix.line().unwrap(), "alice 1");
    assert_eq!(ix.cmd("LAG"), "LAG unknown");
    assert_eq!(http_get(http.addr, "/mailbox/alice").0, 502);
    assert_eq!(http_get(http.addr, "/health").0, 200);
    let reply = smtp_send(smtp.addr, "a@b.test", &["alice@x.test"], "lost?");
    assert_eq!(reply, "451 4.3.0 store unavailable");

    // A different (empty) store at the same address: the index is rebuilt
    // from it rather than answering for messages that are not there.
    let _new_store = Service::start(STORE, &["--data", &dir.arg("other"), "--listen", &s]);
    let reply = smtp_send(smtp.addr, "a@b.test", &["alice@x.test"], "fresh start");
    assert_eq!(reply, "250 OK queued as 1");
    eventually("the rebuilt index", || {
        (ix.cmd("SEARCH fresh") == "HITS 1").then(|| ix.line().unwrap())
    });
    assert_eq!(ix.cmd("SEARCH zanzibar"), "HITS 0");
    assert_eq!(ix.cmd("INDEXED"), "INDEXED 1");
    assert_eq!(ix.cmd("LAG"), "LAG 0");
}

/// A cluster node's agent names the node to its services through
/// `MAIL_HOSTNAME` (the command line is the virtual server's, the same on
/// every node): the banner and EHLO say it, `--hostname` overrides it, and
/// a value that is no host name is passed over for the machine's.
#[test]
fn the_banner_names_the_node_from_mail_hostname() {
    let dir = TempDir::new("banner");
    let store = Service::start(
        STORE,
        &["--data", &dir.arg("store"), "--listen", "127.0.0.1:0"],
    );
    let s = store.addr.to_string();
    let smtp_args = ["--listen", "127.0.0.1:0", "--store", s.as_str()];
    let banner = |smtp: &Service| {
        let mut line = Line::connect(smtp.addr).unwrap();
        let banner = line.smtp_reply();
        let ehlo = line.smtp("EHLO client.test");
        (banner, ehlo)
    };

    let named = Service::start_env(SMTP, &smtp_args, &[("MAIL_HOSTNAME", "n7")]);
    let (greeting, _) = banner(&named);
    assert_eq!(greeting, "220 n7 ESMTP warden-mail");
    let mut line = Line::connect(named.addr).unwrap();
    line.smtp_reply();
    line.send(b"EHLO client.test\r\n").unwrap();
    assert_eq!(line.line().unwrap(), "250-n7");

    let mut with_flag = smtp_args.to_vec();
    with_flag.extend(["--hostname", "mx.test"]);
    let flagged = Service::start_env(SMTP, &with_flag, &[("MAIL_HOSTNAME", "n7")]);
    assert_eq!(banner(&flagged).0, "220 mx.test ESMTP warden-mail");

    let machine = Service::start(SMTP, &smtp_args);
    let machine_name = banner(&machine).0;
    for bad in ["two words", ""] {
        let passed_over = Service::start_env(SMTP, &smtp_args, &[("MAIL_HOSTNAME", bad)]);
        assert_eq!(
            banner(&passed_over).0,
            machine_name,
            "MAIL_HOSTNAME={bad:?}"
        );
    }
}
