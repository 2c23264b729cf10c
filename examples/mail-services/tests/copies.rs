//! Active and passive copies of the store (README.md, "Copies"): real
//! mail-store and mail-smtp processes over loopback. Sync mode loses no
//! acknowledged message to a kill -9 of the active; async mode loses at
//! most its limit and says so; generations fence a deposed active and an
//! older one; a diverged passive is found and reseeded; hostile peers on
//! either side of the replication protocol are refused and change nothing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use warden_mail_services::wal;

/// A store copy and the address it ships its log on (if it does).
struct Copy {
    svc: Service,
    repl: Option<SocketAddr>,
}

impl Copy {
    fn start(dir: &TempDir, name: &str, flags: &[&str]) -> Copy {
        let data = dir.arg(name);
        let mut args = vec!["--data", &data, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let mut svc = Service::start(STORE, &args);
        let repl = flags.contains(&"--replication-listen").then(|| {
            let line = svc.wait_log("replication on ");
            line.rsplit(' ').next().unwrap().parse().unwrap()
        });
        Copy { svc, repl }
    }

    /// An active copy shipping on a free port, with `flags` added.
    fn active(dir: &TempDir, name: &str, flags: &[&str]) -> Copy {
        let mut all = vec!["--role", "active", "--replication-listen", "127.0.0.1:0"];
        all.extend_from_slice(flags);
        if !flags.contains(&"--replication-timeout-ms") {
            all.extend(["--replication-timeout-ms", "1000"]);
        }
        Copy::start(dir, name, &all)
    }

    /// A passive copy following `source`, with `flags` added.
    fn passive(dir: &TempDir, name: &str, source: SocketAddr, flags: &[&str]) -> Copy {
        let source = source.to_string();
        let mut all = vec!["--role", "passive", "--replicate-from", &source];
        all.extend_from_slice(flags);
        if !flags.contains(&"--replication-timeout-ms") {
            all.extend(["--replication-timeout-ms", "1000"]);
        }
        Copy::start(dir, name, &all)
    }

    fn addr(&self) -> SocketAddr {
        self.svc.addr
    }

    fn cmd(&self, line: &str) -> String {
        Line::connect(self.addr()).unwrap().cmd(line)
    }

    fn put(&self, mailbox: &str, body: &[u8]) -> String {
        Line::connect(self.addr())
            .unwrap()
            .put(mailbox, body)
            .unwrap()
    }

    /// COPY-STATUS as a map; `reason` is the rest of the line after `reason=`.
    fn status(&self) -> HashMap<String, String> {
        let line = self.cmd("COPY-STATUS");
        let rest = line
            .strip_prefix("COPY-STATUS ")
            .unwrap_or_else(|| panic!("{line}"));
        let (fields, reason) = match rest.split_once(" reason=") {
            Some((f, r)) => (f, Some(r)),
            None => (rest, None),
        };
        let mut map: HashMap<String, String> = fields
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        if let Some(r) = reason {
            map.insert("reason".into(), r.to_string());
        }
        map
    }

    /// Waits until COPY-STATUS has `key=value`; returns the status.
    fn wait_status(&self, key: &str, value: &str) -> HashMap<String, String> {
        let mut last = HashMap::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            last = self.status();
            if last.get(key).map(String::as_str) == Some(value) {
                return last;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("COPY-STATUS never had {key}={value}; last {last:?}");
    }

    /// Waits until COPY-STATUS's reason contains `needle`; returns the status.
    fn wait_reason(&self, needle: &str) -> HashMap<String, String> {
        let mut last = HashMap::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            last = self.status();
            if last.get("reason").is_some_and(|r| r.contains(needle)) {
                return last;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("COPY-STATUS's reason never said {needle:?}; last {last:?}");
    }

    fn all(&self) -> Vec<(u64, String, Vec<u8>)> {
        Line::connect(self.addr()).unwrap().all()
    }
}

/// Sends `sig` to a process of this test.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of this test.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill -{sig} {pid}");
}

/// One SMTP transaction that never panics: the final reply, or `None` if
/// the connection failed anywhere (the server died under it).
fn try_smtp_send(addr: SocketAddr, to: &str, body: &str) -> Option<String> {
    let mut c = Line::connect(addr).ok()?;
    let mut step = |line: Option<&str>| -> Option<String> {
        if let Some(l) = line {
            c.send(format!("{l}\r\n").as_bytes()).ok()?;
        }
        loop {
            let l = c.line().ok()?;
            if l.is_empty() {
                return None;
            }
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return Some(l);
            }
        }
    };
    step(None)?;
    step(Some("EHLO test"))?;
    step(Some("MAIL FROM:<writer@test>"))?;
    step(Some(&format!("RCPT TO:<{to}@test>")))?;
    step(Some("DATA"))?;
    step(Some(&format!("{body}\r\n.")))
}

#[test]
fn sync_mode_every_message_answered_250_survives_kill_9_of_the_active() {
    let dir = TempDir::new("copies-sync");
    let mut active = Copy::active(&dir, "a", &["--sync-mode", "sync", "--generation", "1"]);
    let passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    passive.wait_status("health", "healthy");
    let smtp = Service::start(
        SMTP,
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &active.addr().to_string(),
        ],
    );

