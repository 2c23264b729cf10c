//! Start-up at scale: how long a real agent takes, with a warm compile
//! cache, from its start until its admin API answers and until every one of
//! N trivial resources is Online; and whether its event history holds every
//! event of that start. Prints a markdown table.
//!
//! Each size runs the agent (the `warden` binary, as an operator starts it)
//! once to warm the compile cache, stops it with SIGTERM, then starts it
//! again on the same data directory and times that second start:
//! - "API answers": the first `GET /v1/status` that returns 200, asked
//!   every 10 ms from the moment the process is spawned;
//! - "all Online": the moment the history holds a `state … to Online` line
//!   for every resource of this start (read every 20 ms);
//! - "history": the events this start wrote, and how many `history-lagged`
//!   lines (events dropped) are among them;
//! - once every resource is Online, the agent's memory: `VmRSS` from
//!   `/proc/PID/status`, its split into anonymous and file-backed pages and
//!   the number of mappings (`/proc/PID/smaps_rollup`, `/proc/PID/maps`),
//!   each also per resource;
//! - its CPU over a 10 s window after that (`utime + stime` from
//!   `/proc/PID/stat`, 10 ms ticks);
//! - `GET /v1/status`: how long it takes and how many bytes it answers;
//! - SIGTERM: from the signal until the process has exited (with the
//!   shipped `on_shutdown = "offline"`: every chaos resource taken offline).
//!
//! The resources are `chaos` ones (the test plugin: online at once, is-alive
//! every 10 s, no looks-alive), each in a group of its own.
//!
//! Run: `cargo bench -p warden --bench startup` (release), or against the
//! debug build, `cargo bench --profile dev -p warden --bench startup`.
//! `WARDEN_BENCH_SIZES=100,1000` chooses the sizes (default 100, 1000,
//! 5000); `WARDEN_BENCH_AGENT=/path/to/warden` times another build of the
//! agent (an older one, for a before/after); `WARDEN_BENCH_EVERY_MS` sets
//! the is-alive interval (default 10 000); `WARDEN_BENCH_MAX_INSTANCES`
//! writes `[runtime] max_instances` (the pool; default: not written, which
//! agents from before the on-demand allocator took as 1024, so set it
//! to time them above that).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// How long one start may take before the bench gives up on that size.
const PATIENCE: Duration = Duration::from_secs(600);

fn agent_binary() -> String {
    std::env::var("WARDEN_BENCH_AGENT").unwrap_or_else(|_| env!("CARGO_BIN_EXE_warden").into())
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// A node configuration with `resources` chaos resources, each in a group
/// of its own, and its API on `api`.
fn write_config(dir: &Path, resources: usize, api: SocketAddr) {
    let runtime = match std::env::var("WARDEN_BENCH_MAX_INSTANCES") {
        Ok(n) => format!("[runtime]\nmax_instances = {n}\n"),
        Err(_) => String::new(),
    };
    let every: u64 = std::env::var("WARDEN_BENCH_EVERY_MS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut text = format!(
        "[node]\nname = \"bench\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n\
         {runtime}[api]\nlisten = \"{api}\"\ntoken_file = \"token\"\n"
    );
    for i in 0..resources {
        text.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = {every}\nlooks_alive_interval_ms = 0\n"
        ));
    }
    std::fs::write(dir.join("node.toml"), text).expect("config");
}

fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .expect("agent log");
    Command::new(agent_binary())
        .args(["agent", "--config"])
        .arg(dir.join("node.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the agent")
}

