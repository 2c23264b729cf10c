//! The mail store with copies on the lab cluster (issue #16), for every
//! lab test of copies (`cluster/copies_failover.rs`, `copies_fencing.rs`,
//! `copies_async.rs`) and the copies benchmark
//! (`benches/copies_failover.rs`): the group `evs1` of ip-address <- store
//! <- smtp-instance, the store with copies, each in its node's own data
//! directory and on its node's loopback, passive copies pulling the log
//! from the virtual address; what `warden status` says of the copies;
//! cutting a node's replication; the stores' contents; a sequential SMTP
//! writer from the client host, and writers inside one node's namespace
//! that talk to that node's own services.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::cluster::Setup;
use super::lab_cluster::{CLIENT, LabCluster, NODE_NAME};
use super::netlab::{Lab, Way};
use super::virtual_server::{Answer, Probe, VIP, message_text, stored_probes_at, vip_config};

pub const SMTP_PORT: u16 = 25;
pub const STORE_PORT: u16 = 7100;
pub const REPLICATION_PORT: u16 = 7200;

/// How the store's copies replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A write is acknowledged once a passive copy has it on disk.
    Sync,
    /// Acknowledged after the active's own fsync; the active refuses writes
    /// while `max_async_lag` records are on no passive copy (no limit if
    /// `None`); the policy activates a copy automatically only within
    /// `max_lag_on_failover` (the policy's default if `None`).
    Async {
        max_async_lag: Option<u64>,
        max_lag_on_failover: Option<u64>,
    },
}

impl Mode {
    /// Asynchronous, with neither limit set.
    pub const ASYNC: Mode = Mode::Async {
        max_async_lag: None,
        max_lag_on_failover: None,
    };
}

/// The lab cluster's configuration: `evs1` with the store's copies on
/// `copies` (a TOML value: `"all"` or a list of nodes) in `mode`.
pub fn setup(mode: Mode, copies: &str) -> Setup {
    let bin = super::mail_services();
    let (store, smtp) = (bin.join("mail-store"), bin.join("mail-smtp"));
    let (store, smtp) = (store.display(), smtp.display());
    let vip = vip_config("evs1-ip", "evs1");
    let (replication, lag_limit) = match mode {
        Mode::Sync => ("sync-mode = \"sync\"".to_string(), String::new()),
        Mode::Async {
            max_async_lag,
            max_lag_on_failover,
        } => (
            match max_async_lag {
                Some(lag) => format!("sync-mode = \"async\", max-async-lag = {lag}"),
                None => "sync-mode = \"async\"".to_string(),
            },
            max_lag_on_failover
                .map(|lag| format!("max_lag_on_failover = {lag}\n"))
                .unwrap_or_default(),
        ),
    };
    Setup {
        extra_config: format!(
            r#"
{vip}
[plugins.store]
allow_programs = ["{store}"]

[plugins.smtp-instance]
allow_programs = ["{smtp}"]
env = {{ MAIL_HOSTNAME = "{NODE_NAME}" }}

[[group]]
name = "evs1"
preferred_owners = ["n1", "n2", "n3"]
failback = "off"
failover_threshold = 10

[[resource]]
name = "store"
type = "store"
group = "evs1"
depends_on = ["evs1-ip"]
copies = {copies}
{lag_limit}is_alive_interval_ms = 500
properties = {{ program = "{store}", address = "127.0.0.1:{STORE_PORT}", replication-listen = "0.0.0.0:{REPLICATION_PORT}", replicate-from = "{VIP}:{REPLICATION_PORT}", {replication} }}

[[resource]]
name = "smtp"
type = "smtp-instance"
group = "evs1"
depends_on = ["store"]
properties = {{ program = "{smtp}", address = "{VIP}:{SMTP_PORT}", store = "127.0.0.1:{STORE_PORT}" }}
"#
        ),
        recorded: true,
        ..Setup::default()
    }
}

/// The writer's probe: one SMTP message through the virtual server.
pub fn smtp_probe() -> Probe {
    Probe::SmtpAt(SocketAddr::new(IpAddr::V4(VIP), SMTP_PORT))
}

/// The store resource and its copies as node `i`'s `warden status --json`
/// shows them.
pub fn copies(cluster: &LabCluster, i: usize) -> Option<(Value, Vec<Value>)> {
    let out = cluster.cli(i, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).ok()?;
    let store = status["groups"]
        .as_array()?
        .iter()
        .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
        .find(|r| r["name"] == "store")?;
    let copies = store["copies"].as_array()?.clone();
    Some((store, copies))
}

