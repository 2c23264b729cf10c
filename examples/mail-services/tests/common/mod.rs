//! Helpers shared by the integration tests: real processes, temp dirs,
//! protocol clients. Every wait here has a deadline, so a broken service
//! fails a test instead of hanging it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const STORE: &str = env!("CARGO_BIN_EXE_mail-store");
pub const SMTP: &str = env!("CARGO_BIN_EXE_mail-smtp");
pub const HTTP: &str = env!("CARGO_BIN_EXE_mail-http");
pub const MTA: &str = env!("CARGO_BIN_EXE_mail-mta");
pub const INDEXER: &str = env!("CARGO_BIN_EXE_mail-indexer");
pub const ATTENDANT: &str = env!("CARGO_BIN_EXE_mail-attendant");

/// How long any single wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "warden-mail-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub fn arg(&self, p: &str) -> String {
        self.join(p).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (for a service that must be pointed
/// at an address before the service there exists).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Logs = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A running service. Killed (SIGKILL) on drop.
pub struct Service {
    pub name: &'static str,
    child: Child,
    logs: Logs,
    /// The address from its `listening on ADDR` line.
    pub addr: SocketAddr,
}

impl Service {
    /// Starts `bin` and waits for its `listening on` line.
    pub fn start(bin: &str, args: &[&str]) -> Service {
        Service::start_env(bin, args, &[])
    }

    /// As [`Service::start`], with these variables added to its environment.
    pub fn start_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let logs: Logs = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{name}] {line}");
                let (lock, cv) = &*sink;
                lock.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        let mut svc = Service {
            name,
            child,
            logs,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = svc.wait_log("listening on ");
        let addr = line.split("listening on ").nth(1).unwrap();
        let addr = addr.split([',', ' ']).next().unwrap();
        svc.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"));
        svc
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let (lock, cv) = &*self.logs;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader thread a moment to drain the pipe.
                drop(lines);
                thread::sleep(Duration::from_millis(100));
                lines = lock.lock().unwrap();
                if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                    return l.clone();
                }
                panic!(
                    "{} exited ({status}) before logging {needle:?}; logs: {lines:#?}",
                    self.name
                );
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "{} never logged {needle:?}; logs: {lines:#?}",
                self.name
            );
            lines = cv.wait_timeout(lines, Duration::from_millis(50)).unwrap().0;
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.0.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {}", self.child.id());
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary to completion (bounded) and returns (status, stdout, stderr).
pub fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} {args:?} did not finish");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

/// Polls `f` until it returns `Some`, within `PATIENCE`.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(25));
    }
}

/// A line-protocol client with timeouts (store, indexer, SMTP).
pub struct Line {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Line {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Line> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(PATIENCE))?;
        s.set_write_timeout(Some(PATIENCE))?;
        Ok(Line {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    /// One reply line, without its line end ("" at EOF).
    pub fn line(&mut self) -> std::io::Result<String> {
        let mut s = String::new();
        self.r.read_line(&mut s)?;
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).unwrap();
        self.line().unwrap()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.r.read_exact(&mut b).unwrap();
        b
    }

    /// PUT; returns the reply line.
    pub fn put(&mut self, mailbox: &str, body: &[u8]) -> std::io::Result<String> {
        let mut req = format!("PUT {mailbox} {}\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        self.send(&req)?;
        self.line()
    }

    /// SINCE 0: every (seq, mailbox, body) in the store.
    pub fn all(&mut self) -> Vec<(u64, String, Vec<u8>)> {
        let head = self.cmd("SINCE 0");
        let n: usize = head
            .strip_prefix("MSGS ")
            .unwrap_or_else(|| panic!("{head}"))
            .parse()
            .unwrap();
        (0..n)
            .map(|_| {
                let h = self.line().unwrap();
                let p: Vec<&str> = h.split(' ').collect();
                let len: usize = p[2].parse().unwrap();
                let body = self.bytes(len + 1);
                assert_eq!(body[len], b'\n');
                (
                    p[0].parse().unwrap(),
                    p[1].to_string(),
                    body[..len].to_vec(),
                )
            })
            .collect()
    }

    /// Reads an SMTP reply (all continuation lines); returns the last line.
    pub fn smtp_reply(&mut self) -> String {
        loop {
            let l = self.line().unwrap();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    pub fn smtp(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).unwrap();
        self.smtp_reply()
    }
}

/// Sends one message with a full SMTP dialogue; returns the reply to the
/// final dot. Panics on any unexpected intermediate reply.
pub fn smtp_send(addr: SocketAddr, from: &str, to: &[&str], body: &str) -> String {
    let mut c = Line::connect(addr).unwrap();
    let banner = c.smtp_reply();
    assert!(banner.starts_with("220 "), "{banner}");
    assert!(c.smtp("EHLO test.client").starts_with("250 "));
    assert!(c.smtp(&format!("MAIL FROM:<{from}>")).starts_with("250 "));
    for rcpt in to {
        let r = c.smtp(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250 "), "RCPT {rcpt}: {r}");
    }
    assert!(c.smtp("DATA").starts_with("354 "));
    let mut data = String::new();
    for l in body.split("\r\n") {
        if l.starts_with('.') {
            data.push('.');
        }
        data.push_str(l);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    c.send(data.as_bytes()).unwrap();
    let done = c.smtp_reply();
    let _ = c.smtp("QUIT");
    done
}

/// A GET over HTTP/1.1; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

pub fn http_request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
