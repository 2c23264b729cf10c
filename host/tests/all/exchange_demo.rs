//! `warden agent --dev --example exchange`, as a newcomer runs it: the
//! whole Exchange virtual server comes online in dependency order, a mail
//! sent with the banner's own command through the SMTP instance is read
//! back with the banner's own command through the HTTP instance, a kill -9
//! of the Store loses nothing, and Ctrl-C stops every service.

use crate::common::dev_agent::{DevAgent, http_get_path};
use crate::common::process::events;
use crate::common::wait_until;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// The virtual server's resources and what each depends on: the tree of
/// Exchange 2003 (every resource under the System Attendant), and SMTP,
/// HTTP and MS Search also under the Store they write and read through.
const TREE: &[(&str, &[&str])] = &[
    ("system-attendant", &[]),
    ("store", &["system-attendant"]),
    ("mta", &["system-attendant"]),
    ("smtp", &["system-attendant", "store"]),
    ("http", &["system-attendant", "store"]),
    ("search", &["system-attendant", "store"]),
];

/// Each resource's `warden mail-service` name.
fn service_of(resource: &str) -> &str {
    match resource {
        "system-attendant" => "attendant",
        "search" => "indexer",
        other => other,
    }
}

/// The `at_ms` of the `nth` (from 0) change of `resource` to `to`.
fn at(seen: &[Value], resource: &str, to: &str, nth: usize) -> u64 {
    seen.iter()
        .filter(|e| e["resource"] == resource && e["to"] == to)
        .nth(nth)
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("{resource} never {to} (#{nth}): {seen:#?}"))
}

/// Wait until every resource is Online (its last state change says so)
/// and the store has come Online `store_times` times.
fn wait_all_online(history: &Path, store_times: usize) {
    wait_until(
        &format!("every resource Online, the store {store_times} times"),
        Duration::from_secs(45),
        || {
            let seen = events(history);
            let changes = |name: &str| -> Vec<String> {
                seen.iter()
                    .filter(|e| e["resource"] == name)
                    .filter_map(|e| e["to"].as_str().map(str::to_string))
                    .collect()
            };
            let all_online = TREE
                .iter()
                .all(|(name, _)| changes(name).last().is_some_and(|to| to == "Online"));
            let store = changes("store").iter().filter(|to| *to == "Online").count();
            (all_online && store >= store_times).then_some(())
        },
    );
}