    // Two writers stream messages through SMTP; each 250 names the seq.
    let acked: Arc<Mutex<Vec<(u64, String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|mbox| {
            let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), smtp.addr);
            thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = format!("Subject: {mbox} {i}\r\n\r\nmessage {i} for {mbox}");
                    let Some(reply) = try_smtp_send(addr, mbox, &body) else {
                        break;
                    };
                    if let Some(seq) = reply.strip_prefix("250 OK queued as ") {
                        acked.lock().unwrap().push((
                            seq.parse().unwrap(),
                            mbox.to_string(),
                            format!("{body}\r\n"),
                        ));
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while acked.lock().unwrap().len() < 40 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    // Freeze the passive while the writers go on: whatever the active
    // answers now would be on one disk only, so in sync mode it answers
    // nothing (the writers wait), and then the active dies.
    signal(passive.svc.pid(), libc::SIGSTOP);
    let frozen_at = acked.lock().unwrap().len();
    thread::sleep(Duration::from_millis(500));
    active.svc.kill9();
    signal(passive.svc.pid(), libc::SIGCONT);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    eprintln!(
        "{frozen_at} answered 250 before the passive froze, {} in all",
        acked.lock().unwrap().len()
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 40,
        "only {} messages acknowledged",
        acked.len()
    );

    // The passive takes over with a newer generation; everything that got
    // 250 is there, byte for byte.
    let reply = passive.cmd("ACTIVATE 2");
    assert!(
        reply.starts_with("OK active generation=2 position="),
        "{reply}"
    );
    let status = passive.status();
    assert_eq!(status["role"], "active");
    assert_eq!(status["replay_queue"], "0");
    let all = passive.all();
    let mut found = 0;
    for (seq, mbox, body) in &acked {
        let m = all.iter().find(|(s, _, _)| s == seq);
        assert_eq!(
            m.map(|(_, mb, b)| (mb.as_str(), String::from_utf8_lossy(b).into_owned())),
            Some((mbox.as_str(), body.clone())),
            "message {seq} was answered 250 but is not on the passive copy"
        );
        found += 1;
    }
    assert_eq!(found, acked.len());
    eprintln!("{found} messages answered 250, all {found} on the activated copy");
    // The activated copy serves writes (it ships to nobody: async or sync
    // apply only with --replication-listen, which this passive lacks).
    let next = passive.put("alice", b"after the failover");
    assert_eq!(next, format!("OK {}", all.len() + 1));
}

#[test]
fn sync_mode_without_a_passive_answers_4xx_and_acknowledges_nothing() {
    let dir = TempDir::new("copies-nopassive");
    let active = Copy::active(&dir, "a", &["--sync-timeout-ms", "300"]);
    let status = active.status();
    assert_eq!(status["mode"], "sync");
    assert_eq!(status["role"], "active");
    assert_eq!(status["health"], "refusing");
    assert!(
        status["reason"].contains("no passive copy connected: writes refused"),
        "{status:?}"
    );
    let smtp = Service::start(
        SMTP,
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &active.addr().to_string(),
        ],
    );
    for i in 0..3 {
        let reply = smtp_send(smtp.addr, "w@test", &["carol@test"], &format!("try {i}"));
        assert!(reply.starts_with("451 "), "{reply}");
    }
    let reply = active.put("carol", b"direct");
    assert!(
        reply.starts_with(
            "UNAVAILABLE no passive copy confirmed message 4 within 300 ms (0 connected)"
        ),
        "{reply}"
    );

