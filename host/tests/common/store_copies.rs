//! The mail store with copies on the lab cluster (issue #16), for the
//! asynchronous acceptance (`cluster/copies_async.rs`) and the copies
//! benchmark (`benches/copies_failover.rs`): the group `evs1` of
//! ip-address <- store <- smtp-instance, the store with a copy on every
//! node, each in its node's own data directory and on its node's loopback,
//! passive copies pulling the log from the virtual address; what `warden
//! status` says of the copies; cutting a node's replication; the stores'
//! contents; a sequential SMTP writer.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::Setup;
use super::lab_cluster::{CLIENT, LabCluster, NODE_NAME};
use super::netlab::{Lab, Way};
use super::virtual_server::{Answer, Probe, VIP, stored_probes_at, vip_config};

pub const SMTP_PORT: u16 = 25;
pub const STORE_PORT: u16 = 7100;
pub const REPLICATION_PORT: u16 = 7200;

/// How the store's copies replicate.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// A write is acknowledged once a passive copy has it on disk.
    Sync,
    /// Acknowledged after the active's own fsync; the active refuses writes
    /// while `max_async_lag` records are on no passive copy; the policy
    /// activates a copy automatically only within `max_lag_on_failover`.
    Async {
        max_async_lag: u64,
        max_lag_on_failover: u64,
    },
}

/// The lab cluster's configuration: `evs1` with the store's copies on
/// every node in `mode`.
pub fn setup(mode: Mode) -> Setup {
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
            format!("sync-mode = \"async\", max-async-lag = {max_async_lag}"),
            format!("max_lag_on_failover = {max_lag_on_failover}\n"),
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
copies = "all"
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
