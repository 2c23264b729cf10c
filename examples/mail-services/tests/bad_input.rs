//! Bad input of every kind gets a clear refusal, never a crash or a hang.

mod common;

use common::*;

#[test]
fn bad_flags_exit_2_with_usage() {
    let cases: &[(&str, &[&str], &str)] = &[
        (STORE, &["--bogus"], "unknown argument `--bogus`"),
        (STORE, &["--listen", "127.0.0.1:0"], "`--data` is required"),
        (STORE, &["--data", "/tmp/x"], "`--listen` is required"),
        (
            STORE,
            &["--data", "/tmp/x", "--verify", "--listen", "127.0.0.1:0"],
            "takes no --listen",
        ),
        (SMTP, &["--listen", "127.0.0.1:0"], "`--store` is required"),
        (
            SMTP,
            &["--listen", "no-port-here", "--store", "127.0.0.1:1"],
            "--listen no-port-here",
        ),
        (
            SMTP,
            &[
                "--listen",
                "127.0.0.1:0",
                "--store",
                "127.0.0.1:1",
                "--hostname",
                "a b",
            ],
            "not a valid host name",
        ),
        (HTTP, &["--listen"], "`--listen` needs a value"),
        (
            MTA,
            &["--listen", "127.0.0.1:0", "--store", "127.0.0.1:1"],
            "`--data` is required",
        ),
        (
            MTA,
            &[
                "--listen",
                "127.0.0.1:0",
                "--store",
                "127.0.0.1:1",
                "--data",
                "/tmp/x",
                "--retry-ms",
                "soon",
            ],
            "not a non-negative integer",
        ),
        (
            INDEXER,
            &[
                "--store",
                "127.0.0.1:1",
                "--data",
                "/tmp/x",
                "--listen",
                "127.0.0.1:0",
                "--poll-ms",
                "1",
            ],
            "must be at least 10",
        ),
        (
            INDEXER,
            &["--store", "127.0.0.1:1", "--store", "127.0.0.1:2"],
            "given twice",
        ),
    ];
    for (bin, args, needle) in cases {
        let (code, out, err) = run(bin, args);
        assert_eq!(code, 2, "{bin} {args:?}: {err}");
        assert!(out.is_empty(), "{bin} {args:?} printed {out:?}");
        assert!(err.contains(needle), "{bin} {args:?}: {err}");
        assert!(err.contains("usage: "), "{bin} {args:?}: {err}");
    }
    for bin in [STORE, SMTP, HTTP, MTA, INDEXER] {
        let (code, out, _) = run(bin, &["--help"]);
        assert_eq!(code, 0);
        assert!(out.starts_with("usage: "), "{out}");
    }
}

#[test]
fn the_store_answers_err_to_nonsense() {
    let dir = TempDir::new("bad-store");
    let store = Service::start(STORE, &["--data", &dir.arg("s"), "--listen", "127.0.0.1:0"]);
    let mut c = Line::connect(store.addr).unwrap();
    for bad in [
        "FOO",
        "PING extra",
        "GET",
        "GET Alice",
        "GET a b",
        "SINCE",
        "SINCE x",
        "SINCE 1 y",
        "SEQ 1",
        "STATUS now",
    ] {
        let r = c.cmd(bad);
        assert!(r.starts_with("ERR "), "{bad}: {r}");
    }
    // Empty lines are ignored; commands are case-insensitive.
    c.send(b"\r\n\n").unwrap();
    assert_eq!(c.cmd("ping"), "PONG");
    // A bad mailbox with a sound length: the body is consumed, the connection lives.
    assert!(
        c.put("Not/Valid", b"xyz")
            .unwrap()
            .starts_with("ERR invalid mailbox")
    );
    assert_eq!(c.cmd("PING"), "PONG");
    assert_eq!(c.cmd("SEQ"), "SEQ 0");
    // No trustworthy length: ERR, then the store hangs up.
    for bad in ["PUT alice", "PUT alice many", "PUT alice 99999999999"] {
        let mut c = Line::connect(store.addr).unwrap();
        assert!(c.cmd(bad).starts_with("ERR "), "{bad}");
        assert_eq!(c.line().unwrap(), "", "{bad}: connection should be closed");
    }
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd(&"X".repeat(5000)), "ERR line too long");
    // Nothing was stored by any of it.
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd("STATUS"), "STATUS clean=true records=0 seq=0");
}

#[test]
fn smtp_and_indexer_refuse_malformed_commands() {
    let dir = TempDir::new("bad-smtp");
    let nowhere = format!("127.0.0.1:{}", free_port());
    let smtp = Service::start(SMTP, &["--listen", "127.0.0.1:0", "--store", &nowhere]);
    let mut c = Line::connect(smtp.addr).unwrap();
    assert!(c.smtp_reply().starts_with("220 "));
    let script = [
        ("MAIL FROM:<a@b.test>", "503"),
        ("HELO", "501"),
        ("FROB", "500"),
        ("EHLO client.test", "250"),
        ("RCPT TO:<a@b.test>", "503"),
        ("DATA", "503"),
        ("MAIL FROM:a@b.test", "501"),
        ("MAIL FROM:<a@b.test>", "250"),
        ("RCPT TO:<nodomain>", "501"),
        ("RCPT TO:<spaces in@x.test>", "501"),
        ("RCPT TO:<\"quoted\"@x.test>", "501"),
        ("RCPT TO:<a@b.test> NOTIFY=NEVER", "555"),
        ("DATA", "503"),
        ("EXPN staff", "502"),
        ("RSET", "250"),
        ("NOOP", "250"),
        ("QUIT", "221"),
    ];
    for (cmd, code) in script {
        let r = c.smtp(cmd);
        assert!(r.starts_with(code), "{cmd}: expected {code}, got {r}");
    }

    let indexer = Service::start(
        INDEXER,
        &[
            "--store",
            &nowhere,
            "--data",
            &dir.arg("ix"),
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "50",
        ],
    );
    let mut c = Line::connect(indexer.addr).unwrap();
    for bad in [
        "FIND x",
        "SEARCH",
        "SEARCH two words",
        "SEARCH !!!",
        "LAG now",
    ] {
        let r = c.cmd(bad);
        assert!(r.starts_with("ERR "), "{bad}: {r}");
    }
    assert_eq!(c.cmd("LAG"), "LAG unknown");
    assert_eq!(c.cmd("INDEXED"), "INDEXED 0");
}