    // A passive that arrives later copies those (SMTP is at-least-once:
    // they were never acknowledged) and from then on writes go through.
    let passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    passive.wait_status("copied", "4");
    assert_eq!(active.put("carol", b"now with a copy"), "OK 5");
    let reply = smtp_send(smtp.addr, "w@test", &["carol@test"], "with a copy");
    assert!(reply.starts_with("250 "), "{reply}");
    let status = active.status();
    assert_eq!(
        (status["health"].as_str(), status["passives"].as_str()),
        ("healthy", "1")
    );
}

#[test]
fn async_mode_loss_is_bounded_by_the_limit_and_reported() {
    let dir = TempDir::new("copies-async");
    let mut active = Copy::active(
        &dir,
        "a",
        &[
            "--sync-mode",
            "async",
            "--max-async-lag",
            "5",
            "--generation",
            "1",
        ],
    );
    let mut passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    // A burst may outrun the copy by the limit: then it waits, refused.
    let mut refused = 0;
    for i in 1..=10 {
        let reply = eventually("the copy to catch up", || {
            let reply = active.put("dave", format!("m{i}").as_bytes());
            refused += usize::from(reply.starts_with("UNAVAILABLE "));
            (!reply.starts_with("UNAVAILABLE ")).then_some(reply)
        });
        assert_eq!(reply, format!("OK {i}"));
    }
    eprintln!("{refused} writes of the burst refused at the lag limit");
    passive.wait_status("copied", "10");
    active.wait_status("lag", "0");

    // The passive dies: five more are accepted, the sixth is refused.
    passive.svc.kill9();
    for i in 11..=15 {
        assert_eq!(
            active.put("dave", format!("m{i}").as_bytes()),
            format!("OK {i}")
        );
    }
    let refused = active.put("dave", b"m16");
    assert!(
        refused
            .starts_with("UNAVAILABLE 5 records are on no passive copy, the --max-async-lag of 5"),
        "{refused}"
    );
    let status = active.status();
    assert_eq!(
        (status["lag"].as_str(), status["copy_queue"].as_str()),
        ("5", "5")
    );
    assert_eq!(status["health"], "refusing");
    assert!(status["reason"].contains("--max-async-lag"), "{status:?}");

    // The active dies too; the passive comes back on its own data and is
    // activated: it lost exactly the five the active reported as lag.
    active.svc.kill9();
    let source = active.repl.unwrap().to_string();
    let data = dir.arg("p");
    let revived = Service::start(
        STORE,
        &[
            "--data",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--role",
            "passive",
            "--replicate-from",
            &source,
        ],
    );
    let revived = Copy {
        svc: revived,
        repl: None,
    };
    assert!(revived.cmd("ACTIVATE 2").starts_with("OK "));
    let all = revived.all();
    assert_eq!(all.len(), 10, "15 acknowledged, 5 reported as lag");
    assert_eq!(all.last().unwrap().2, b"m10");
}