/// The pid of the service `resource` runs, listening on `addr` (its command
/// line names both).
fn pid_of(resource: &str, addr: SocketAddr) -> Option<i32> {
    let out = Command::new("pgrep")
        .args([
            "-f",
            &format!("mail-service {} .*--listen {addr}", service_of(resource)),
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// Run a command the banner prints, as a reader pastes it into bash.
fn run_banner_line(agent: &DevAgent, contains: &str) -> Output {
    let line = agent
        .banner
        .iter()
        .map(|l| l.trim())
        .find(|l| l.contains(contains) && !l.starts_with("Try:"))
        .unwrap_or_else(|| panic!("no banner line with {contains:?}: {:#?}", agent.banner));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", line])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{line}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One line-protocol request to the store; its one-line answer.
fn ask_store(addr: SocketAddr, request: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

#[test]
fn the_exchange_demo_carries_a_mail_from_smtp_to_http_through_a_store_crash() {
    let mut command = Command::new(WARDEN);
    command.args(["agent", "--dev", "--example", "exchange"]);
    let mut agent = DevAgent::spawn(command);
    let names: Vec<&str> = agent.services.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = TREE.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "the banner's resources");
    let history = agent.history.clone();

    // The configuration the banner names holds the tree.
    let config: toml::Value = toml::from_str(
        &std::fs::read_to_string(history.with_file_name("warden.toml")).expect("warden.toml"),
    )
    .expect("the demo's configuration parses");
    for (name, depends_on) in TREE {
        let resource = config["resource"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["name"].as_str() == Some(name)))
            .unwrap_or_else(|| panic!("no resource {name} in {config:#?}"));
        let configured: Vec<&str> = resource["depends_on"]
            .as_array()
            .map(|d| d.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(&configured, depends_on, "{name} depends on");
        assert_eq!(resource["group"].as_str(), Some("evs1"));
    }

    // Online, each resource only after everything it depends on.
    wait_all_online(&history, 1);
    let seen = events(&history);
    for (name, depends_on) in TREE {
        for dependency in *depends_on {
            assert!(
                at(&seen, dependency, "Online", 0) <= at(&seen, name, "OnlinePending", 0),
                "{name} started before {dependency} was Online"
            );
        }
    }
    let pids: Vec<(String, i32)> = agent
        .services
        .iter()
        .map(|(name, addr)| {
            let pid = wait_until(&format!("{name}'s pid"), Duration::from_secs(10), || {
                pid_of(name, *addr)
            });
            (name.clone(), pid)
        })
        .collect();

    // The attendant's page lists the virtual server's services, all up.
    let page = http_get_path(agent.service("system-attendant"), "/").expect("attendant page");
    for (name, _) in &TREE[1..] {
        assert!(
            page.lines()
                .any(|l| l.starts_with(name) && l.ends_with(" up")),
            "{name} not up on the attendant's page:\n{page}"
        );
    }

    // A mail in over SMTP and out over HTTP, with the banner's commands.
    run_banner_line(&agent, "--mail-rcpt alice@example.org");
    let read = run_banner_line(&agent, "/mailbox/alice");
    let body = String::from_utf8_lossy(&read.stdout);
    assert!(
        body.contains("\"mailbox\":\"alice\"") && body.contains("Hello from Warden"),
        "the mailbox over HTTP: {body}"
    );

    // kill -9 the Store: it restarts, recovers its log (not a clean mount)
    // and the message is still there.
    let store = agent.service("store");
    let (_, old) = pids.iter().find(|(n, _)| n == "store").expect("store pid");
    kill(Pid::from_raw(*old), Signal::SIGKILL).expect("kill -9 the store");
    let new = wait_until("a new store", Duration::from_secs(30), || {
        pid_of("store", store).filter(|pid| pid != old)
    });
    assert_ne!(new, *old);
    wait_all_online(&history, 2);
    let status = wait_until("the store to answer", Duration::from_secs(30), || {
        ask_store(store, "STATUS")
    });
    assert!(
        status.starts_with("STATUS clean=false records=1 "),
        "the store after kill -9 recovers its log: {status}"
    );
    let http = agent.service("http");
    let body = wait_until("the mail over HTTP again", Duration::from_secs(30), || {
        http_get_path(http, "/mailbox/alice")
    });
    assert!(
        body.contains("Hello from Warden"),
        "after the crash: {body}"
    );
    let seen = events(&history);
    assert!(
        seen.iter()
            .any(|e| e["resource"] == "store" && e["event"] == "process-exited"),
        "the store's exit is in the history: {seen:#?}"
    );
    // What depends on the store went down with it and came back after it.
    for (name, depends_on) in TREE {
        if depends_on.contains(&"store") {
            assert!(
                at(&seen, "store", "Online", 1) <= at(&seen, name, "OnlinePending", 1),
                "{name} restarted before the store was Online again"
            );
        }
    }

    // Ctrl-C: offline in reverse dependency order, every service gone.
    let running: Vec<(String, i32)> = agent
        .services
        .iter()
        .map(|(name, addr)| (name.clone(), pid_of(name, *addr).expect("running")))
        .collect();
    // The dev node removes its data directory as it exits: keep the
    // history open to read its last events after.
    let mut kept = std::fs::File::open(&history).expect("open the history");
    let status = agent.stop(Signal::SIGINT);
    assert!(status.success(), "the demo after Ctrl-C: {status:?}");
    let data_dir = history.parent().expect("the data directory");
    assert!(
        !data_dir.exists(),
        "the dev node left {} behind",
        data_dir.display()
    );
    for (name, pid) in &running {
        assert!(
            kill(Pid::from_raw(*pid), None).is_err(),
            "{name} (pid {pid}) still runs after Ctrl-C"
        );
    }
    for (name, addr) in &agent.services {
        assert_eq!(pid_of(name, *addr), None, "a {name} service still runs");
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut kept, &mut text).expect("read the history");
    let seen: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for (name, depends_on) in TREE {
        for dependency in *depends_on {
            let last = |resource: &str, to: &str| {
                seen.iter()
                    .filter(|e| e["resource"] == resource && e["to"] == to)
                    .filter_map(|e| e["at_ms"].as_u64())
                    .next_back()
                    .unwrap_or_else(|| panic!("{resource} never {to}"))
            };
            assert!(
                last(name, "Offline") <= last(dependency, "OfflinePending"),
                "{dependency} went offline before {name}"
            );
        }
    }
}

#[test]
fn the_demo_refuses_what_it_does_not_know() {
    // An example without --dev, an unknown example, an unknown service.
    let out = Command::new(WARDEN)
        .args(["agent", "--example", "exchange"])
        .output()
        .expect("run warden");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--dev"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(WARDEN)
        .args(["agent", "--dev", "--example", "lotus-notes"])
        .output()
        .expect("run warden");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exchange"),
        "the error names the examples: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(WARDEN)
        .args(["mail-service", "routing", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run warden");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"routing\"") && err.contains("attendant"),
        "names the service and the known ones: {err}"
    );
    // A service's own bad command line: its usage, exit 2, as its binary.
    let out = Command::new(WARDEN)
        .args(["mail-service", "store", "--listen", "nowhere"])
        .output()
        .expect("run warden");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: mail-store"));
}
