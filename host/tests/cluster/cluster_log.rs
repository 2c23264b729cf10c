//! The cluster's log against a real etcd (Debian's etcd-server, one
//! member): snapshots, compaction, and where a joining node starts.
//!
//! The long log is written by a batched writer (100 entries and the head
//! per transaction, the same keys and encoding as `log::append`): 100 000
//! appends through the real path, two requests and a disk sync each, take
//! minutes on the 2-core test machine. The appends that race a compaction
//! go through the real path.

use crate::common;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::common::cluster::{EtcdTurn, one_at_a_time, start_single_etcd};
use etcd_client::{GetOptions, PutOptions, Txn, TxnOp};
use warden::cluster::Keys;
use warden::cluster::compact::compact;
use warden::cluster::etcd::Etcd;
use warden::cluster::log::{self, LogEntry, LogEvent};
use warden::cluster::snapshot::{LogSnapshot, Written, write_snapshot};
use warden::cluster::start::{Start, read_start};
use warden::config::AgentConfig;
use warden::desired::Desired;
use warden_policy::{ClusterConfig, Engine, Event, Millis};

/// One node, one offline group with one process resource.
const CONFIG: &str = common::cluster::ONE_GROUP_CONFIG;

const NODES: [&str; 2] = ["n1", "n2"];

/// A cluster's log in a fresh 1-member etcd.
struct Log {
    _dir: tempfile::TempDir,
    _etcd: common::cluster::Etcd,
    etcd: Etcd,
    keys: Keys,
    desired: Desired,
    /// Dropped last: no other etcd of the binary runs meanwhile (this
    /// one's batched writes would starve a cluster test's lease renewals).
    _one_at_a_time: EtcdTurn,
}

impl Log {
    /// A new etcd whose log holds its configuration (entry 1, appended the
    /// real way).
    async fn new() -> Log {
        let one_at_a_time = tokio::task::block_in_place(one_at_a_time);
        let dir = tempfile::tempdir().expect("tempdir");
        let server = tokio::task::block_in_place(|| start_single_etcd(dir.path()));
        let endpoints: Vec<String> = server
            .clients
            .iter()
            .map(|c| format!("http://{c}"))
            .collect();
        let etcd = Etcd::connect(&endpoints).await.expect("connects");
        let keys = Keys::new("log-test");
        let desired = Desired::from_file(&AgentConfig::parse(CONFIG).expect("config"));
        let configure = LogEvent::Configure {
            nodes: NODES.map(String::from).to_vec(),
            desired: desired.clone(),
        };
        let seq = log::append(&etcd, &keys, "n1", &configure)
            .await
            .expect("the configuration is appended");
        assert_eq!(seq, 1);
        Log {
            _dir: dir,
            _etcd: server,
            etcd,
            keys,
            desired,
            _one_at_a_time: one_at_a_time,
        }
    }

    /// The engine's configuration, as a node derives it.
    fn config(&self) -> ClusterConfig {
        let mut config = self
            .desired
            .cluster_config("n1", &BTreeMap::new())
            .expect("valid");
        config.nodes = NODES.map(String::from).to_vec();
        config
    }

    /// Entries `from..=to`, written in transactions of 100 (and the head).
    async fn bulk(&self, from: u64, to: u64) {
        let (_, mut client) = self.etcd.preferred();
        let mut seq = from;
        while seq <= to {
            let last = (seq + 99).min(to);
            let mut ops: Vec<TxnOp> = (seq..=last)
                .map(|s| {
                    let body = serde_json::to_vec(&entry(s)).expect("encodes");
                    TxnOp::put(self.keys.entry(s), body, None)
                })
                .collect();
            ops.push(TxnOp::put(self.keys.log_head(), last.to_string(), None));
            client
                .txn(Txn::new().and_then(ops))
                .await
                .expect("a batch of entries");
            seq = last + 1;
        }
    }