#[test]
fn async_writes_resume_when_the_passive_catches_up() {
    let dir = TempDir::new("copies-resume");
    let active = Copy::active(&dir, "a", &["--sync-mode", "async", "--max-async-lag", "3"]);
    for i in 1..=3 {
        assert_eq!(active.put("erin", b"x"), format!("OK {i}"));
    }
    assert!(active.put("erin", b"x").starts_with("UNAVAILABLE "));
    let passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    active.wait_status("lag", "0");
    assert_eq!(active.put("erin", b"y"), "OK 4");
    passive.wait_status("copied", "4");
    let status = passive.wait_status("replayed", "4");
    assert_eq!(
        (
            status["role"].as_str(),
            status["lag"].as_str(),
            status["health"].as_str()
        ),
        ("passive", "0", "healthy")
    );
    // Reads are served by the passive; writes are not, and say why.
    assert_eq!(passive.cmd("SEQ"), "SEQ 4");
    let refused = passive.put("erin", b"z");
    assert!(
        refused.starts_with("UNAVAILABLE this is a passive copy"),
        "{refused}"
    );
}

#[test]
fn a_passive_waits_for_its_active_and_resumes_from_its_own_position() {
    let dir = TempDir::new("copies-resume-position");
    // The passive starts first: nobody listens there yet.
    let repl: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut passive = Copy::passive(&dir, "p", repl, &[]);
    // Not reaching its active says nothing against its data: healthy,
    // with a lag nobody knows yet (the reason is in its log).
    passive.svc.wait_log("cannot reach the active copy");
    let status = passive.status();
    assert_eq!(
        (status["health"].as_str(), status["lag"].as_str()),
        ("healthy", "unknown")
    );
    let repl_arg = repl.to_string();
    let active = Copy::start(
        &dir,
        "a",
        &["--replication-listen", &repl_arg, "--sync-mode", "async"],
    );
    for i in 1..=3 {
        assert_eq!(
            active.put("lena", format!("m{i}").as_bytes()),
            format!("OK {i}")
        );
    }
    passive.wait_status("replayed", "3");

    // Stopped cleanly, it misses two; back, it asks from its own position.
    assert!(passive.svc.terminate().success());
    for i in 4..=5 {
        assert_eq!(
            active.put("lena", format!("m{i}").as_bytes()),
            format!("OK {i}")
        );
    }
    let mut passive = Copy::passive(&dir, "p", repl, &[]);
    passive.svc.wait_log("following the active copy at");
    assert!(
        passive
            .svc
            .logs()
            .iter()
            .any(|l| l.contains(": its position 5, mine 3")),
        "{:?}",
        passive.svc.logs()
    );
    passive.wait_status("replayed", "5");
    assert_eq!(passive.all(), active.all());
    assert_eq!(active.wait_status("lag", "0")["passives"], "1");
}

#[test]
fn a_sync_write_waiting_for_a_copy_fails_when_the_active_is_deposed() {
    let dir = TempDir::new("copies-deposed-waiting");
    let active = Copy::active(&dir, "a", &["--sync-timeout-ms", "60000"]);
    let addr = active.addr();
    let waiting = thread::spawn(move || {
        let mut c = Line::connect(addr).unwrap();
        c.put("mona", b"waits for a copy").unwrap()
    });
    // Appended, not acknowledged: no passive has it.
    active.wait_status("written", "1");
    assert_eq!(
        active.cmd("DEACTIVATE 1"),
        "OK deposed generation=0 newest=1 position=1"
    );
    let reply = waiting.join().unwrap();
    assert_eq!(
        reply,
        "UNAVAILABLE deposed before a passive copy confirmed message 1; it may not survive"
    );
}

