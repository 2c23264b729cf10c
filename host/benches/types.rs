//! What a health check through a built-in resource type costs, beside the
//! command-line check an operator's script would fork and exec instead, and
//! how long the agent takes to bring nginx back after a kill -9 of its
//! master. Prints two markdown tables.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p warden --bench types
//! ```
//!
//! 1. **One is-alive, wasm against fork-exec.** For each built-in type
//!    (`process`, `smtp-instance`, `http-instance`, `mta`, `store`,
//!    `ms-search`) one resource is brought online through the runtime
//!    ([`Instance::online`], which starts the real service: the mail
//!    services of `examples/mail-services`, Debian's nginx, `sleep`), then
//!    is-alive is called `CALLS` times on a tokio current-thread runtime, so
//!    that every instruction of the call (host bookkeeping, the guest, its
//!    socket I/O through WASI) runs on this thread: its CPU time is the
//!    difference of `CLOCK_THREAD_CPUTIME_ID` around the call. The
//!    equivalent command (`curl`, `/bin/kill -0`, a `bash` dialogue over
//!    `/dev/tcp`) is run `FORKS` times in the same process: its CPU time is
//!    this thread's (fork, exec, wait) plus the child's, from the
//!    `RUSAGE_CHILDREN` difference. The service's own CPU is in neither.
//! 2. **nginx after a kill -9, under the agent.** An in-process agent
//!    (`warden::agent::Agent`, the policy and monitor as in production, on
//!    a 2-worker runtime) supervises nginx with the `http-instance` type,
//!    checks 60 s apart and the shipped restart waits (no delay; a back-off
//!    of 1 s doubling to 5 min from the second failure in the period). Each
//!    round kills the master with SIGKILL and times, from the kill: the
//!    `process-exited` event, the resource `Failed`, `Online` again, and
//!    the first GET answered 200 by a new nginx worker. The restart period
//!    is 1 s and the rounds [`ROUND_PAUSE`] apart, so each kill is the
//!    first failure in its period: what a kill -9 of a healthy service
//!    costs, not the back-off of a crash loop.
//!
//! `WARDEN_BENCH_PART=2` runs part 2 alone; `WARDEN_BENCH_BACKOFF_MS=0`
//! runs it without the back-off (the restart rules as they were before
//! it), to compare.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::nginx::{NGINX, nginx_config};
use tokio::sync::{broadcast, mpsc, watch};
use warden::agent::Agent;
use warden::config::AgentConfig;
use warden::contract::Health;
use warden::monitor::{EventKind, ResourceSpec, ResourceState, TimingOverrides, validate_spec};
use warden::runtime::{
    CallDeadline, Grants, Instance, InstanceConfig, Plugin, ResourceContext, ResourceDirs, Runtime,
    RuntimeConfig,
};

#[path = "support/stats.rs"]
mod stats;
use stats::{human, quantile};

/// Timed is-alive calls per type, after `WARMUP` untimed ones.
const CALLS: usize = 5_000;
const WARMUP: usize = 200;
/// Timed fork-exec checks per type, after `FORK_WARMUP` untimed ones.
const FORKS: usize = 1_000;
const FORK_WARMUP: usize = 20;
/// Kill -9 rounds of part 2.
const ROUNDS: usize = 12;
/// The pause before each kill of part 2: longer than the restart period
/// (1 s), so the failures before it have aged out.
const ROUND_PAUSE: Duration = Duration::from_millis(1_200);

const SLEEP: &str = "/usr/bin/sleep";
const CURL: &str = "/usr/bin/curl";
const BASH: &str = "/usr/bin/bash";
const KILL: &str = "/bin/kill";
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let started = Instant::now();
    let bin = services();
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var("WARDEN_BENCH_PART").as_deref() != Ok("2") {
        part_one(&bin, dir.path());
    }

    let agent_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .event_interval(8)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rounds = agent_runtime.block_on(nginx_rounds(dir.path()));
    println!();
    println!("| from the kill -9 of the nginx master to | n | min | median | max |");
    println!("|---|---:|---:|---:|---:|");
    for (what, mut samples) in rounds {
        samples.sort_unstable();
        println!(
            "| {what} | {} | {} | {} | {} |",
            samples.len(),
            human(quantile(&samples, 0.0)),
            human(quantile(&samples, 0.5)),
            human(quantile(&samples, 1.0)),
        );
    }
    println!();
    println!(
        "- machine: {} CPUs, {}; total run time {:.1} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        started.elapsed().as_secs_f64()
    );
}

