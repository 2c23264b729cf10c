//! mail-attendant: its page follows the watched services as they come and
//! go, and a bad `--watch` is a bad command line.

mod common;

use common::*;

#[test]
fn the_page_says_which_watched_services_answer() {
    let dir = TempDir::new("attendant");
    let mut store = Service::start(
        STORE,
        &["--data", &dir.arg("store"), "--listen", "127.0.0.1:0"],
    );
    // A service that never started: its port was free a moment ago.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let watch = format!("store={},smtp={nowhere}", store.addr);
    let attendant = Service::start(
        ATTENDANT,
        &[
            "--server",
            "evs1",
            "--listen",
            "127.0.0.1:0",
            "--watch",
            &watch,
        ],
    );

    let (status, page) = http_get(attendant.addr, "/");
    assert_eq!(status, 200, "{page}");
    let lines: Vec<&str> = page.lines().collect();
    assert!(
        lines[0].starts_with("virtual server evs1: system attendant up"),
        "{page}"
    );
    assert_eq!(lines[1], format!("store {} up", store.addr));
    assert!(
        lines[2].starts_with(&format!("smtp {nowhere} down (")),
        "{page}"
    );
    assert_eq!(
        http_get(attendant.addr, "/health"),
        (200, "ok\n".to_string())
    );
    assert_eq!(http_get(attendant.addr, "/mailbox/alice").0, 404);

    // The store killed: the next page says so.
    store.kill9();
    let (_, page) = http_get(attendant.addr, "/");
    assert!(
        page.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&format!("store {} down (", store.addr))),
        "{page}"
    );
}

#[test]
fn a_bad_watch_list_is_a_bad_command_line() {
    for watch in [
        "store",
        "st ore=127.0.0.1:1",
        "store=no-such-host.invalid:1",
    ] {
        let (code, _, err) = run(
            ATTENDANT,
            &[
                "--server",
                "evs1",
                "--listen",
                "127.0.0.1:0",
                "--watch",
                watch,
            ],
        );
        assert_eq!(code, 2, "--watch {watch:?}: {err}");
        assert!(err.contains("mail-attendant: error: --watch"), "{err}");
    }
    let (code, _, err) = run(ATTENDANT, &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--server"), "{err}");
}