#[test]
fn a_deposed_active_refuses_writes_and_stays_deposed() {
    let dir = TempDir::new("copies-deposed");
    let mut old = Copy::active(&dir, "a", &["--sync-mode", "async", "--generation", "1"]);
    let passive = Copy::passive(&dir, "p", old.repl.unwrap(), &[]);
    assert_eq!(old.put("fred", b"one"), "OK 1");
    passive.wait_status("copied", "1");

    // Activated elsewhere with generation 2, then the old active is told.
    assert!(
        passive
            .cmd("ACTIVATE 1")
            .starts_with("ERR generation 1 is not newer than 1")
    );
    assert!(
        passive
            .cmd("ACTIVATE 2")
            .starts_with("OK active generation=2")
    );
    assert!(
        passive
            .cmd("ACTIVATE 3")
            .starts_with("ERR already the active copy")
    );
    assert!(
        old.cmd("DEACTIVATE 0")
            .starts_with("ERR generation 0 is older than this copy's 1")
    );
    assert!(
        old.cmd("DEACTIVATE x")
            .starts_with("ERR DEACTIVATE: generation")
    );
    assert_eq!(
        old.cmd("DEACTIVATE 2"),
        "OK deposed generation=1 newest=2 position=1"
    );
    let refused = old.put("fred", b"two");
    assert!(
        refused.starts_with("UNAVAILABLE this copy was deposed"),
        "{refused}"
    );
    let status = old.status();
    assert_eq!(
        (status["role"].as_str(), status["health"].as_str()),
        ("deposed", "failed")
    );
    assert_eq!(old.cmd("STATUS"), "STATUS clean=true records=1 seq=1");

    // Restarted with its old generation it comes back deposed: the newer
    // one is on its disk.
    old.svc.kill9();
    let again = Copy::active(&dir, "a", &["--sync-mode", "async", "--generation", "1"]);
    again
        .svc
        .logs()
        .iter()
        .find(|l| l.contains("deposed, refusing writes"))
        .unwrap();
    assert!(again.put("fred", b"three").starts_with("UNAVAILABLE "));
    assert_eq!(again.status()["role"], "deposed");
    // And it ships nothing: a passive is refused.
    let follower = Copy::passive(&dir, "q", again.repl.unwrap(), &[]);
    let status = follower.wait_reason("deposed by generation 2");
    assert_eq!(status["health"], "failed");
    assert_eq!(follower.status()["written"], "0");
}

#[test]
fn a_passive_with_a_newer_generation_deposes_the_active_it_contacts() {
    let dir = TempDir::new("copies-contact");
    let active = Copy::active(&dir, "a", &["--sync-mode", "async", "--generation", "1"]);
    assert_eq!(active.put("gina", b"one"), "OK 1");
    let passive = Copy::passive(&dir, "p", active.repl.unwrap(), &["--generation", "3"]);
    let mut active = active;
    active.svc.wait_log("deposed (passive copy");
    let refused = active.put("gina", b"two");
    assert!(
        refused.starts_with("UNAVAILABLE this copy was deposed (generation 3"),
        "{refused}"
    );
    let status = passive.wait_reason("newer than mine");
    assert_eq!(status["health"], "failed");
    assert_eq!(status["written"], "0", "no log from an older generation");
    assert_eq!(status["generation"], "3");
}

#[test]
fn a_passive_refuses_log_from_an_older_generation() {
    let dir = TempDir::new("copies-older");
    // A peer that answers every HELLO with an older generation (a real
    // active would have deposed itself; this one pretends it is current).
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let source = fake.local_addr().unwrap();
    let hellos: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&hellos);
    thread::spawn(move || {
        for conn in fake.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut line = String::new();
            let _ = BufReader::new(conn.try_clone().unwrap()).read_line(&mut line);
            seen.lock().unwrap().push(line.trim().to_string());
            let rec = wal::encode(1, "old", b"from generation 4");
            let mut out = format!("WELCOME 4 1\nREC {}\n", rec.len()).into_bytes();
            out.extend(rec);
            out.extend(b"POS 1\n");
            let _ = conn.write_all(&out);
        }
    });
    let mut passive = Copy::passive(&dir, "p", source, &["--generation", "5"]);
    passive
        .svc
        .wait_log("the active copy has generation 4, older than 5: its log is refused");
    let status = passive.status();
    assert_eq!(
        (
            status["health"].as_str(),
            status["written"].as_str(),
            status["generation"].as_str()
        ),
        ("failed", "0", "5")
    );
    assert!(hellos.lock().unwrap()[0].starts_with("HELLO 5 0 00000000"));
    // The refusal survives a restart: the generation is on disk.
    passive.svc.kill9();
    let mut passive = Copy::passive(&dir, "p", source, &[]);
    passive.svc.wait_log("older than 5");
    assert_eq!(passive.status()["written"], "0");
}