    /// How many keys are under the log's prefix.
    async fn entry_keys(&self) -> i64 {
        let (_, mut client) = self.etcd.preferred();
        client
            .get(
                self.keys.log_prefix(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .expect("counts")
            .count()
    }

    /// etcd's database: its size and the part in use (bytes).
    async fn db(&self) -> (i64, i64) {
        let (_, mut client) = self.etcd.preferred();
        let status = client.status().await.expect("status");
        (status.db_size(), status.raft_used_db_size())
    }

    async fn put_raw(&self, key: String, value: Vec<u8>) {
        let (_, mut client) = self.etcd.preferred();
        client
            .put(key, value, None::<PutOptions>)
            .await
            .expect("put");
    }

    /// A snapshot of entry `seq` with the state of a fresh engine.
    fn snapshot_of(&self, seq: u64, engine: &Engine) -> LogSnapshot {
        LogSnapshot::new(
            seq,
            Millis(seq * 1000),
            NODES.map(String::from).to_vec(),
            self.desired.clone(),
            engine.snapshot(),
        )
    }
}

/// The small entry the bulk writer writes as entry `seq`: events that move
/// the engine about (nodes up and down, the group asked on and off).
fn entry(seq: u64) -> LogEntry {
    let node = NODES[(seq / 7 % 2) as usize].to_string();
    let event = match seq % 7 {
        0 => Event::NodeUp(node),
        1 => Event::GroupOnlineRequested("web".to_string()),
        2 => Event::ResourceOnline {
            resource: "counter".to_string(),
            node,
        },
        3 => Event::Tick,
        4 => Event::GroupOfflineRequested("web".to_string()),
        5 => Event::NodeDown(node),
        _ => Event::NodePaused(node),
    };
    LogEntry {
        seq,
        at: Millis(seq * 1000),
        origin: "bulk".to_string(),
        id: format!("bulk.{seq}"),
        event: LogEvent::Policy(event),
    }
}

/// Apply `entries` as a node's engine does (the first configuration is the
/// one the engine was built from).
fn replay(engine: &mut Engine, entries: &[LogEntry]) {
    for entry in entries {
        if let LogEvent::Policy(event) = &entry.event {
            engine.handle(event.clone(), entry.at);
        }
    }
}

fn seqs(start: &Start) -> Vec<u64> {
    start.entries.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_of_a_log_of_100_000_entries_starts_from_the_snapshot() {
    const ENTRIES: u64 = 100_000;
    let log = Log::new().await;
    let started = Instant::now();
    log.bulk(2, ENTRIES).await;
    println!("wrote {ENTRIES} entries in {:?}", started.elapsed());

    let started = Instant::now();
    let full = read_start(&log.etcd, &log.keys).await.expect("reads");
    let full_read = started.elapsed();
    assert!(full.snapshot.is_none() && full.refused.is_none());
    assert_eq!(full.entries.len() as u64, ENTRIES);
    assert_eq!(full.last_seq(), ENTRIES);

    // The state after entry `at`, as every replica has it.
    let at = ENTRIES - 10;
    let mut engine = Engine::new(log.config()).expect("valid");
    replay(&mut engine, &full.entries[..at as usize]);
    let snapshot = log.snapshot_of(at, &engine);
    assert_eq!(
        write_snapshot(&log.etcd, &log.keys, &snapshot)
            .await
            .expect("writes"),
        Written::Written
    );
    for node in NODES {
        log::append(
            &log.etcd,
            &log.keys,
            node,
            &LogEvent::Policy(Event::NodeUp(node.to_string())),
        )
        .await
        .expect("appends");
    }
    let (db_before, in_use_before) = log.db().await;
    let started = Instant::now();
    let done = compact(&log.etcd, &log.keys, at).await.expect("compacts");
    let compaction = started.elapsed();
    assert_eq!(done.deleted, at, "every entry the snapshot covers");
    assert!(done.revision > 0);
    let keys_left = log.entry_keys().await;
    assert_eq!(
        keys_left, 12,
        "10 entries after the snapshot and 2 appended"
    );

    let started = Instant::now();
    let start = read_start(&log.etcd, &log.keys).await.expect("reads");
    let snapshot_read = started.elapsed();
    let restored = start.snapshot.as_ref().expect("the snapshot");
    assert_eq!(restored, &snapshot);
    assert_eq!(seqs(&start), (at + 1..=ENTRIES + 2).collect::<Vec<_>>());
    assert_eq!(start.configuration().map(|(n, _)| n.len()), Some(2));

    // The snapshot and the entries after it give the state the whole log gives.
    let mut from_snapshot = restored.restore_engine(log.config()).expect("restores");
    replay(&mut from_snapshot, &start.entries);
    let mut whole = Engine::new(log.config()).expect("valid");
    replay(&mut whole, &full.entries);
    replay(&mut whole, &start.entries[start.entries.len() - 2..]);
    assert_eq!(from_snapshot.snapshot(), whole.snapshot());

    // Give etcd's background compaction a moment before measuring it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (db_after, in_use_after) = log.db().await;
    println!(
        "joiner's start at {ENTRIES} entries: whole log {full_read:?}, snapshot + {} entries \
         {snapshot_read:?}; compaction of {} entries {compaction:?}; keys under the log prefix \
         after it: {keys_left}; etcd db {db_before} B ({in_use_before} B in use) before, \
         {db_after} B ({in_use_after} B in use) after",
        start.entries.len(),
        done.deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_concurrent_with_compaction_is_never_lost() {
    const ENTRIES: u64 = 20_000;
    const APPENDS: usize = 300;
    let log = Log::new().await;
    log.bulk(2, ENTRIES).await;
    let engine = Engine::new(log.config()).expect("valid");
    write_snapshot(&log.etcd, &log.keys, &log.snapshot_of(ENTRIES, &engine))
        .await
        .expect("writes");
    let refused = compact(&log.etcd, &log.keys, ENTRIES + 1)
        .await
        .expect_err("not beyond the snapshot");
    assert!(
        format!("{refused:#}").contains("covers entries up to 20000"),
        "{refused:#}"
    );

    let appender = {
        let (etcd, keys) = (log.etcd.clone(), log.keys.clone());
        tokio::spawn(async move {
            let mut landed = Vec::new();
            for i in 0..APPENDS {
                let event = LogEvent::Policy(Event::NodeUp(NODES[i % 2].to_string()));
                landed.push(
                    log::append(&etcd, &keys, "n2", &event)
                        .await
                        .expect("appends"),
                );
            }
            landed
        })
    };
    let started = Instant::now();
    let done = compact(&log.etcd, &log.keys, ENTRIES)
        .await
        .expect("compacts");
    let compaction = started.elapsed();
    let landed = appender.await.expect("the appender");
    assert_eq!(done.deleted, ENTRIES);

    let start = read_start(&log.etcd, &log.keys).await.expect("reads");
    assert_eq!(start.snapshot.as_ref().map(|s| s.seq), Some(ENTRIES));
    let read = seqs(&start);
    assert_eq!(landed, read, "every append, in order, and nothing else");
    assert_eq!(read.len(), APPENDS);
    assert_eq!(log.entry_keys().await, APPENDS as i64);
    println!(
        "compaction of {ENTRIES} entries took {compaction:?} while {APPENDS} appends ran; all \
         of them are in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_never_overwrites_a_newer_one() {
    let log = Log::new().await;
    log.bulk(2, 300).await;
    let engine = Engine::new(log.config()).expect("valid");
    let write = |seq: u64| {
        let (etcd, keys, snapshot) = (
            log.etcd.clone(),
            log.keys.clone(),
            log.snapshot_of(seq, &engine),
        );
        async move {
            write_snapshot(&etcd, &keys, &snapshot)
                .await
                .expect("writes")
        }
    };
    assert_eq!(write(200).await, Written::Written);
    assert_eq!(write(100).await, Written::Kept { there: 200 });
    assert_eq!(write(200).await, Written::Kept { there: 200 });
    // Two writers at once: the newer one stands, whichever lands last.
    let (a, b) = tokio::join!(tokio::spawn(write(250)), tokio::spawn(write(240)));
    println!("250: {:?}, 240: {:?}", a.expect("task"), b.expect("task"));
    let start = read_start(&log.etcd, &log.keys).await.expect("reads");
    assert_eq!(start.snapshot.as_ref().map(|s| s.seq), Some(250));
    assert_eq!(seqs(&start), (251..=300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_future_snapshot_is_refused_and_the_start_falls_back_to_the_full_log() {
    let log = Log::new().await;
    log.bulk(2, 300).await;
    let key = log.keys.snapshot();

    log.put_raw(key.clone(), b"{\"format\": 1, \"seq\": ".to_vec())
        .await;
    let start = read_start(&log.etcd, &log.keys)
        .await
        .expect("the whole log");
    let refused = start.refused.clone().expect("the snapshot was refused");
    assert!(refused.contains(&key), "{refused}");
    assert!(start.snapshot.is_none());
    assert_eq!(seqs(&start), (1..=300).collect::<Vec<_>>());
    let err = compact(&log.etcd, &log.keys, 100)
        .await
        .expect_err("no usable snapshot");
    assert!(format!("{err:#}").contains(&key), "{err:#}");

    let engine = Engine::new(log.config()).expect("valid");
    let mut future = serde_json::to_value(log.snapshot_of(200, &engine)).expect("encodes");
    future["format"] = serde_json::json!(2);
    log.put_raw(key.clone(), future.to_string().into_bytes())
        .await;
    let start = read_start(&log.etcd, &log.keys)
        .await
        .expect("the whole log");
    let refused = start.refused.clone().expect("the snapshot was refused");
    assert!(
        refused.contains(&key) && refused.contains("format 2"),
        "{refused}"
    );
    assert_eq!(start.entries.len(), 300);

    // A newer agent's snapshot is never replaced by this agent's of the
    // same entry (or an older one): only by a later one. Once the entries
    // it covers are gone, a corrupt snapshot leaves a joiner nothing to
    // start from, and the error says so.
    assert_eq!(
        write_snapshot(&log.etcd, &log.keys, &log.snapshot_of(200, &engine))
            .await
            .expect("writes"),
        Written::Kept { there: 200 }
    );
    assert_eq!(
        write_snapshot(&log.etcd, &log.keys, &log.snapshot_of(250, &engine))
            .await
            .expect("writes"),
        Written::Written
    );
    compact(&log.etcd, &log.keys, 200).await.expect("compacts");
    log.put_raw(key.clone(), b"garbage".to_vec()).await;
    let err = read_start(&log.etcd, &log.keys)
        .await
        .expect_err("nothing to start from");
    let text = format!("{err:#}");
    assert!(
        text.contains(&key) && text.contains("compacted away"),
        "{text}"
    );
    println!("{text}");
}