/// Whether `GET /v1/status` answers 200 now.
fn status_answers(api: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&api, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let request = format!(
        "GET /v1/status HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// `GET path` answered whole: how long it took and how many bytes came
/// back (head and body). `None` if it did not answer 200.
fn timed_get(api: SocketAddr, path: &str) -> Option<(Duration, usize)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let took = started.elapsed();
    answer
        .starts_with(b"HTTP/1.1 200")
        .then_some((took, answer.len()))
}

/// A `kB` field of a `/proc` file (`VmRSS:   1234 kB`), in bytes.
fn proc_kb(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The agent's memory once every resource is Online.
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
    maps: usize,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    Memory {
        rss: proc_kb(&status, "VmRSS"),
        anon: proc_kb(&status, "RssAnon"),
        file: proc_kb(&status, "RssFile") + proc_kb(&status, "RssShmem"),
        maps: maps.lines().count(),
    }
    .with_rollup_check(&rollup)
}

impl Memory {
    /// `smaps_rollup`'s `Rss` agrees with `VmRSS` (both count the same
    /// pages); when it is readable and differs, take it (it is exact where
    /// `VmRSS` is a per-thread cached counter).
    fn with_rollup_check(mut self, rollup: &str) -> Memory {
        let rss = proc_kb(rollup, "Rss");
        if rss > 0 {
            self.rss = rss;
            self.anon = proc_kb(rollup, "Anonymous");
            self.file = rss.saturating_sub(self.anon);
        }
        self
    }
}

/// The process's `utime + stime`, in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// How long the CPU window after all Online is.
const CPU_WINDOW: Duration = Duration::from_secs(10);

/// The history's lines from byte `from` on.
fn history_since(dir: &Path, from: usize) -> String {
    let bytes = std::fs::read(dir.join("data/events.jsonl")).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
}

fn history_len(dir: &Path) -> usize {
    std::fs::metadata(dir.join("data/events.jsonl")).map_or(0, |m| m.len() as usize)
}

fn online_count(history: &str) -> usize {
    history
        .lines()
        .filter(|line| line.contains("\"event\":\"state\"") && line.contains("\"to\":\"Online\""))
        .count()
}

/// SIGTERM, and the time until the process has exited (`None`: not
/// within two minutes, and then killed).
fn stop(mut child: Child) -> Option<Duration> {
    let signalled = Instant::now();
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = signalled + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return Some(signalled.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

struct Row {
    api: Duration,
    online: Duration,
    events: usize,
    lagged: usize,
    memory: Memory,
    /// CPU over [`CPU_WINDOW`], in ms a second.
    cpu: f64,
    status: Option<(Duration, usize)>,
    sigterm: Option<Duration>,
}

/// One start, timed: until the API answers and until every resource is
/// Online. `None` if it took longer than [`PATIENCE`].
fn timed_start(dir: &Path, resources: usize, api: SocketAddr) -> Option<Row> {
    let before = history_len(dir);
    let started = Instant::now();
    let child = spawn(dir);
    let mut answered = None;
    let mut online = None;
    let mut last_read = Instant::now();
    while started.elapsed() < PATIENCE && (answered.is_none() || online.is_none()) {
        if answered.is_none() && status_answers(api) {
            answered = Some(started.elapsed());
        }
        if online.is_none() && last_read.elapsed() >= Duration::from_millis(20) {
            last_read = Instant::now();
            if online_count(&history_since(dir, before)) >= resources {
                online = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (Some(answered), Some(online)) = (answered, online) else {
        stop(child);
        return None;
    };
    let memory = memory(child.id());
    let ticks = cpu_ticks(child.id());
    let window = Instant::now();
    std::thread::sleep(CPU_WINDOW);
    let cpu = (cpu_ticks(child.id()) - ticks) as f64 * 10.0 / window.elapsed().as_secs_f64();
    let status = timed_get(api, "/v1/status");
    let sigterm = stop(child);
    let history = history_since(dir, before);
    Some(Row {
        api: answered,
        online,
        memory,
        cpu,
        status,
        sigterm,
        events: history.lines().count(),
        lagged: history
            .lines()
            .filter(|line| line.contains("history-lagged"))
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["missed"].as_u64())
                    .unwrap_or(1) as usize
            })
            .sum(),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let sizes: Vec<usize> = std::env::var("WARDEN_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 5000]);
    eprintln!("agent: {}", agent_binary());
    println!(
        "| resources | API answers | all Online | events recorded | events missed | RSS | per resource | anon / file | maps | CPU after | GET /v1/status | SIGTERM to exit |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for resources in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugins dir");
        std::fs::copy(CHAOS, dir.path().join("plugins/chaos.wasm")).expect("copy chaos");
        warden::config::write_token_file(&dir.path().join("token"), TOKEN).expect("token");
        let api = free_port();
        write_config(dir.path(), resources, api);
        // The first start fills the compile cache; only the second counts.
        if timed_start(dir.path(), resources, api).is_none() {
            println!("| {resources} | over {} | | | |", secs(PATIENCE));
            continue;
        }
        match timed_start(dir.path(), resources, api) {
            Some(row) => println!(
                "| {resources} | {} | {} | {} | {} | {:.1} MiB | {:.1} KiB | {:.1} / {:.1} MiB | {} | {:.1} ms/s | {} | {} |",
                secs(row.api),
                secs(row.online),
                row.events,
                row.lagged,
                mib(row.memory.rss),
                row.memory.rss as f64 / 1024.0 / resources.max(1) as f64,
                mib(row.memory.anon),
                mib(row.memory.file),
                row.memory.maps,
                row.cpu,
                row.status.map_or("failed".into(), |(took, bytes)| format!(
                    "{:.1} ms, {} KiB",
                    took.as_secs_f64() * 1000.0,
                    bytes / 1024
                )),
                row.sigterm.map_or("over 120 s".into(), secs),
            ),
            None => println!("| {resources} | over {} | | | |", secs(PATIENCE)),
        }
    }
}
