//! Issue #16, part 3: the agent carries out a resource's copies. A real
//! `warden agent` runs the built-in `store` type with `copies` over the
//! real `mail-store`: the engine's `ActivateCopy` reaches the store as
//! `activate` with generation 1, the copy's status comes back through
//! `copy-status`, and the operator sees it in `warden status` (JSON and
//! table), `/metrics` and the event history. Copies a resource cannot
//! have are refused, naming what is wrong, from the configuration file and
//! from the API; `warden group accept-data-loss` is refused for what has no
//! copies.
//!
//! One agent alone: two agents on one host would need a replication port
//! each, and the configuration is the cluster's, the same on every node;
//! the failover of copies between nodes is in the network lab.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::agent_process::{AgentProcess, TOKEN, WARDEN};
use crate::common::{mail_services, service_ports, wait_until};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);
/// Enough messages that the copy's position moves past the reporting step
/// (`REPORT_POSITION_STEP`) at once.
const MESSAGES: u64 = 25;

/// A node `solo` running resource `store` with copies on every possible
/// owner (itself), asynchronous, its status polled every 300 ms.
fn store_config(address: SocketAddr, listen: SocketAddr) -> String {
    let store = mail_services().join("mail-store");
    let store = store.display();
    format!(
        r#"
[node]
name = "solo"
data_dir = "data"

[plugins.store]
allow_programs = ["{store}"]

[[resource]]
name = "store"
type = "store"
copies = "all"
max_lag_on_failover = 50
is_alive_interval_ms = 300
properties = {{ program = "{store}", address = "{address}", replication-listen = "{listen}", replicate-from = "{listen}", sync-mode = "async", max-async-lag = 1000 }}
"#
    )
}

/// `PUT mailbox` of `body` at the store's client port: its answer line.
fn put(address: SocketAddr, mailbox: &str, body: &str) -> String {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("the store");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("a timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    write!(writer, "PUT {mailbox} {}\n{body}", body.len()).expect("send PUT");
    let mut line = String::new();
    reader.read_line(&mut line).expect("the store's answer");
    line.trim_end().to_string()
}

/// The copies of `store` as `warden status --json` shows them.
fn copies(agent: &AgentProcess) -> Option<(Value, Vec<Value>)> {
    let resource = agent.resource("store")?;
    let copies = resource["copies"].as_array()?.clone();
    Some((resource, copies))
}

/// Poll `probe` every 100 ms until it gives a value or `within` passes.
fn poll_until<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(value) = probe() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// An admin API request with the token; the status code and the body.
fn request(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(api).expect("the admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the answer");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response:?}"));
    (status, body.to_string())
}