/// The copy on `node` among `copies`.
pub fn on<'a>(copies: &'a [Value], node: &str) -> Option<&'a Value> {
    copies.iter().find(|c| c["node"] == node)
}

/// Whether node `i` sees `active` running the active copy of `generation`
/// and every node of `passives` a healthy passive copy of it, following
/// `active` and caught up (lag 0).
pub fn settled(
    cluster: &LabCluster,
    i: usize,
    active: &str,
    passives: &[&str],
    generation: u64,
) -> bool {
    let Some((store, copies)) = copies(cluster, i) else {
        return false;
    };
    store["generation"] == generation
        && on(&copies, active).is_some_and(|c| c["state"] == "active")
        && passives.iter().all(|n| {
            on(&copies, n).is_some_and(|c| {
                c["state"] == "passive"
                    && c["health"] == "healthy"
                    && c["generation"] == generation
                    && c["source"] == active
                    && c["lag"] == 0
            })
        })
}

/// The numbers of the probes whose message the store on `node` holds
/// (asked on that node's loopback, where each node's store listens).
pub fn stored_probes(lab: &Lab, node: &str) -> BTreeSet<u64> {
    let address = SocketAddr::from(([127, 0, 0, 1], STORE_PORT));
    lab.within(node, || stored_probes_at(address))
}

/// The probes answered 250 among `answers`.
pub fn accepted(answers: &[Answer]) -> BTreeSet<u64> {
    answers
        .iter()
        .filter(|a| a.good.is_some())
        .map(|a| a.n)
        .collect()
}

/// `node`'s replication traffic dropped both ways on its link (until
/// `Lab::heal`): its passive copy holds what it copied and hears nothing
/// more; as the active, it would ship nothing.
pub fn cut_replication(lab: &Lab, node: &str) {
    lab.drop_tcp(node, Way::Out, &format!("tcp dport {REPLICATION_PORT}"));
    lab.drop_tcp(node, Way::In, &format!("tcp sport {REPLICATION_PORT}"));
}

/// Node `i`'s event history (`events.jsonl`), empty if unreadable.
pub fn history(cluster: &LabCluster, i: usize) -> String {
    std::fs::read_to_string(cluster.node_dir(i).join("data").join("events.jsonl"))
        .unwrap_or_default()
}

/// A writer sending one SMTP message after another from the client host,
/// for as long as `during` runs; `during` can see what it got so far.
pub struct Writer {
    answers: Mutex<Vec<Answer>>,
    stop: AtomicBool,
}

impl Writer {
    /// The probes answered 250 so far.
    pub fn accepted(&self) -> BTreeSet<u64> {
        accepted(&self.answers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// When the first message after `after` was answered 250 by a node
    /// other than `not`, if one was.
    pub fn first_accepted_elsewhere(&self, after: Instant, not: &str) -> Option<Instant> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|a| a.good_from())
            .filter(|(at, node)| *at > after && *node != not)
            .map(|(at, _)| at)
            .min()
    }

    /// Run `during` while writing; what it returned and every answer.
    pub fn writing<T>(lab: &Lab, during: impl FnOnce(&Writer) -> T) -> (T, Vec<Answer>) {
        let writer = Writer {
            answers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        };
        let probe = smtp_probe();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                lab.within(CLIENT, || {
                    while !writer.stop.load(Ordering::Relaxed) {
                        let answer = probe.run();
                        let refused = answer.good.is_none();
                        writer
                            .answers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(answer);
                        // A refusal (451 at the lag limit, no server during
                        // a failover) is not retried at once.
                        std::thread::sleep(if refused {
                            Duration::from_millis(100)
                        } else {
                            Duration::from_millis(20)
                        });
                    }
                })
            });
            // Stopped however `during` ends (a panic included), or the
            // scope would wait for the writer forever.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&writer.stop);
            during(&writer)
        });
        let answers = writer
            .answers
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        (result, answers)
    }
}

