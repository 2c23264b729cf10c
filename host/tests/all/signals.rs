//! SIGINT and SIGTERM at any moment of the agent's life: while it starts
//! (its group coming online), while it runs, and a second one while it
//! shuts down. Every trial checks the whole outcome:
//!
//! - by default the agent stops, takes its group offline in reverse
//!   dependency order (read from its event history), and leaves no managed
//!   process running;
//! - with `[node] on_shutdown = "leave-running"` it stops alone: every
//!   service it had started still runs, and the next agent adopts each one
//!   (same pid, no second start) instead of starting another.
//!
//! One test makes certain the moment the trials hit only by chance: a stop
//! while a service has started but its resource is still OnlinePending.
//!
//! The agent is started with SIGINT ignored, as a shell starts a background
//! job, which is where a signal that came before the agent listened was
//! lost. A SIGINT sent before the agent's `main` has reset that disposition
//! is discarded by the kernel, which no program can help: the test waits
//! for the reset (`SigIgn` in `/proc/PID/status`, a few milliseconds after
//! the start) before it sends one.
//!
//! `WARDEN_SIGNAL_TRIALS` sets the trials per test (default 50),
//! `WARDEN_SIGNAL_AGENTS` how many agents run side by side (default 4, each
//! with its own data directory and ports), `WARDEN_SIGNAL_SEED` replays the
//! moments of a run (each test prints its seed).

use crate::common;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::unistd::Pid;
use serde_json::Value;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
/// The group's resources; `front` depends on `back`.
const RESOURCES: [&str; 2] = ["front", "back"];
/// The window the first signal falls in, after the start.
const FIRST_WITHIN_MS: u64 = 3000;
/// The window a second signal falls in, after the first.
const SECOND_WITHIN_MS: u64 = 400;
/// How long a service takes to come online (`startup-ms`, which the
/// process type waits after its start before it says Online).
const STARTUP_MS: u64 = 100;
/// `back`'s `startup-ms` where a stop must land while it comes online: it
/// stays OnlinePending, its service running, long enough for the test to
/// stop the agent then. The next agent, which reads the resources from the
/// store, takes as long again to bring it online.
const SLOW_STARTUP_MS: u64 = 10_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: a seeded sequence, so that a failing run can be replayed.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum OnShutdown {
    Offline,
    LeaveRunning,
}

/// When one trial's signals go: the first after the start, a second (or
/// none) after the first.
#[derive(Clone, Copy, Debug)]
struct Trial {
    number: u64,
    first: Duration,
    second: Option<Duration>,
}

/// One agent's directory, ports and tag, reused trial after trial (its
/// store keeps the resources, ports included, of its first trial).
struct Slot {
    dir: PathBuf,
    tag: String,
    /// Below the ephemeral range (see `common::service_ports`): a port the
    /// services cannot bind fails the group, which would pass for the
    /// agent's fault.
    ports: [std::net::SocketAddr; 2],
}

impl Slot {
    /// A slot whose compile cache holds the built-in plugins already (see
    /// [`compiled_plugins`]).
    fn new(base: &Path, tag: String) -> Slot {
        let dir = base.join(&tag);
        let cache = dir.join("data/compiled");
        std::fs::create_dir_all(&cache).expect("slot dir");
        for artifact in std::fs::read_dir(compiled_plugins()).expect("compiled plugins") {
            let artifact = artifact.expect("compiled plugin").path();
            if let Some(name) = artifact.file_name() {
                std::fs::copy(&artifact, cache.join(name)).expect("copy a compiled plugin");
            }
        }
        Slot {
            dir,
            tag,
            ports: common::service_ports::<2>(),
        }
    }

    /// A node whose group runs two demo services marked with the slot's
    /// tag, so that the test finds them, each recording its start; `back`
    /// takes `back_startup_ms` to come online.
    fn write_config(&self, on_shutdown: OnShutdown, back_startup_ms: u64) -> PathBuf {
        let mut resources = String::new();
        for (i, (name, depends)) in RESOURCES.iter().zip(["[\"back\"]", "[]"]).enumerate() {
            let (tag, addr) = (&self.tag, self.ports[i]);
            let startup = if *name == "back" {
                back_startup_ms
            } else {
                STARTUP_MS
            };
            let record = self.records().display().to_string();
            resources.push_str(&format!(
                r#"
[[resource]]
name = "{name}"
type = "process"
group = "demo"
depends_on = {depends}
properties = {{ program = "{WARDEN}", args = "demo-service --name {tag}-{name} --listen {addr} --record {record}", startup-ms = {startup} }}
"#
            ));
        }
        let on_shutdown = match on_shutdown {
            OnShutdown::Offline => "offline",
            OnShutdown::LeaveRunning => "leave-running",
        };
        let path = self.dir.join("node.toml");
        std::fs::write(
            &path,
            format!(
                "[node]\nname = \"n\"\ndata_dir = \"data\"\non_shutdown = \"{on_shutdown}\"\n\n\
                 [plugins.process]\nallow_programs = [\"{WARDEN}\"]\n\n[[group]]\nname = \"demo\"\n{resources}"
            ),
        )
        .expect("config");
        path
    }