#[test]
fn a_diverged_passive_is_detected_and_reseeded() {
    let dir = TempDir::new("copies-diverged");
    let active = Copy::active(&dir, "a", &["--sync-mode", "async"]);
    let mut passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    for i in 1..=3 {
        assert_eq!(
            active.put("hank", format!("shared {i}").as_bytes()),
            format!("OK {i}")
        );
    }
    passive.wait_status("copied", "3");
    passive.svc.terminate();

    // The passive's directory is served alone for a while (a split brain
    // in miniature): it takes two writes the active never sees, and the
    // active takes two others.
    let alone = Copy::start(&dir, "p", &[]);
    assert_eq!(alone.put("hank", b"only on p 4"), "OK 4");
    assert_eq!(alone.put("hank", b"only on p 5"), "OK 5");
    drop(alone);
    assert_eq!(active.put("hank", b"only on a 4"), "OK 4");
    assert_eq!(active.put("hank", b"only on a 5"), "OK 5");

    let mut passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    let status = passive.wait_status("health", "diverged");
    assert!(
        status["reason"].contains("your record 5 has crc"),
        "{status:?}"
    );
    passive.svc.wait_log("waiting for RESEED");
    assert!(
        active
            .cmd("RESEED")
            .starts_with("ERR RESEED needs a passive copy")
    );
    assert!(
        passive
            .cmd("RESEED now")
            .starts_with("ERR RESEED takes no arguments")
    );
    assert_eq!(
        passive.cmd("RESEED"),
        format!("OK reseeding from={} dropped=5", active.repl.unwrap())
    );
    passive.wait_status("copied", "5");
    passive.wait_status("health", "healthy");
    assert_eq!(
        passive.all(),
        active.all(),
        "the reseeded copy is the active's"
    );

    // A passive whose log is longer than the active's is diverged too.
    let mut longer = Copy::start(&dir, "l", &[]);
    for i in 1..=7 {
        assert_eq!(longer.put("ivan", b"x"), format!("OK {i}"));
    }
    longer.svc.terminate();
    let longer = Copy::passive(&dir, "l", active.repl.unwrap(), &[]);
    let status = longer.wait_status("health", "diverged");
    assert!(
        status["reason"].contains("your log ends at position 7 but mine at 5"),
        "{status:?}"
    );
}

