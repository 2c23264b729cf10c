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
//! - its CPU over a 10 s window after that, once 3 s have passed
//!   (`utime + stime` from `/proc/PID/stat`, 10 ms ticks);
//! - over the same window, how late the checks started against their
//!   schedule: the agent's `warden_check_lateness_seconds` histogram
//!   (`GET /metrics`) read before and after, its percentiles and maximum
//!   given as the bucket bounds that hold them (a second table);
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
//!
//! Sizes past what `vm.max_map_count` holds (about 12 000 resources at the
//! default 65 530, `runtime::process_limits`) need it raised:
//! `WARDEN_BENCH_RAISE_MAP_COUNT=1` raises it for the run (root only) and
//! sets the old value back when the bench ends, panics included (not on
//! SIGKILL: the old value is printed first, to set back by hand). The agent
//! raises its own open-file limit when it runs as root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warden::monitor::CHECK_LAG_BOUNDS_US;
use warden::runtime::process_limits;

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
/// How long after all Online the window opens: the first checks of the
/// resources Online first run while the last ones start.
const SETTLE: Duration = Duration::from_secs(3);

/// `vm.max_map_count` raised for the bench's run, set back when dropped.
struct MapCountRaised {
    old: String,
}

impl MapCountRaised {
    /// Raise `vm.max_map_count` to what `resources` need if it is lower.
    /// `None`: high enough already.
    fn to_hold(resources: usize) -> Option<MapCountRaised> {
        let path = process_limits::MAX_MAP_COUNT;
        let old = std::fs::read_to_string(path).expect("vm.max_map_count readable");
        let current: usize = old.trim().parse().expect("vm.max_map_count a number");
        let needed = process_limits::needed(resources)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        if current >= needed {
            return None;
        }
        eprintln!(
            "raising vm.max_map_count from {} to {needed} for {resources} resources \
             (set back when the bench ends; if it is killed: sysctl -w vm.max_map_count={})",
            old.trim(),
            old.trim()
        );
        std::fs::write(path, needed.to_string()).expect("raise vm.max_map_count (root only)");
        Some(MapCountRaised { old })
    }
}

impl Drop for MapCountRaised {
    fn drop(&mut self) {
        match std::fs::write(process_limits::MAX_MAP_COUNT, self.old.trim()) {
            Ok(()) => eprintln!("vm.max_map_count set back to {}", self.old.trim()),
            Err(e) => eprintln!(
                "COULD NOT set vm.max_map_count back to {}: {e}; do it by hand",
                self.old.trim()
            ),
        }
    }
}

