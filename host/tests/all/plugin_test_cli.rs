//! `warden plugin test` and `warden plugin check` as a new author meets
//! them: a failed step shows the tail of the managed program's output, the
//! data directory is kept when asked, an online that reports progress gets
//! the agent's extensions (not a hang after the timeout plus a margin), and
//! the property table of `plugin check` keeps its columns for long names.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::cli::warden;
use crate::common::{CHAOS, PROCESS};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

/// A shell script that prints `line 1` .. `line 100` on stdout, one line
/// on stderr, and exits 3: a service that dies at its start.
fn dying_service(dir: &Path) -> PathBuf {
    let script = dir.join("dies.sh");
    std::fs::write(
        &script,
        "i=1\nwhile [ $i -le 100 ]; do echo \"line $i\"; i=$((i+1)); done\n\
         echo 'fatal: the port is taken' >&2\nexit 3\n",
    )
    .expect("script");
    script
}

#[test]
fn a_failed_step_prints_the_tail_of_the_services_output_and_keeps_data_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = dying_service(tmp.path());
    let out = warden(&[
        "plugin",
        "test",
        PROCESS,
        "--prop",
        "program=/bin/sh",
        "--prop",
        &format!("args={}", script.display()),
        "--grant-program",
        "/bin/sh",
        "--keep-data",
    ]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{}", all(&out));
    assert!(text.contains("FAIL online"), "{text}");
    assert!(
        text.contains("the last 40 lines of the managed program's output:"),
        "{text}"
    );
    // The last 40 lines: line 62 to line 100, then stderr's line.
    assert!(text.contains("  | line 62\n"), "{text}");
    assert!(
        text.contains("  | line 100\n  | fatal: the port is taken\n"),
        "{text}"
    );
    assert!(!text.contains("  | line 61\n"), "{text}");

    let kept = text
        .lines()
        .find_map(|l| l.strip_prefix("note data kept     "))
        .unwrap_or_else(|| panic!("no kept data directory in:\n{text}"));
    let kept = PathBuf::from(kept.trim());
    let log = std::fs::read_to_string(kept.join("private/service.log")).expect("service log");
    assert!(log.starts_with("line 1\n"), "{log}");
    assert!(kept.join("data").is_dir());
    std::fs::remove_dir_all(&kept).expect("remove the kept directory");
}

#[test]
fn without_keep_data_the_directory_is_not_named_and_output_is_escaped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = tmp.path().join("escape.sh");
    // A terminal escape and a very long line: printed escaped and cut.
    std::fs::write(
        &script,
        "printf 'red \\033[31m alert\\n'\nhead -c 5000 /dev/zero | tr '\\0' x; echo\nexit 1\n",
    )
    .expect("script");
    let out = warden(&[
        "plugin",
        "test",
        PROCESS,
        "--prop",
        "program=/bin/sh",
        "--prop",
        &format!("args={}", script.display()),
        "--grant-program",
        "/bin/sh",
    ]);
    let text = stdout(&out);
    assert!(!out.status.success());
    assert!(!text.contains("note data kept"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal: {text:?}"
    );
    assert!(text.contains("  | red \\u{1b}[31m alert\n"), "{text}");
    assert!(
        text.contains(&format!("  | {} [...]\n", "x".repeat(400))),
        "{text}"
    );
}

#[test]
fn an_online_that_reports_progress_gets_the_agents_extensions() {
    // 8 s of online, progress every 500 ms, a pending timeout of 1 s: the
    // agent extends the deadline up to ten timeouts (10 s), so this is no
    // hang. (Before, plugin test gave up at the timeout plus 5 s.)
    let out = warden(&[
        "plugin",
        "test",
        CHAOS,
        "--prop",
        "online-ms=8000",
        "--prop",
        "progress-ms=500",
        "--pending-timeout-ms",
        "1000",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", all(&out));
    assert!(text.contains("ok   open+online"), "{text}");
    assert!(
        text.contains("extended by progress reports up to 10000 ms"),
        "{text}"
    );

    // The same online without progress reports is cut off at its timeout,
    // as the agent cuts it off.
    let out = warden(&[
        "plugin",
        "test",
        CHAOS,
        "--prop",
        "online-ms=8000",
        "--pending-timeout-ms",
        "1000",
    ]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL online"), "{text}");
    assert!(text.contains("online timed out"), "{text}");
}

#[test]
fn plugin_check_keeps_its_property_columns_for_long_names() {
    // The store's names run to 18 characters, its defaults to 25.
    let store = format!("{}/store.wasm", env!("WARDEN_PLUGIN_DIR"));
    let out = warden(&["plugin", "check", &store]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", all(&out));
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "properties:")
        .skip(1)
        .collect();
    assert!(rows.len() > 5, "{text}");
    assert!(
        rows.iter().any(|r| r.contains("replication-listen")),
        "{text}"
    );
    let column = |row: &str, word: &str| row.find(word);
    let starts: Vec<usize> = rows
        .iter()
        .map(|row| {
            column(row, " required ")
                .or_else(|| column(row, " optional "))
                .unwrap_or_else(|| panic!("no required/optional column in {row:?}"))
        })
        .collect();
    assert!(
        starts.iter().all(|s| *s == starts[0]),
        "the columns move: {starts:?}\n{text}"
    );
    // So do the defaults, and the descriptions after the longest default.
    let defaults: Vec<usize> = rows
        .iter()
        .map(|row| column(row, " default ").expect("a default column"))
        .collect();
    assert!(
        defaults.iter().all(|d| *d == defaults[0]),
        "{defaults:?}\n{text}"
    );
    let sync = rows
        .iter()
        .find(|r| r.contains(" sync-mode "))
        .expect("sync-mode");
    let listen = rows
        .iter()
        .find(|r| r.contains(" replication-listen "))
        .expect("replication-listen");
    assert_eq!(
        column(sync, "Copies only"),
        column(listen, "Copies only"),
        "{text}"
    );
}