    /// What its agents logged, every run so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// What each resource's service wrote (`service.log`), every run so
    /// far: why a service did not stay up.
    fn service_logs(&self) -> [String; 2] {
        RESOURCES.map(|name| {
            let log = self.dir.join("data/private").join(name).join("service.log");
            std::fs::read_to_string(log).unwrap_or_default()
        })
    }

    fn records(&self) -> PathBuf {
        self.dir.join("records")
    }

    /// The event history's lines (one event each, in order).
    fn history(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("data/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The pids that recorded a start, in order.
    fn recorded_starts(&self) -> Vec<(String, i32)> {
        std::fs::read_to_string(self.records())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let name = fields.get(1)?.rsplit('/').next()?.to_string();
                (fields.first() == Some(&"start")).then_some((name, fields.get(2)?.parse().ok()?))
            })
            .collect()
    }

    /// The services of this slot that run, by resource name.
    fn services(&self) -> Vec<(String, i32)> {
        let out = Command::new("pgrep")
            .args(["-a", "-f", &format!("demo-service --name {}-", self.tag)])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let pid = line.split(' ').next()?.parse().ok()?;
                let name = line
                    .split_once(&format!("--name {}-", self.tag))?
                    .1
                    .split(' ')
                    .next()?;
                Some((name.to_string(), pid))
            })
            .collect()
    }

    /// Start the agent with SIGINT ignored, as `warden agent &` in a
    /// script; its log appended to `agent.log`.
    fn start(&self, config: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("agent log");
        let mut command = Command::new(WARDEN);
        command
            .args(["agent", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: only signal(2) between fork and exec.
        unsafe {
            command.pre_exec(|| {
                signal(Signal::SIGINT, SigHandler::SigIgn)
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        command.spawn().expect("start the agent")
    }
}

/// The built-in plugins, compiled once for every slot of every test in
/// this binary (an agent's compile cache, kept in cargo's target directory
/// between runs). A slot whose first agent is stopped by a signal before it
/// listened, which is before it compiled anything, would otherwise have its
/// adopting agent compile them all from nothing, while the other slots'
/// agents do the same: on a loaded 2-core machine that can outlast the
/// minute the test gives it to bring the group online.
fn compiled_plugins() -> &'static Path {
    static COMPILED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COMPILED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("signals-plugins");
        std::fs::create_dir_all(&dir).expect("compile cache dir");
        // Started once the plugins are loaded (its API answers), so compiled.
        common::agent_process::AgentProcess::start(
            &dir,
            "[node]\nname = \"n\"\ndata_dir = \"data\"\n",
        )
        .stop();
        dir.join("data/compiled")
    })
}

/// Whether `pid` still ignores `which` (its `SigIgn` mask).
fn ignores(pid: u32, which: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (which as u64 - 1)) != 0)
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Send `which` at `at` after `started`; a SIGINT only once the agent has
/// stopped ignoring it (see the module's comment).
fn send_at(agent: &Child, which: Signal, started: Instant, at: Duration) {
    std::thread::sleep(at.saturating_sub(started.elapsed()));
    if which == Signal::SIGINT {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ignores(agent.id(), which) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The child is not reaped until the test waits for it, so its pid
    // cannot name another process even if it has exited.
    kill(Pid::from_raw(agent.id() as i32), which).expect("signal");
}

/// `front` depends on `back`: `back` may start going offline only once
/// `front` is no longer active. Checked on the history lines of one run
/// (their order is the order of the events).
fn offline_in_order(events: &[Value]) -> Result<(), String> {
    let mut front_active = false;
    for event in events {
        let (resource, to) = (event["resource"].as_str(), event["to"].as_str());
        match (resource, to) {
            (Some("front"), Some(to)) => {
                front_active = matches!(to, "OnlinePending" | "Online" | "OfflinePending");
            }
            (Some("back"), Some("OfflinePending")) if front_active => {
                return Err("back went offline while front was still active".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// One trial on `slot`; an error says what went wrong.
fn run_trial(
    slot: &Slot,
    which: Signal,
    on_shutdown: OnShutdown,
    trial: Trial,
) -> Result<(), String> {
    let config = slot.write_config(on_shutdown, STARTUP_MS);
    let history_before = slot.history().len();
    let starts_before = slot.recorded_starts().len();
    let started = Instant::now();
    let mut agent = slot.start(&config);
    send_at(&agent, which, started, trial.first);
    if let Some(second) = trial.second {
        send_at(&agent, which, started, trial.first + second);
    }
    let Some(status) = wait_exit(&mut agent, Duration::from_secs(60)) else {
        let _ = agent.kill();
        let _ = agent.wait();
        return Err("the agent did not stop within 60 s".into());
    };
    // Stopped by its own shutdown, or (a SIGTERM before it listened) by
    // the signal's default action, before anything started.
    if !status.success() && status.code().is_some() {
        return Err(format!("the agent exited with {status}"));
    }
    let left = slot.services();
    let history = slot.history();
    let run = history.get(history_before..).unwrap_or_default();
    match on_shutdown {
        OnShutdown::Offline => {
            if !left.is_empty() {
                return Err(format!("services left running: {left:?}"));
            }
            offline_in_order(run)
        }
        OnShutdown::LeaveRunning => {
            let started_here = slot.recorded_starts()[starts_before..].to_vec();
            check_left_and_adopted(slot, &config, &left, &started_here)
        }
    }
}

/// After a leave-running stop: every service that started still runs, one
/// per resource; the next agent adopts each (same pid, no new start) and,
/// stopping normally, leaves nothing.
fn check_left_and_adopted(
    slot: &Slot,
    config: &Path,
    left: &[(String, i32)],
    started_here: &[(String, i32)],
) -> Result<(), String> {
    let gone: Vec<_> = started_here.iter().filter(|s| !left.contains(s)).collect();
    if !gone.is_empty() {
        return Err(format!(
            "services stopped by a leave-running stop: {gone:?}"
        ));
    }
    for name in RESOURCES {
        let runs = left.iter().filter(|(n, _)| n == name).count();
        if runs > 1 {
            return Err(format!("{runs} services of {name} left: {left:?}"));
        }
    }
    let starts_before = slot.recorded_starts().len();
    let config = std::fs::read_to_string(config)
        .expect("config")
        .replace("\"leave-running\"", "\"offline\"");
    let adopting = slot.dir.join("adopting.toml");
    std::fs::write(&adopting, config).expect("config");
    let history_before = slot.history().len();
    let mut agent = slot.start(&adopting);
    let online = wait_online(slot, &mut agent, history_before, Duration::from_secs(60));
    let now = slot.services();
    let new_starts = slot.recorded_starts()[starts_before..].to_vec();
    // Not if it has exited (and been reaped): its pid may name another.
    if agent.try_wait().ok().flatten().is_none() {
        kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    }
    let stopped = wait_exit(&mut agent, Duration::from_secs(60));
    if stopped.is_none() {
        let _ = agent.kill();
        let _ = agent.wait();
        return Err("the adopting agent did not stop on SIGTERM".into());
    }
    if let Err(why) = online {
        return Err(format!(
            "the next agent did not bring the group online: {why} (running: {now:?})"
        ));
    }
    for (name, pid) in left {
        if !now.contains(&(name.clone(), *pid)) {
            return Err(format!(
                "{name} (pid {pid}) was left running but not adopted: running now {now:?}"
            ));
        }
        // A service left before it had bound its port records its start
        // late; a start of another pid is a second service.
        if new_starts.iter().any(|(n, p)| n == name && p != pid) {
            return Err(format!(
                "{name} was left running (pid {pid}) yet started again: {new_starts:?}"
            ));
        }
    }
    for name in RESOURCES {
        let runs = now.iter().filter(|(n, _)| n == name).count();
        if runs != 1 {
            return Err(format!(
                "{runs} services of {name} under the next agent: {now:?}"
            ));
        }
    }
    let after = slot.services();
    if !after.is_empty() {
        return Err(format!("the adopting agent's stop left {after:?}"));
    }
    Ok(())
}

/// Both resources Online in the history since it had `from` lines; or
/// why not (the agent exited, or the time ran out).
fn wait_online(
    slot: &Slot,
    agent: &mut Child,
    from: usize,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let history = slot.history();
        let mut online = [false; 2];
        for event in history.get(from..).unwrap_or_default() {
            if let Some(i) = RESOURCES.iter().position(|r| event["resource"] == *r) {
                online[i] = event["to"] == "Online";
            }
        }
        if online == [true; 2] {
            return Ok(());
        }
        if let Ok(Some(status)) = agent.try_wait() {
            return Err(format!("the agent exited ({status})"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not within {within:?}"))
}

/// The trials of one test, drawn from a printed seed, run on
/// `WARDEN_SIGNAL_AGENTS` agents side by side; every failure is reported.
fn signal_at_any_moment(which: Signal, on_shutdown: OnShutdown) {
    let trials = env_number("WARDEN_SIGNAL_TRIALS", 50);
    let agents = env_number("WARDEN_SIGNAL_AGENTS", 4).clamp(1, 16);
    let seed = std::env::var("WARDEN_SIGNAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!(
        "{which} ({on_shutdown:?}): {trials} trials on {agents} agents, WARDEN_SIGNAL_SEED={seed}"
    );
    let mut moments = Moments(seed);
    let all: Vec<Trial> = (0..trials)
        .map(|number| Trial {
            number,
            first: Duration::from_millis(moments.below(FIRST_WITHIN_MS + 1)),
            second: (moments.below(2) == 0)
                .then(|| Duration::from_millis(moments.below(SECOND_WITHIN_MS + 1))),
        })
        .collect();
    let base = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..agents)
            .map(|worker| {
                let mine: Vec<Trial> = all
                    .iter()
                    .copied()
                    .filter(|t| t.number % agents == worker)
                    .collect();
                let tag = format!(
                    "sig{}-{}-{on_shutdown:?}-w{worker}",
                    std::process::id(),
                    which as i32
                );
                let slot = Slot::new(base.path(), tag);
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for trial in mine {
                        let log_before = slot.log().len();
                        let services_before = slot.service_logs().map(|l| l.len());
                        if let Err(err) = run_trial(&slot, which, on_shutdown, trial) {
                            let log = slot.log();
                            let services: Vec<String> = RESOURCES
                                .iter()
                                .zip(slot.service_logs())
                                .zip(services_before)
                                .map(|((name, text), from)| {
                                    format!("{name}: {}", text.get(from..).unwrap_or_default())
                                })
                                .collect();
                            failures.push(format!(
                                "trial {trial:?} on {}: {err}\nits agents' log:\n{}\n\
                                 its services' logs:\n{}",
                                slot.tag,
                                log.get(log_before..).unwrap_or_default(),
                                services.join("\n")
                            ));
                            // Leave the next trial a clean slate.
                            for (_, pid) in slot.services() {
                                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker panicked"))
            .collect()
    });
    println!(
        "{which} ({on_shutdown:?}): {trials} trials in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{which} ({on_shutdown:?}), WARDEN_SIGNAL_SEED={seed}: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn one_sigint_at_any_moment_stops_the_agent_and_its_services_in_order() {
    signal_at_any_moment(Signal::SIGINT, OnShutdown::Offline);
}

#[test]
fn one_sigterm_at_any_moment_stops_the_agent_and_its_services_in_order() {
    signal_at_any_moment(Signal::SIGTERM, OnShutdown::Offline);
}

#[test]
fn one_sigint_at_any_moment_with_leave_running_leaves_what_runs_for_adoption() {
    signal_at_any_moment(Signal::SIGINT, OnShutdown::LeaveRunning);
}

#[test]
fn one_sigterm_at_any_moment_with_leave_running_leaves_what_runs_for_adoption() {
    signal_at_any_moment(Signal::SIGTERM, OnShutdown::LeaveRunning);
}

/// The moment the trials only hit by chance, made certain: the stop lands
/// while `back` is OnlinePending, its service started and the process
/// type's `online` call still waiting (`startup-ms`). That service is left
/// running, and the next agent adopts it and brings the group online.
#[test]
fn a_leave_running_stop_while_a_service_comes_online_leaves_it_for_adoption() {
    let base = tempfile::tempdir().expect("tempdir");
    let slot = Slot::new(base.path(), format!("sigpending{}", std::process::id()));
    let config = slot.write_config(OnShutdown::LeaveRunning, SLOW_STARTUP_MS);
    let mut agent = slot.start(&config);
    let started = common::wait_until("back's service started", Duration::from_secs(60), || {
        let starts = slot.recorded_starts();
        let pending = slot
            .history()
            .iter()
            .any(|e| e["resource"] == "back" && e["to"] == "OnlinePending");
        (pending && !starts.is_empty()).then_some(starts)
    });
    assert!(
        !slot.history().iter().any(|e| e["to"] == "Online"),
        "back came online before the stop: {:?}",
        slot.history()
    );
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut agent, Duration::from_secs(60)).expect("the agent stops");
    assert!(
        status.success(),
        "the agent exited with {status}; its log:\n{}",
        slot.log()
    );
    let left = slot.services();
    assert_eq!(
        left, started,
        "the service that was coming online is left, alone"
    );
    if let Err(why) = check_left_and_adopted(&slot, &config, &left, &started) {
        panic!("{why}\nits agents' log:\n{}", slot.log());
    }
}