#[test]
fn a_lone_agent_activates_its_store_copy_and_shows_where_it_stands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [address, listen] = service_ports::<2>();
    let agent = AgentProcess::start(dir.path(), &store_config(address, listen));

    // The engine activates the copy with generation 1; the store serves.
    let (resource, active) = wait_until("the copy active, with a status", MINUTE, || {
        let (resource, copies) = copies(&agent)?;
        let copy = copies.first()?.clone();
        (resource["state"] == "Online" && copy["state"] == "active" && copy["generation"] == 1)
            .then_some((resource, copy))
    });
    assert_eq!(resource["generation"], 1, "{resource}");
    assert_eq!(active["node"], "solo", "{active}");
    assert_eq!(active["health"], "healthy", "{active}");
    assert_eq!(active["lag"], 0, "the active copy lags nothing: {active}");

    for i in 0..MESSAGES {
        let answer = put(address, "alice", &format!("message {i}"));
        assert!(answer.starts_with("OK "), "message {i}: {answer}");
    }
    // Moved by more than the step: reported at the next poll.
    let mut last = None;
    let reported = poll_until(MINUTE, || {
        let (_, copies) = copies(&agent)?;
        let copy = copies.first()?.clone();
        last = Some(copy.clone());
        (copy["copied"].as_u64()? >= MESSAGES).then_some(copy)
    });
    let active = reported.unwrap_or_else(|| {
        panic!(
            "the written positions were not reported; the copy: {last:?}\n{}",
            agent.log()
        )
    });
    assert_eq!(active["copy_queue_length"], 0, "{active}");
    assert_eq!(active["replay_queue_length"], 0, "{active}");

    // The operator's views: the CLI's table, /metrics, the history.
    let table = agent.ok(&["status"]);
    assert!(table.contains("copies (generation 1)"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(" solo ") && l.contains("active"))
        .unwrap_or_else(|| panic!("no row for the copy on solo:\n{table}"));
    assert!(row.contains("healthy"), "{row}");
    let (code, metrics) = request(agent.api, "GET", "/metrics", "");
    assert_eq!(code, 200, "/metrics: {metrics}");
    for sample in [
        "warden_copy_queue_length{resource=\"store\",node=\"solo\"} 0",
        "warden_replay_queue_length{resource=\"store\",node=\"solo\"} 0",
        "warden_copy_lag{resource=\"store\",node=\"solo\"} 0",
    ] {
        assert!(metrics.contains(sample), "no {sample} in:\n{metrics}");
    }
    let history = agent.history();
    let asked = history.iter().any(|e| {
        e["event"] == "policy"
            && e["action"] == "copy"
            && e["reason"] == "activate with generation 1"
    });
    let answered = history.iter().any(|e| {
        e["event"] == "copy" && e["call"] == "activate" && e["outcome"] == "the copy is active"
    });
    let reported = history.iter().any(|e| {
        e["event"] == "copy"
            && e["call"] == "copy-status"
            && e["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("active generation=1 "))
    });
    assert!(
        asked && answered && reported,
        "the history lacks the activation asked ({asked}), answered ({answered}) or a status \
         ({reported}):\n{history:#?}"
    );

    // Accepting a loss needs a group (or a resource with copies).
    let refused = agent.cli(&["group", "accept-data-loss", "nosuch"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("no group or resource with copies \"nosuch\""),
        "{stderr}"
    );
    // The store's group is online on the only copy: nothing to accept, and
    // the engine says so rather than doing anything.
    let (code, body) = request(
        agent.api,
        "POST",
        "/v1/groups/store/accept-data-loss",
        r#"{"node": "elsewhere"}"#,
    );
    assert!((400..500).contains(&code), "{code} {body}");
    let (code, body) = request(
        agent.api,
        "POST",
        "/v1/groups/store/accept-data-loss",
        r#"{"nodes": ["solo"]}"#,
    );
    assert_eq!(code, 400, "an unknown key is refused: {body}");
    assert!(body.contains("nodes"), "{body}");

    // Offline where it is (a planned step-down at generation 1: writes
    // refused), then online again on the same copy with generation 2.
    agent.ok(&["group", "offline", "store"]);
    wait_until("the group offline", MINUTE, || {
        let (resource, _) = copies(&agent)?;
        (resource["state"] == "Offline").then_some(())
    });
    // Offline deactivates the copy, then stops it: no write is taken.
    if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
        let refused = put(address, "alice", "while offline");
        assert!(refused.starts_with("UNAVAILABLE"), "{refused}");
    }
    agent.ok(&["group", "online", "store"]);
    wait_until("the copy active again, with generation 2", MINUTE, || {
        let (resource, copies) = copies(&agent)?;
        let copy = copies.first()?;
        (resource["state"] == "Online" && copy["state"] == "active" && copy["generation"] == 2)
            .then_some(())
    });
    let answer = put(address, "alice", "after the step-down");
    assert!(answer.starts_with("OK "), "{answer}");

    // The agent's shutdown stops the active copy's service: the port closes.
    agent.stop();
    assert!(
        TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
        "the store still answers after the agent stopped"
    );
}

#[test]
fn copies_a_resource_cannot_have_are_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sleep = "/usr/bin/sleep";
    let base = format!(
        r#"
[node]
name = "solo"
data_dir = "data"

[plugins.process]
allow_programs = ["{sleep}"]
"#
    );

    // From the configuration file: the agent does not start.
    let bad = format!(
        "{base}\n[[resource]]\nname = \"sleeper\"\ntype = \"process\"\ncopies = \"all\"\n\
         properties = {{ program = \"{sleep}\", args = \"600\" }}\n"
    );
    std::fs::write(dir.path().join("bad.toml"), bad).expect("config");
    let out = std::process::Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(dir.path().join("bad.toml"))
        .current_dir(dir.path())
        .output()
        .expect("run the agent");
    assert!(!out.status.success(), "started with copies of a process");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"process\" is not replicated")
            && stderr.contains(warden::contract::REPLICATION_EXPORT)
            && stderr.contains("sleeper"),
        "{stderr}"
    );

    // From the API, on a running agent: each refused, nothing created.
    let running = dir.path().join("running");
    std::fs::create_dir_all(&running).expect("a directory for the agent");
    let agent = AgentProcess::start(&running, &base);
    let store = mail_services().join("mail-store");
    let store = store.display();
    let cases = [
        (
            format!(
                r#"{{"name": "sleeper", "type": "process", "copies": "all",
                    "properties": {{"program": "{sleep}", "args": "600"}}}}"#
            ),
            vec!["is not replicated", warden::contract::REPLICATION_EXPORT],
        ),
        (
            format!(
                r#"{{"name": "box", "type": "store", "copies": ["solo", "elsewhere"],
                    "properties": {{"program": "{store}", "address": "127.0.0.1:1",
                    "replication-listen": "127.0.0.1:2", "replicate-from": "127.0.0.1:2"}}}}"#
            ),
            vec!["copies names elsewhere", "not a possible owner"],
        ),
        (
            format!(
                r#"{{"name": "box", "type": "store", "max_lag_on_failover": 10,
                    "properties": {{"program": "{store}", "address": "127.0.0.1:1"}}}}"#
            ),
            vec!["max_lag_on_failover", "has no copies"],
        ),
        (
            format!(
                r#"{{"name": "box", "type": "store", "copies": "some",
                    "properties": {{"program": "{store}", "address": "127.0.0.1:1"}}}}"#
            ),
            vec!["copies: ", "or a list of node names"],
        ),
        (
            format!(
                r#"{{"name": "box", "type": "store", "copies": [],
                    "properties": {{"program": "{store}", "address": "127.0.0.1:1"}}}}"#
            ),
            vec!["copies is an empty list"],
        ),
        (
            format!(
                r#"{{"name": "box", "type": "store", "copies": "all", "max_lag_on_failover": -1,
                    "properties": {{"program": "{store}", "address": "127.0.0.1:1"}}}}"#
            ),
            vec!["max_lag_on_failover: ", "0 or more"],
        ),
    ];
    for (body, words) in cases {
        let (code, answer) = request(agent.api, "POST", "/v1/resources", &body);
        assert!((400..500).contains(&code), "{body}: {code} {answer}");
        for word in words {
            assert!(answer.contains(word), "{body}: {answer} lacks {word:?}");
        }
    }
    let status: Value = serde_json::from_str(&agent.ok(&["status", "--json"])).expect("status");
    assert_eq!(status["groups"], serde_json::json!([]), "{status}");
    agent.stop();
}