/// One line of the first table.
struct TypeRow {
    type_name: &'static str,
    command: String,
    wasm_cpu: Vec<Duration>,
    wasm_wall: Vec<Duration>,
    fork_cpu: Vec<Duration>,
    fork_wall: Vec<Duration>,
}

/// One resource of a built-in type, its sandbox and the channels it needs.
struct Resource {
    instance: Instance,
    _cancel: watch::Sender<u64>,
    _exits: mpsc::UnboundedReceiver<warden::runtime::ProcessExit>,
}

impl Resource {
    /// Open a resource of `type_name` (file `file` in the plugin dir)
    /// running `program`, and bring it online: the service starts.
    async fn online(
        runtime: &Arc<Runtime>,
        file: &str,
        program: &Path,
        props: &[(&str, &str)],
        data_dir: &Path,
    ) -> Resource {
        let bytes = std::fs::read(format!("{}/{file}.wasm", env!("WARDEN_PLUGIN_DIR")))
            .expect("built-in plugin, built by host/build.rs");
        let plugin = Arc::new(Plugin::load(runtime, &bytes).await.expect("plugin loads"));
        std::fs::create_dir_all(data_dir).expect("data dir");
        let properties = properties_of(program, props);
        let spec = ResourceSpec {
            name: file.replace('_', "-"),
            type_name: plugin.name().to_string(),
            properties,
            timing: TimingOverrides::default(),
            memory_limit: None,
            dirs: ResourceDirs {
                data: data_dir.to_path_buf(),
                private: data_dir.with_extension("private"),
            },
            grants: Grants {
                allow_programs: vec![program.to_path_buf()],
                configured: properties_of(program, props),
                ..Grants::default()
            },
        };
        // The properties the monitor would pass: defaults filled in.
        let full = validate_spec(&spec, &plugin).await.expect("valid spec");
        let (exits_tx, exits) = mpsc::unbounded_channel();
        spec.dirs.create().expect("resource directories");
        let context = ResourceContext::new(
            &spec.name,
            plugin.name(),
            spec.grants.clone(),
            spec.dirs.clone(),
            exits_tx,
        );
        let (cancel, cancel_rx) = watch::channel(0u64);
        let mut instance =
            Instance::new(plugin, context, full, InstanceConfig::default(), cancel_rx);
        let online = instance
            .online(CallDeadline::fixed(Duration::from_secs(60)))
            .await;
        assert!(matches!(online, Ok(Ok(()))), "{file} online: {online:?}");
        Resource {
            instance,
            _cancel: cancel,
            _exits: exits,
        }
    }

    async fn is_alive(&mut self) {
        let health = self.instance.is_alive(CHECK_TIMEOUT).await;
        assert!(
            matches!(health, Ok(Health::Healthy)),
            "{}: {health:?}",
            self.instance.context().name
        );
    }

    /// CPU and wall time of `WARMUP` + `CALLS` is-alive calls (the timed ones).
    async fn measure(&mut self) -> (Vec<Duration>, Vec<Duration>) {
        for _ in 0..WARMUP {
            self.is_alive().await;
        }
        let mut cpu = Vec::with_capacity(CALLS);
        let mut wall = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let (c, w) = (thread_cpu(), Instant::now());
            self.is_alive().await;
            wall.push(w.elapsed());
            cpu.push(thread_cpu().saturating_sub(c));
        }
        cpu.sort_unstable();
        wall.sort_unstable();
        (cpu, wall)
    }

    /// The managed process's pid, from the pid file the host writes in
    /// the resource's private directory.
    fn pid(&self) -> String {
        let file = self.instance.context().dirs.private.join(".warden-pid");
        let text = std::fs::read_to_string(&file).expect("the host's pid file");
        text.split_whitespace()
            .next()
            .expect("a pid in the pid file")
            .to_string()
    }

    async fn stop(mut self) {
        let _ = self.instance.terminate(CHECK_TIMEOUT).await;
    }
}

