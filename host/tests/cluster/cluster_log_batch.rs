//! Batched appends to the cluster's log (`log::append_batch`), against a
//! real etcd (Debian's etcd-server, one member): a batch is consecutive
//! entries written by one transaction, writers racing with batches never
//! split one another's, and a batch beyond the limits is refused before
//! anything is sent.

use std::collections::BTreeMap;

use etcd_client::GetOptions;
use warden::cluster::Keys;
use warden::cluster::etcd::Etcd;
use warden::cluster::log::{self, BATCH_ENTRIES, LogEntry, LogEvent};
use warden_policy::Event;

use crate::common::cluster::{EtcdTurn, one_at_a_time, start_single_etcd};

/// A fresh 1-member etcd and a client of it.
struct Fresh {
    _dir: tempfile::TempDir,
    _server: crate::common::cluster::Etcd,
    etcd: Etcd,
    endpoints: Vec<String>,
    keys: Keys,
    _turn: EtcdTurn,
}

async fn fresh() -> Fresh {
    let turn = tokio::task::block_in_place(one_at_a_time);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start_single_etcd(dir.path()));
    let endpoints: Vec<String> = server
        .clients
        .iter()
        .map(|c| format!("http://{c}"))
        .collect();
    let etcd = Etcd::connect(&endpoints).await.expect("connects");
    Fresh {
        _dir: dir,
        _server: server,
        etcd,
        endpoints,
        keys: Keys::new("batch-test"),
        _turn: turn,
    }
}

/// The `n`th report of writer `w`'s batch `b`.
fn report(w: usize, b: usize, n: usize) -> LogEvent {
    LogEvent::Policy(Event::ResourceOnline {
        resource: format!("w{w}-b{b}-n{n}"),
        node: format!("n{w}"),
    })
}

/// The resource an entry reports online.
fn resource(entry: &LogEntry) -> &str {
    match &entry.event {
        LogEvent::Policy(Event::ResourceOnline { resource, .. }) => resource,
        other => panic!("entry {} is not a report: {other:?}", entry.seq),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_consecutive_entries_written_by_one_transaction() {
    let f = fresh().await;
    let first = log::append(&f.etcd, &f.keys, "n0", &report(0, 0, 0))
        .await
        .expect("a lone append");
    assert_eq!(first, 1);
    let events: Vec<LogEvent> = (0..10).map(|n| report(0, 1, n)).collect();
    let appended = log::append_batch(&f.etcd, &f.keys, "n0", &events)
        .await
        .expect("the batch");
    assert_eq!((appended.first, appended.last, appended.races), (2, 11, 0));

    let (entries, _) = log::read_from(&f.etcd, &f.keys, 1).await.expect("reads");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    for (entry, event) in entries[1..].iter().zip(&events) {
        assert_eq!(&entry.event, event, "entry {} out of order", entry.seq);
        assert_eq!(entry.origin, "n0");
    }
    let ids: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 11, "every entry has an id of its own");

    // One transaction: the batch's entries and the head share one revision.
    let (_, mut client) = f.etcd.preferred();
    let raw = client
        .get(f.keys.log_prefix(), Some(GetOptions::new().with_prefix()))
        .await
        .expect("raw read");
    let revisions: Vec<i64> = raw.kvs().iter().map(|kv| kv.mod_revision()).collect();
    assert_eq!(revisions.len(), 11);
    assert!(revisions[1..].iter().all(|r| *r == revisions[1]));
    assert_ne!(revisions[0], revisions[1], "the lone append was its own");
    let head = client.get(f.keys.log_head(), None).await.expect("head");
    let head = head.kvs().first().expect("a head");
    assert_eq!(head.value_str().expect("text"), "11");
    assert_eq!(head.mod_revision(), revisions[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_batched_writers_never_split_a_batch_nor_lose_an_entry() {
    let f = fresh().await;
    const WRITERS: usize = 4;
    const BATCHES: usize = 12;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // Each writer a client of its own, as each agent is.
        let etcd = Etcd::connect(&f.endpoints).await.expect("connects");
        let keys = f.keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut landed = Vec::new();
            let mut races = 0;
            for b in 0..BATCHES {
                // Sizes from 1 to the limit, different for each writer.
                let size = 1 + (w * 17 + b * 29) % BATCH_ENTRIES;
                let events: Vec<LogEvent> = (0..size).map(|n| report(w, b, n)).collect();
                let appended = log::append_batch(&etcd, &keys, &format!("n{w}"), &events)
                    .await
                    .expect("appends");
                assert_eq!(appended.last - appended.first + 1, size as u64);
                races += appended.races;
                landed.push((b, appended.first, size));
            }
            (landed, races)
        }));
    }
    let mut expected = 0;
    let mut races = 0;
    let mut landed = Vec::new();
    for (w, task) in tasks.into_iter().enumerate() {
        let (theirs, lost) = task.await.expect("a writer");
        expected += theirs.iter().map(|(_, _, size)| size).sum::<usize>();
        races += lost;
        landed.extend(
            theirs
                .into_iter()
                .map(|(b, first, size)| (w, b, first, size)),
        );
    }
    eprintln!("{expected} entries from {WRITERS} writers; {races} races lost");

    let (entries, _) = log::read_from(&f.etcd, &f.keys, 1).await.expect("reads");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=expected as u64).collect::<Vec<_>>(),
        "no gap, no extra"
    );
    let by_seq: BTreeMap<u64, &LogEntry> = entries.iter().map(|e| (e.seq, e)).collect();
    for (w, b, first, size) in landed {
        for n in 0..size {
            let entry = by_seq[&(first + n as u64)];
            assert_eq!(
                resource(entry),
                format!("w{w}-b{b}-n{n}"),
                "writer {w}'s batch {b} is split or out of order at entry {}",
                entry.seq
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beyond_the_limits_is_refused_and_nothing_is_written() {
    let f = fresh().await;
    let too_many: Vec<LogEvent> = (0..=BATCH_ENTRIES).map(|n| report(0, 0, n)).collect();
    let err = log::append_batch(&f.etcd, &f.keys, "n0", &too_many)
        .await
        .expect_err("65 events in one transaction");
    assert!(
        format!("{err:#}").contains(&format!("at most {BATCH_ENTRIES}")),
        "{err:#}"
    );
    let err = log::append_batch(&f.etcd, &f.keys, "n0", &[])
        .await
        .expect_err("no events");
    assert!(format!("{err:#}").contains("no events"), "{err:#}");
    let (entries, _) = log::read_from(&f.etcd, &f.keys, 1).await.expect("reads");
    assert!(entries.is_empty(), "nothing written: {entries:?}");

    // The largest batch the link gathers (the limit in entries, the limit
    // in bytes) lands whole.
    let big = "x".repeat(log::BATCH_BYTES / BATCH_ENTRIES - 100);
    let full: Vec<LogEvent> = (0..BATCH_ENTRIES)
        .map(|n| {
            LogEvent::Policy(Event::ResourceFailed {
                resource: format!("r{n}"),
                node: "n0".to_string(),
                reason: big.clone(),
            })
        })
        .collect();
    let appended = log::append_batch(&f.etcd, &f.keys, "n0", &full)
        .await
        .expect("a full batch");
    assert_eq!((appended.first, appended.last), (1, BATCH_ENTRIES as u64));
    let (entries, _) = log::read_from(&f.etcd, &f.keys, 1).await.expect("reads");
    assert_eq!(entries.len(), BATCH_ENTRIES);
}