#[test]
fn hostile_passives_are_refused_and_the_active_serves_on() {
    let dir = TempDir::new("copies-hostile-passive");
    let mut active = Copy::active(
        &dir,
        "a",
        &["--sync-mode", "async", "--replication-timeout-ms", "300"],
    );
    let repl = active.repl.unwrap();
    assert_eq!(active.put("jane", b"before"), "OK 1");
    let connect = || {
        let s = TcpStream::connect(repl).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    };
    let answer = |s: &TcpStream| {
        let mut line = String::new();
        let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
        line
    };

    // Garbage instead of HELLO.
    let mut s = connect();
    s.write_all(b"\x00\x01\xffGET / HTTP/1.1\r\n").unwrap();
    assert!(answer(&s).starts_with("ERR expected `HELLO"));
    active.svc.wait_log("refused: expected `HELLO");
    // A line without end: cut at 512 bytes, not buffered whole.
    let mut s = connect();
    let _ = s.write_all(&vec![b'H'; 1 << 20]);
    let _ = s.write_all(b"\n");
    active.svc.wait_log("a hello line over 512 bytes");
    // A position 4 GiB records long: beyond the log, so diverged.
    let mut s = connect();
    s.write_all(b"HELLO 0 4294967296 00000000\n").unwrap();
    assert!(answer(&s).starts_with("DIVERGED your log ends at position 4294967296"));
    // Connected, silent.
    let _silent = connect();
    active
        .svc
        .wait_log("sent no complete HELLO line within 300 ms");
    // A proper HELLO, then it neither reads nor acknowledges.
    let mut stalled = connect();
    stalled.write_all(b"HELLO 0 0 00000000\n").unwrap();
    active
        .svc
        .wait_log("sent no complete acknowledgement within 300 ms: dropped");
    // An acknowledgement of more than it was sent.
    let mut liar = connect();
    liar.write_all(b"HELLO 0 0 00000000\nACK 999\n").unwrap();
    active.svc.wait_log("acknowledged position 999, beyond the");

    // None of it reached the store: it answers, takes writes, no passive counted.
    assert_eq!(active.cmd("PING"), "PONG");
    assert_eq!(active.put("jane", b"after"), "OK 2");
    let status = active.wait_status("passives", "0");
    assert_eq!(status["role"], "active");
    assert_eq!(
        status["copied"], "0",
        "no lie or handshake counted as a copy"
    );
}

#[test]
fn a_hostile_active_cannot_write_into_a_passive() {
    let dir = TempDir::new("copies-hostile-active");
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let source = fake.local_addr().unwrap();
    // Each connection of the passive meets the next attack.
    let good = wal::encode(1, "kim", b"genuine");
    let seven = wal::encode(7, "kim", b"seq 7 first");
    let mut wrong_seq = format!("WELCOME 0 9\nREC {}\n", seven.len()).into_bytes();
    wrong_seq.extend(seven);
    let mut endless = b"WELCOME 0 9\n".to_vec();
    endless.extend(vec![b'P'; 1 << 20]);
    let mut flipped = good.clone();
    flipped[20] ^= 0x40;
    let mut bad_crc = format!("WELCOME 0 9\nREC {}\n", flipped.len()).into_bytes();
    bad_crc.extend(flipped);
    let attacks: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\x01garbage\n".to_vec(), "not a replication answer"),
        (
            b"WELCOME 0 9\nREC 4294967296\n".to_vec(),
            "record length 4294967296 is outside",
        ),
        (bad_crc, "a bad record: checksum mismatch"),
        (wrong_seq, "the active sent seq 7 where 1 was expected"),
        (
            [&vec![b'P'; 1 << 20][..], b"\n"].concat(),
            "the active sent a line over 512 bytes",
        ),
        (
            endless,
            "no complete line within 300 ms (waiting for a frame)",
        ),
        (
            Vec::new(),
            "no complete line within 300 ms (waiting for its answer to HELLO)",
        ),
    ];
    let expected: Vec<&str> = attacks.iter().map(|a| a.1).collect();
    thread::spawn(move || {
        let mut held = Vec::new();
        for (conn, (bytes, _)) in fake.incoming().zip(attacks) {
            let Ok(mut conn) = conn else { return };
            let mut hello = [0u8; 64];
            let _ = conn.read(&mut hello);
            let _ = conn.write_all(&bytes);
            held.push(conn); // kept open: only the passive ends a session
        }
        thread::sleep(Duration::from_secs(60));
    });
    let mut passive = Copy::passive(&dir, "p", source, &["--replication-timeout-ms", "300"]);
    for why in expected {
        passive.svc.wait_log(why);
        assert_eq!(passive.cmd("PING"), "PONG");
    }
    // The last attack is silence: a peer that does not answer is lost,
    // not a fault of this copy, which took nothing from the hostile one.
    let status = passive.wait_status("health", "healthy");
    assert_eq!(
        (status["written"].as_str(), status["health"].as_str()),
        ("0", "healthy"),
        "{status:?}"
    );
    assert_eq!(passive.cmd("SEQ"), "SEQ 0");
}

