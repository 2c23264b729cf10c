//! Issue #16: what a synchronous active copy with no passive copy
//! connected is. It keeps sync mode's promise (no write is acknowledged
//! that is on one disk only: the store answers `UNAVAILABLE`, SMTP 451),
//! and that is not a failure: the copy stays active, the resource Online,
//! its health `healthy` with the reason in `warden status` (`writes_refused`),
//! nothing restarts or moves for it. A real `warden agent` runs the
//! built-in `store` type over the real `mail-store`, with a copy on its
//! only node: no passive copy can ever connect.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::{mail_services, service_ports, wait_until};

const MINUTE: Duration = Duration::from_secs(60);
/// How long the store waits for a passive copy's acknowledgement.
const SYNC_TIMEOUT_MS: u64 = 5000;

fn config(address: SocketAddr, listen: SocketAddr) -> String {
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
is_alive_interval_ms = 300
properties = {{ program = "{store}", address = "{address}", replication-listen = "{listen}", replicate-from = "{listen}", sync-mode = "sync" }}
"#
    )
}

/// `PUT` of `body` at the store's client port: its answer line.
fn put(address: SocketAddr, body: &str) -> String {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("the store");
    stream
        .set_read_timeout(Some(Duration::from_millis(SYNC_TIMEOUT_MS * 3)))
        .expect("a timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    write!(writer, "PUT alice {}\n{body}", body.len()).expect("send PUT");
    let mut line = String::new();
    reader.read_line(&mut line).expect("the store's answer");
    line.trim_end().to_string()
}

#[test]
fn a_sync_active_copy_with_no_passive_refuses_writes_and_stays_active_and_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [address, listen] = service_ports::<2>();
    let agent = AgentProcess::start(dir.path(), &config(address, listen));

    let refused = "no passive copy connected: writes refused";
    let copy = wait_until("the active copy refusing writes, in status", MINUTE, || {
        let resource = agent.resource("store")?;
        let copy = resource["copies"].as_array()?.first()?.clone();
        (resource["state"] == "Online"
            && copy["state"] == "active"
            && copy["writes_refused"].as_str().is_some())
        .then_some(copy)
    });
    assert_eq!(copy["health"], "healthy", "{copy}");
    assert_eq!(copy["writes_refused"], refused, "{copy}");
    assert_eq!(copy["reason"], refused, "{copy}");

    // Sync mode's promise: nothing acknowledged from one disk.
    for i in 0..2 {
        let answer = put(address, &format!("message {i}"));
        assert!(
            answer.starts_with("UNAVAILABLE no passive copy confirmed message"),
            "message {i}: {answer}"
        );
    }

    // Not a failure: after many health checks and status polls the copy
    // is still active, the resource Online, never failed, never restarted.
    let checks_before = agent.resource("store").expect("the store")["checks"]
        .as_u64()
        .unwrap_or(0);
    wait_until("ten more health checks", MINUTE, || {
        let checks = agent.resource("store")?["checks"].as_u64()?;
        (checks >= checks_before + 10).then_some(())
    });
    let resource = agent.resource("store").expect("the store");
    assert_eq!(resource["state"], "Online", "{resource}");
    assert_eq!(resource["failures_in_period"], 0, "{resource}");
    assert_eq!(resource["generation"], 1, "activated once: {resource}");
    let history = agent.history();
    let activations = history
        .iter()
        .filter(|e| e["event"] == "copy" && e["call"] == "activate")
        .count();
    assert_eq!(activations, 1, "{history:#?}");
    assert!(
        history.iter().any(|e| {
            e["event"] == "copy"
                && e["call"] == "copy-status"
                && e["outcome"]
                    .as_str()
                    .is_some_and(|o| o.ends_with(&format!("healthy, refusing writes: {refused}")))
        }),
        "the history lacks the refusing status: {history:#?}"
    );
    let table = agent.ok(&["status"]);
    assert!(
        table.contains(&format!("healthy: {refused}")),
        "the table does not say it:\n{table}"
    );
}