/// CPU and wall time of `FORK_WARMUP` + `FORKS` runs of `program args`
/// (the timed ones), each of which must exit 0.
/// A resource's properties as configured: its program and `props`.
fn properties_of(program: &Path, props: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut properties = vec![("program".to_string(), program.display().to_string())];
    properties.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    properties
}

fn measure_command(program: &str, args: &[&str]) -> (Vec<Duration>, Vec<Duration>) {
    let run = || {
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run the check command");
        assert!(
            out.status.success(),
            "{program} {args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    };
    for _ in 0..FORK_WARMUP {
        run();
    }
    let mut cpu = Vec::with_capacity(FORKS);
    let mut wall = Vec::with_capacity(FORKS);
    for _ in 0..FORKS {
        let (c, children, w) = (thread_cpu(), children_cpu(), Instant::now());
        run();
        wall.push(w.elapsed());
        cpu.push(thread_cpu().saturating_sub(c) + children_cpu().saturating_sub(children));
    }
    cpu.sort_unstable();
    wall.sort_unstable();
    (cpu, wall)
}

/// A bash dialogue over /dev/tcp: send each request line, read one answer
/// line each, which must start with the given prefix.
fn bash_dialogue(address: &str, exchanges: &[(&str, &str)]) -> String {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let mut script = format!("exec 3<>/dev/tcp/{host}/{port} || exit 1; ");
    for (request, prefix) in exchanges {
        script.push_str(&format!(
            "printf '{request}\\n' >&3; read -r -t 3 line <&3 && [[ $line == '{prefix}'* ]] || exit 1; "
        ));
    }
    script.push_str("exit 0");
    script
}

/// Part 1: a row per type, and the cost of the CPU time measurement itself.
async fn checks(bin: &Path, dir: &Path) -> (Vec<TypeRow>, Vec<Duration>) {
    let mut clock = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let (c, w) = (thread_cpu(), Instant::now());
        std::hint::black_box(w.elapsed());
        clock.push(thread_cpu().saturating_sub(c));
    }
    clock.sort_unstable();
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let runtime = Arc::new(runtime);
    let (store_at, smtp_at, http_at, mta_at, search_at) = (
        free_address(),
        free_address(),
        free_address(),
        free_address(),
        free_address(),
    );
    let mut rows = Vec::new();

    let mut store = Resource::online(
        &runtime,
        "store",
        &bin.join("mail-store"),
        &[("address", &store_at)],
        &dir.join("store"),
    )
    .await;

    // process: `sleep 600`; is-alive asks the host for the process state.
    let mut process = Resource::online(
        &runtime,
        "process",
        Path::new(SLEEP),
        &[("args", "600")],
        &dir.join("process"),
    )
    .await;
    let (wasm_cpu, wasm_wall) = process.measure().await;
    let pid = process.pid();
    let (fork_cpu, fork_wall) = measure_command(KILL, &["-0", &pid]);
    rows.push(TypeRow {
        type_name: "process",
        command: "`/bin/kill -0 PID`".to_string(),
        wasm_cpu,
        wasm_wall,
        fork_cpu,
        fork_wall,
    });
    process.stop().await;

    // smtp-instance and mta: banner, EHLO, QUIT. curl's SMTP with a custom
    // command: banner, EHLO, NOOP, QUIT.
    for (file, type_name, program, address) in [
        ("smtp_instance", "smtp-instance", "mail-smtp", &smtp_at),
        ("mta", "mta", "mail-mta", &mta_at),
    ] {
        let mut resource = Resource::online(
            &runtime,
            file,
            &bin.join(program),
            &[("address", address), ("store", &store_at)],
            &dir.join(file),
        )
        .await;
        let (wasm_cpu, wasm_wall) = resource.measure().await;
        let url = format!("smtp://{address}/");
        let (fork_cpu, fork_wall) =
            measure_command(CURL, &["-sS", "--max-time", "3", "-X", "NOOP", &url]);
        rows.push(TypeRow {
            type_name,
            command: "`curl -sS -X NOOP smtp://ADDR/` (banner, EHLO, NOOP, QUIT)".to_string(),
            wasm_cpu,
            wasm_wall,
            fork_cpu,
            fork_wall,
        });
        resource.stop().await;
    }

    // http-instance over Debian's nginx: GET / answered 2xx.
    let ngx = dir.join("nginx");
    std::fs::create_dir_all(&ngx).expect("mkdir");
    let conf = nginx_config(&ngx, &http_at);
    let args = format!(
        "-c {} -p {n} -e {n}/error.log",
        conf.display(),
        n = ngx.display()
    );
    let mut http = Resource::online(
        &runtime,
        "http_instance",
        Path::new(NGINX),
        &[("address", &http_at), ("path", "/"), ("args", &args)],
        &dir.join("http_instance"),
    )
    .await;
    let (wasm_cpu, wasm_wall) = http.measure().await;
    let url = format!("http://{http_at}/");
    let (fork_cpu, fork_wall) =
        measure_command(CURL, &["-sf", "--max-time", "3", "-o", "/dev/null", &url]);
    rows.push(TypeRow {
        type_name: "http-instance",
        command: "`curl -sf http://ADDR/` (nginx)".to_string(),
        wasm_cpu,
        wasm_wall,
        fork_cpu,
        fork_wall,
    });
    http.stop().await;

    // store: is-alive is `STATUS` (and a checkpoint of its seq).
    let (wasm_cpu, wasm_wall) = store.measure().await;
    let script = bash_dialogue(&store_at, &[("STATUS", "STATUS ")]);
    let (fork_cpu, fork_wall) = measure_command(BASH, &["-c", &script]);
    rows.push(TypeRow {
        type_name: "store",
        command: "`bash -c` over `/dev/tcp`: `STATUS`".to_string(),
        wasm_cpu,
        wasm_wall,
        fork_cpu,
        fork_wall,
    });

    // ms-search: is-alive is `PING`, then `LAG` (the indexer asks the store).
    let mut search = Resource::online(
        &runtime,
        "ms_search",
        &bin.join("mail-indexer"),
        &[("address", &search_at), ("store", &store_at)],
        &dir.join("ms_search"),
    )
    .await;
    let (wasm_cpu, wasm_wall) = search.measure().await;
    let script = bash_dialogue(&search_at, &[("PING", "PONG"), ("LAG", "LAG ")]);
    let (fork_cpu, fork_wall) = measure_command(BASH, &["-c", &script]);
    rows.push(TypeRow {
        type_name: "ms-search",
        command: "`bash -c` over `/dev/tcp`: `PING`, `LAG`".to_string(),
        wasm_cpu,
        wasm_wall,
        fork_cpu,
        fork_wall,
    });
    search.stop().await;
    store.stop().await;
    (rows, clock)
}

/// Part 1: one is-alive per type through the runtime, against its
/// fork-exec equivalent; prints its table.
fn part_one(bin: &Path, dir: &Path) {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current-thread runtime");
    let (rows, clock) = current.block_on(checks(bin, dir));
    drop(current);
    println!(
        "| type | is-alive through the runtime: CPU median / p99 | wall median / p99 | \
         fork-exec equivalent | its CPU (parent + child) median / p99 | wall median / p99 |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    for row in &rows {
        println!(
            "| `{}` | {} / {} | {} / {} | {} | {} / {} | {} / {} |",
            row.type_name,
            human(quantile(&row.wasm_cpu, 0.5)),
            human(quantile(&row.wasm_cpu, 0.99)),
            human(quantile(&row.wasm_wall, 0.5)),
            human(quantile(&row.wasm_wall, 0.99)),
            row.command,
            human(quantile(&row.fork_cpu, 0.5)),
            human(quantile(&row.fork_cpu, 0.99)),
            human(quantile(&row.fork_wall, 0.5)),
            human(quantile(&row.fork_wall, 0.99)),
        );
    }
    println!();
    println!("- {CALLS} is-alive calls and {FORKS} commands per type, nearest-rank quantiles");
    println!(
        "- the CPU clock read around nothing: median {}, p99 {} (included in the CPU columns)",
        human(quantile(&clock, 0.5)),
        human(quantile(&clock, 0.99))
    );
}

/// Part 2: kill -9 of the nginx master under an in-process agent.
async fn nginx_rounds(dir: &Path) -> Vec<(&'static str, Vec<Duration>)> {
    let node = dir.join("node");
    let ngx = node.join("nginx");
    std::fs::create_dir_all(&ngx).expect("mkdir");
    let address = free_address();
    let conf = nginx_config(&ngx, &address);
    let n = ngx.display();
    let config = node.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "bench"
data_dir = "data"

[plugins.http-instance]
allow_programs = ["{NGINX}"]

[[resource]]
name = "web"
type = "http-instance"
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 1000, period_s = 1{backoff} }}
properties = {{ program = "{NGINX}", args = "-c {conf} -p {n} -e {n}/error.log", address = "{address}", path = "/" }}
"#,
            conf = conf.display(),
            backoff = std::env::var("WARDEN_BENCH_BACKOFF_MS")
                .map(|ms| format!(", backoff_ms = {ms}"))
                .unwrap_or_default(),
        ),
    )
    .expect("write config");
    let agent = Agent::start(AgentConfig::load(&config).expect("config"))
        .await
        .expect("agent starts");
    let mut events = agent.subscribe();
    let web = wait_online(&agent).await;

    let mut exited = Vec::new();
    let mut failed = Vec::new();
    let mut online = Vec::new();
    let mut serving = Vec::new();
    for _ in 0..ROUNDS {
        tokio::time::sleep(ROUND_PAUSE).await;
        let master: i32 = match web.control("pid", "").await {
            Ok(Ok(pid)) => pid.parse().expect("a pid"),
            other => panic!("pid of web: {other:?}"),
        };
        let old_workers = children_of(master);
        assert!(!old_workers.is_empty(), "nginx has no workers");
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
        let seen_exit = Arc::new(AtomicBool::new(false));
        let poller = {
            let (seen_exit, address) = (seen_exit.clone(), address.clone());
            tokio::task::spawn_blocking(move || {
                while !seen_exit.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                // A 200 from a worker of the new master only.
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(pid) = served_by(&address)
                        && !old_workers.contains(&pid)
                    {
                        return Instant::now();
                    }
                    assert!(Instant::now() < deadline, "nginx did not serve again");
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let killed = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(master),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 nginx");
        let (mut t_exit, mut t_failed) = (None, None);
        let t_online = loop {
            let event = match tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .expect("an event within 30 s")
            {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(closed) => panic!("the event stream: {closed}"),
            };
            let at = killed.elapsed();
            if event.resource != "web" {
                continue;
            }
            match event.kind {
                EventKind::ProcessExited { pid, .. } if pid as i32 == master => {
                    t_exit = Some(at);
                    seen_exit.store(true, Ordering::SeqCst);
                }
                EventKind::State {
                    to: ResourceState::Failed,
                    ..
                } => t_failed = Some(at),
                EventKind::State {
                    to: ResourceState::Online,
                    ..
                } if t_failed.is_some() => break at,
                _ => {}
            }
        };
        let served = poller.await.expect("the GET poller");
        exited.push(t_exit.expect("process-exited before Online"));
        failed.push(t_failed.expect("Failed before Online"));
        online.push(t_online);
        serving.push(served.duration_since(killed));
    }
    agent.shutdown().await;
    vec![
        ("the `process-exited` event", exited),
        ("the resource `Failed` (the failure event)", failed),
        (
            "the resource `Online` again (the first failure: no wait)",
            online,
        ),
        ("a GET answered 200 by the new nginx", serving),
    ]
}

async fn wait_online(agent: &Agent) -> warden::monitor::ResourceHandle {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(handle)) = agent.node.resource("web").await
            && handle.status().state == ResourceState::Online
        {
            return handle;
        }
        assert!(Instant::now() < deadline, "web did not come online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// GET / and, if it answered 200, the pid of the worker that answered
/// (the nginx configuration returns `$pid`).
fn served_by(address: &str) -> Option<i32> {
    use std::io::{Read, Write};
    let addr = address.parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    if !answer.starts_with("HTTP/1.1 200") {
        return None;
    }
    answer
        .rsplit_once("worker ")
        .and_then(|(_, pid)| pid.trim().parse().ok())
}

/// The mail services' binaries, built for this profile if needed.
fn services() -> PathBuf {
    // target/<profile>/deps/types-<hash> -> target/<profile>
    let exe = std::env::current_exe().expect("bench binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bins = ["mail-store", "mail-smtp", "mail-mta", "mail-indexer"];
    if !bins.iter().all(|b| dir.join(b).exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "warden-mail-services", "--bins"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the mail services failed");
    }
    dir
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// User + system CPU time of every child waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for the call to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the call to fill in.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_CHILDREN)");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
