//! The store's promises: an acknowledged message survives kill -9, a torn
//! tail is cut and nothing else, SIGTERM is a clean dismount, and
//! `--verify` tells the three states apart.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use warden_mail_services::wal;

/// (seq, mailbox, body) of one message.
type Stored = (u64, String, Vec<u8>);

fn start_store(dir: &TempDir) -> Service {
    Service::start(STORE, &["--data", &dir.arg("s"), "--listen", "127.0.0.1:0"])
}

fn verify(dir: &TempDir) -> (i32, String) {
    let (code, out, _) = run(STORE, &["--data", &dir.arg("s"), "--verify"]);
    (code, out.trim().to_string())
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_message() {
    let dir = TempDir::new("crash");
    let mut store = start_store(&dir);
    let acked: Arc<Mutex<Vec<Stored>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|mbox| {
            let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), store.addr);
            thread::spawn(move || {
                let mut c = Line::connect(addr).unwrap();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = format!("{mbox} message {i}\n")
                        .repeat(1 + i % 7)
                        .into_bytes();
                    // Any failure means the store died under us: stop.
                    let Ok(reply) = c.put(mbox, &body) else { break };
                    let Some(seq) = reply.strip_prefix("OK ") else {
                        break;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push((seq.parse().unwrap(), mbox.to_string(), body));
                }
            })
        })
        .collect();
    // Let a good number through, then pull the plug mid-stream.
    let deadline = Instant::now() + Duration::from_secs(3);
    while acked.lock().unwrap().len() < 60 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    store.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "no PUT was acknowledged before the kill");

    let (code, line) = verify(&dir);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("dirty records="), "{line}");

    let mut store = start_store(&dir);
    store.wait_log("recovered ");
    let mut c = Line::connect(store.addr).unwrap();
    let status = c.cmd("STATUS");
    assert!(
        status.starts_with("STATUS clean=false records="),
        "{status}"
    );
    let all = c.all();
    // Every acknowledged message is there, byte for byte. (One more, written
    // but not yet acknowledged at the kill, may be there too.)
    for (seq, mbox, body) in &acked {
        let found = all.iter().find(|(s, _, _)| s == seq);
        assert_eq!(
            found,
            Some(&(*seq, mbox.clone(), body.clone())),
            "acknowledged seq {seq}"
        );
    }
    assert!(
        all.len() <= acked.len() + 2,
        "{} stored, {} acknowledged",
        all.len(),
        acked.len()
    );
    let seqs: Vec<u64> = all.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    // And the store goes on from there.
    let next = c.put("alice", b"after the crash").unwrap();
    assert_eq!(next, format!("OK {}", all.len() + 1));
}

#[test]
fn a_torn_tail_is_cut_off_and_nothing_else() {
    let dir = TempDir::new("torn");
    let wal_path = dir.join("s/wal.log");
    let mut store = start_store(&dir);
    let mut c = Line::connect(store.addr).unwrap();
    for i in 1..=3 {
        assert_eq!(
            c.put("alice", format!("body {i}").as_bytes()).unwrap(),
            format!("OK {i}")
        );
    }
    store.kill9();
    let good_len = fs::metadata(&wal_path).unwrap().len();

    // Half of the record that was being written when the power went.
    let record = wal::encode(4, "alice", b"this one was never acknowledged");
    let torn = record.len() / 2;
    OpenOptions::new()
        .append(true)
        .open(&wal_path)
        .unwrap()
        .write_all(&record[..torn])
        .unwrap();
    let (code, line) = verify(&dir);
    assert_eq!(code, 3, "{line}");
    assert!(
        line.starts_with(&format!("dirty records=3 torn_tail_bytes={torn} ")),
        "{line}"
    );

    let mut store = start_store(&dir);
    store.wait_log(&format!(
        "recovered 3 records, dropped a torn tail of {torn} bytes"
    ));
    assert_eq!(fs::metadata(&wal_path).unwrap().len(), good_len);
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd("STATUS"), "STATUS clean=false records=3 seq=3");
    assert_eq!(c.put("alice", b"four").unwrap(), "OK 4");

    // Garbage after a clean dismount: CLEAN is not trusted over the log.
    assert!(store.terminate().success());
    let len = fs::metadata(&wal_path).unwrap().len();
    let garbage = b"\x00garbage\xff\xfe WMR1 more";
    OpenOptions::new()
        .append(true)
        .open(&wal_path)
        .unwrap()
        .write_all(garbage)
        .unwrap();
    assert_eq!(verify(&dir).0, 3);
    let mut store = start_store(&dir);
    store.wait_log("CLEAN marker present but the log had a torn tail");
    store.wait_log(&format!(
        "recovered 4 records, dropped a torn tail of {} bytes",
        garbage.len()
    ));
    assert_eq!(fs::metadata(&wal_path).unwrap().len(), len);
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd("STATUS"), "STATUS clean=false records=4 seq=4");
}

#[test]
fn damage_before_the_end_refuses_to_mount() {
    let dir = TempDir::new("corrupt");
    let wal_path = dir.join("s/wal.log");
    let mut store = start_store(&dir);
    let mut c = Line::connect(store.addr).unwrap();
    for i in 1..=3 {
        c.put("bob", format!("message number {i}").as_bytes())
            .unwrap();
    }
    assert!(store.terminate().success());
    let mut bytes = fs::read(&wal_path).unwrap();
    bytes[wal::HEADER_LEN + 5] ^= 0x20; // inside record 1's body
    fs::write(&wal_path, &bytes).unwrap();

    let (code, line) = verify(&dir);
    assert_eq!(code, 4, "{line}");
    assert!(line.starts_with("corrupt ("), "{line}");
    let (code, _, err) = run(STORE, &["--data", &dir.arg("s"), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("refusing to mount"), "{err}");
    assert_eq!(
        fs::read(&wal_path).unwrap(),
        bytes,
        "a refused mount must not touch the log"
    );
}

#[test]
fn sigterm_and_dismount_are_clean() {
    let dir = TempDir::new("clean");
    let clean = dir.join("s/CLEAN");
    let mut store = start_store(&dir);
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd("PING"), "PONG");
    assert_eq!(c.cmd("STATUS"), "STATUS clean=true records=0 seq=0");
    c.put("alice", b"one").unwrap();
    c.put("bob", b"two").unwrap();
    assert!(!clean.exists(), "CLEAN while running");

    let status = store.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
    store.wait_log("clean dismount (SIGTERM): 2 records, seq 2");
    assert!(clean.exists());
    assert_eq!(verify(&dir), (0, "clean records=2".to_string()));

    let mut store = start_store(&dir);
    store.wait_log("mounted cleanly: 2 records, seq 2");
    assert!(!clean.exists(), "CLEAN must go while the store runs");
    let mut c = Line::connect(store.addr).unwrap();
    assert_eq!(c.cmd("STATUS"), "STATUS clean=true records=2 seq=2");
    assert_eq!(c.cmd("SEQ"), "SEQ 2");
    assert_eq!(c.cmd("GET alice"), "MSGS 1");
    assert_eq!(c.line().unwrap(), "1 3");
    assert_eq!(c.bytes(4), b"one\n");

    // The DISMOUNT command does the same, answering OK first.
    assert_eq!(c.cmd("DISMOUNT"), "OK");
    assert_eq!(store.wait_exit().code(), Some(0));
    assert!(clean.exists());
    assert_eq!(verify(&dir), (0, "clean records=2".to_string()));
}