/// The agent's check-lateness histogram, as `GET /metrics` shows it:
/// cumulative counts per bound (µs), the total, and the sum in seconds.
#[derive(Debug, Clone, Default)]
struct Lateness {
    cumulative: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Lateness {
    fn scrape(api: SocketAddr) -> Option<Lateness> {
        let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let name = "warden_check_lateness_seconds";
        let value = |prefix: &str| -> Option<f64> {
            answer
                .lines()
                .find_map(|line| line.strip_prefix(prefix))?
                .trim()
                .parse()
                .ok()
        };
        let cumulative = CHECK_LAG_BOUNDS_US
            .iter()
            .map(|bound| {
                value(&format!("{name}_bucket{{le=\"{}\"}}", *bound as f64 / 1e6)).map(|v| v as u64)
            })
            .collect::<Option<Vec<u64>>>()?;
        Some(Lateness {
            cumulative,
            count: value(&format!("{name}_count"))? as u64,
            sum: value(&format!("{name}_sum"))?,
        })
    }

    /// What happened between `earlier` and `self`.
    fn since(&self, earlier: &Lateness) -> Lateness {
        Lateness {
            cumulative: self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum: self.sum - earlier.sum,
        }
    }

    /// The bound that holds the fraction `q` of the checks ("> 10 s" past
    /// the last one).
    fn quantile(&self, q: f64) -> String {
        if self.count == 0 {
            return "-".into();
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        match CHECK_LAG_BOUNDS_US
            .iter()
            .zip(&self.cumulative)
            .find(|(_, n)| **n >= rank)
        {
            Some((bound, _)) => format!("≤ {}", us(*bound)),
            None => format!("> {}", us(*CHECK_LAG_BOUNDS_US.last().unwrap_or(&0))),
        }
    }

    fn max(&self) -> String {
        self.quantile(1.0)
    }

    /// How many checks were later than `bound_us`.
    fn later_than(&self, bound_us: u64) -> u64 {
        CHECK_LAG_BOUNDS_US
            .iter()
            .position(|b| *b == bound_us)
            .and_then(|i| self.cumulative.get(i))
            .map_or(self.count, |within| self.count.saturating_sub(*within))
    }
}

fn us(micros: u64) -> String {
    if micros >= 1_000 {
        format!("{} ms", micros as f64 / 1000.0)
    } else {
        format!("{micros} µs")
    }
}

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
    /// The checks' lateness over the CPU window, if the agent exposes it.
    lateness: Option<Lateness>,
}

/// One start, timed: until the API answers and until every resource is
/// Online. `None` if it took longer than [`PATIENCE`].
fn timed_start(dir: &Path, resources: usize, api: SocketAddr) -> Option<Row> {
    let before = history_len(dir);
    let started = Instant::now();
    let mut child = spawn(dir);
    let mut answered = None;
    let mut online = None;
    let mut last_read = Instant::now();
    while started.elapsed() < PATIENCE && (answered.is_none() || online.is_none()) {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "the agent exited ({status}) before all {resources} resources were Online; \
                 its log is {}",
                dir.join("agent.log").display()
            );
            return None;
        }
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
    std::thread::sleep(SETTLE);
    let lateness_before = Lateness::scrape(api);
    let ticks = cpu_ticks(child.id());
    let window = Instant::now();
    std::thread::sleep(CPU_WINDOW);
    let cpu = (cpu_ticks(child.id()) - ticks) as f64 * 10.0 / window.elapsed().as_secs_f64();
    let lateness = match (lateness_before, Lateness::scrape(api)) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };
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
        lateness,
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
    let raise_map_count = std::env::var("WARDEN_BENCH_RAISE_MAP_COUNT").as_deref() == Ok("1");
    let mut lag_rows = Vec::new();
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
        // Set back at the end of this size, whatever happens in it.
        let _map_count = raise_map_count
            .then(|| MapCountRaised::to_hold(resources))
            .flatten();
        // The first start fills the compile cache; only the second counts.
        if timed_start(dir.path(), resources, api).is_none() {
            println!("| {resources} | over {} | | | |", secs(PATIENCE));
            continue;
        }
        match timed_start(dir.path(), resources, api) {
            Some(row) => {
                lag_rows.push((resources, row.cpu, row.lateness.clone()));
                println!(
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
                )
            }
            None => println!("| {resources} | over {} | | | |", secs(PATIENCE)),
        }
    }
    println!();
    println!(
        "Checks over the {} s window ({} s after all Online): how late each started \
         (bucket bounds of `warden_check_lateness_seconds`)",
        CPU_WINDOW.as_secs(),
        SETTLE.as_secs()
    );
    println!();
    println!("| resources | checks | p50 | p99 | max | mean | later than 10 ms | CPU |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (resources, cpu, lateness) in lag_rows {
        match lateness {
            Some(l) => println!(
                "| {resources} | {} | {} | {} | {} | {:.2} ms | {} | {:.1} ms/s |",
                l.count,
                l.quantile(0.5),
                l.quantile(0.99),
                l.max(),
                if l.count == 0 {
                    0.0
                } else {
                    l.sum * 1000.0 / l.count as f64
                },
                l.later_than(10_000),
                cpu
            ),
            None => {
                println!("| {resources} | not exposed by this agent | | | | | | {cpu:.1} ms/s |")
            }
        }
    }
}