/// Wait until n1 runs the active copy of generation 1 and every node of
/// `passives` a healthy passive copy of it; panics with what was last seen.
pub fn wait_settled(cluster: &LabCluster, passives: &[&str]) {
    let mut last = None;
    let settled = (0..1200).find_map(|_| {
        let (store, copies) = copies(cluster, 0)?;
        last = Some(copies.clone());
        let settled = store["generation"] == 1
            && on(&copies, "n1")?["state"] == "active"
            && passives.iter().all(|n| {
                on(&copies, n).is_some_and(|c| {
                    c["state"] == "passive" && c["health"] == "healthy" && c["generation"] == 1
                })
            });
        if settled {
            Some(())
        } else {
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    });
    assert!(
        settled.is_some(),
        "the copies did not settle; last seen {last:#?}; logs in {}",
        cluster.dir.path().display()
    );
}

/// When (ms since the Unix epoch) the history of node `i` last recorded
/// its copy of `store` active.
pub fn activated_at(cluster: &LabCluster, i: usize) -> Option<u64> {
    super::process::events(&cluster.node_dir(i).join("data").join("events.jsonl"))
        .iter()
        .filter(|e| {
            e["resource"] == "store"
                && e["event"] == "copy"
                && e["call"] == "activate"
                && e["outcome"] == "the copy is active"
        })
        .filter_map(|e| e["at_ms"].as_u64())
        .max()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One write a writer tried.
#[derive(Debug, Clone)]
pub struct Write1 {
    /// The message's number (`message_text(n)` is in its body).
    pub n: u64,
    /// `smtp` or `put`.
    pub via: &'static str,
    /// When it was sent (ms since the Unix epoch).
    pub sent_ms: u64,
    /// When the node acknowledged it (250, `OK`), if it did.
    pub acked_ms: Option<u64>,
    /// What came instead of an acknowledgement.
    pub refused: Option<String>,
}

/// Numbers for direct `PUT`s, far above any SMTP probe's.
const PUT_NUMBERS: u64 = 1_000_000;

/// Write to `node`'s own services from inside its namespace until `stop`:
/// one thread sends a message over SMTP to the virtual address (which
/// reaches `node`'s SMTP server while `node` holds the address; an answer
/// from another node's server does not count as `node`'s), one `PUT`s
/// straight to the store on `node`'s loopback. Each write waits for its
/// answer before the next; every write tried.
pub fn write_to(lab: &Lab, node: &str, stop: &AtomicBool) -> Vec<Write1> {
    let writes = Mutex::new(Vec::new());
    lab.within(node, || {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let probe = smtp_probe();
                while !stop.load(Ordering::Relaxed) {
                    let (sent_ms, sent) = (now_ms(), Instant::now());
                    let answer = probe.run();
                    let acked_ms = answer
                        .good_from()
                        .filter(|(_, by)| *by == node)
                        .map(|(at, _)| sent_ms + at.duration_since(sent).as_millis() as u64);
                    let refused = match (&answer.failure, answer.good_from()) {
                        (Some(why), _) => Some(why.clone()),
                        (None, Some((_, by))) if by != node => Some(format!("answered by {by}")),
                        _ => None,
                    };
                    push(&writes, answer.n, "smtp", sent_ms, acked_ms, refused);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            scope.spawn(|| {
                let address = SocketAddr::from(([127, 0, 0, 1], STORE_PORT));
                let mut n = PUT_NUMBERS;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sent_ms = now_ms();
                    let (acked_ms, refused) = match put(address, n) {
                        Ok(()) => (Some(now_ms()), None),
                        Err(why) => (None, Some(why)),
                    };
                    push(&writes, n, "put", sent_ms, acked_ms, refused);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        });
    });
    let mut writes = writes.into_inner().unwrap_or_else(|e| e.into_inner());
    writes.sort_by_key(|w| w.sent_ms);
    writes
}

fn push(
    writes: &Mutex<Vec<Write1>>,
    n: u64,
    via: &'static str,
    sent_ms: u64,
    acked_ms: Option<u64>,
    refused: Option<String>,
) {
    writes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Write1 {
            n,
            via,
            sent_ms,
            acked_ms,
            refused,
        });
}

/// One `PUT` of message `n` to the store at `address`: `Ok` only for its
/// `OK <seq>`; a refusal (`UNAVAILABLE`, `ERR`), no connection or no
/// answer within 10 s is the error.
fn put(address: SocketAddr, n: u64) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_millis(900))
        .map_err(|e| format!("connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = format!("Subject: put {n}\r\n\r\n{}\r\n", message_text(n));
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    write!(writer, "PUT fenced {}\n{body}", body.len()).map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer: {e}"))?;
    let line = line.trim_end();
    if line.starts_with("OK ") {
        Ok(())
    } else if line.is_empty() {
        Err("closed without an answer".to_string())
    } else {
        Err(line.to_string())
    }
}