#[test]
fn copy_options_that_do_not_fit_are_a_bad_command_line() {
    let dir = TempDir::new("copies-args");
    let data = dir.arg("s");
    for (args, why) in [
        (vec!["--role", "passive"], "needs `--replicate-from"),
        (vec!["--role", "primary"], "expected active or passive"),
        (
            vec!["--replicate-from", "127.0.0.1:1"],
            "is for `--role passive`",
        ),
        (vec!["--sync-mode", "async"], "needs `--replication-listen`"),
        (vec!["--max-async-lag", "5"], "needs `--replication-listen`"),
        (
            vec![
                "--replication-listen",
                "127.0.0.1:0",
                "--sync-mode",
                "later",
            ],
            "expected sync or async",
        ),
        (
            vec![
                "--replication-listen",
                "127.0.0.1:0",
                "--max-async-lag",
                "5",
            ],
            "is for `--sync-mode async`",
        ),
        (vec!["--generation", "-1"], "not a non-negative integer"),
    ] {
        let mut all = vec!["--data", &data, "--listen", "127.0.0.1:0"];
        all.extend(args.iter());
        let (code, _, err) = run(STORE, &all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// A planned step-down (the group goes offline where it is): DEACTIVATE at
/// the copy's own generation deposes it, and the next activation on the
/// same copy, at the next generation, serves writes again.
#[test]
fn a_planned_step_down_at_its_own_generation_and_the_next_activation_here() {
    let dir = TempDir::new("copies-step-down");
    let copy = Copy::active(&dir, "a", &["--sync-mode", "async", "--generation", "1"]);
    assert_eq!(copy.put("gina", b"one"), "OK 1");
    assert_eq!(
        copy.cmd("DEACTIVATE 1"),
        "OK deposed generation=1 newest=1 position=1 caught_up=0/0"
    );
    let refused = copy.put("gina", b"two");
    assert!(
        refused.starts_with("UNAVAILABLE this copy stepped down (generation 1)"),
        "{refused}"
    );
    assert!(
        copy.cmd("ACTIVATE 1")
            .starts_with("ERR generation 1 is not newer than 1")
    );
    assert!(copy.cmd("ACTIVATE 2").starts_with("OK active generation=2"));
    assert_eq!(copy.put("gina", b"two"), "OK 2");
}

/// A planned step-down is a switchover: writes stop at once, and the
/// DEACTIVATE is answered only once every connected passive copy holds the
/// last position, so the copy activated next loses nothing (deposing at
/// once would say BYE with records still unshipped).
#[test]
fn a_planned_step_down_ships_the_rest_of_the_log_before_it_answers() {
    const WRITES: u64 = 300;
    let dir = TempDir::new("copies-switchover");
    let active = Copy::active(&dir, "a", &["--sync-mode", "async", "--generation", "1"]);
    let passive = Copy::passive(&dir, "p", active.repl.unwrap(), &[]);
    active.wait_status("passives", "1");
    for i in 1..=WRITES {
        assert_eq!(
            active.put("hana", format!("m{i}").as_bytes()),
            format!("OK {i}")
        );
    }
    assert_eq!(
        active.cmd("DEACTIVATE 1"),
        format!("OK deposed generation=1 newest=1 position={WRITES} caught_up=1/1")
    );
    // Durable on the passive before the answer: no waiting here.
    assert_eq!(passive.status()["copied"], WRITES.to_string());
    let refused = active.put("hana", b"late");
    assert!(
        refused.starts_with("UNAVAILABLE this copy stepped down"),
        "{refused}"
    );
    assert!(
        passive
            .cmd("ACTIVATE 2")
            .starts_with(&format!("OK active generation=2 position={WRITES}"))
    );
    assert_eq!(passive.all().len() as u64, WRITES);
}
