//! `warden plugin test FILE.wasm --prop k=v ...`: run one resource of a
//! plugin through its whole life cycle against real processes, in this
//! process, and print each step with its timing.
//!
//! Steps: load (as `plugin check`), validate, open + online, two health
//! checks, kill of the managed service (its pid from the `pid` control
//! code), recovery (online again), offline, close. A step that does not
//! finish in time (a hang) or ends the resource Failed (a trap, an error)
//! fails the test with the reason, followed by the tail of the managed
//! program's output. A step waits as long as the agent would: a pending
//! online or offline that reports progress gets the agent's extensions,
//! up to the agent's cap ([`Timers`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::PluginGrants;
use crate::monitor::{
    Monitor, ResourceHandle, ResourceSpec, ResourceState, Timers, TimingOverrides,
};
use crate::runtime::{Grants, Plugin, ResourceDirs, Runtime, RuntimeConfig, SERVICE_LOG};

/// What `warden plugin test` was asked.
pub struct TestArgs {
    /// The `.wasm` file to test.
    pub file: PathBuf,
    /// The resource's properties, as `--prop KEY=VALUE` gave them.
    pub properties: Vec<(String, String)>,
    /// Programs the resource may start (`--grant-program`); none: it may
    /// start nothing. Never taken from the plugin or its properties: the
    /// plugin under test is the one thing not to trust with a grant.
    pub grant_programs: Vec<PathBuf>,
    /// Interval of the health checks during the test.
    pub check_interval: Duration,
    /// Overrides the type's pending timeout (online and offline), so that
    /// a hang shows quickly.
    pub pending_timeout: Option<Duration>,
    /// Run the managed program as this user (`--user`, a name or uid), as
    /// the node configuration's `[plugins.TYPE] user` does.
    pub user: Option<String>,
    /// Keep the resource's data directory after the test and print where
    /// it is (`--keep-data`).
    pub keep_data: bool,
}

/// How many of the managed program's last output lines a failed step
/// prints.
pub const OUTPUT_TAIL_LINES: usize = 40;
/// The most of the service log's end that is read for them.
const OUTPUT_TAIL_BYTES: u64 = 64 * 1024;
/// A line of the tail is cut to this many characters.
const OUTPUT_LINE_CHARS: usize = 400;

/// Health checks run this often during a test unless asked otherwise.
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 500;

fn step(name: &str, started: Instant, detail: &str) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if detail.is_empty() {
        println!("ok   {name:<14} {ms:>9.1} ms");
    } else {
        println!("ok   {name:<14} {ms:>9.1} ms  {detail}");
    }
}

fn failed(name: &str, started: Instant, why: impl std::fmt::Display) -> anyhow::Error {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("FAIL {name:<14} {ms:>9.1} ms  {why}");
    anyhow!("step {name} failed: {why}")
}

/// Wait until the resource is in `want`; a Failed state (when not wanted)
/// or the time passing fails the step with the reason.
async fn reach(
    handle: &ResourceHandle,
    name: &str,
    want: ResourceState,
    within: Duration,
    started: Instant,
) -> Result<()> {
    let status = handle
        .wait_for(within, |s| {
            s.state == want || (s.state == ResourceState::Failed && want != ResourceState::Failed)
        })
        .await;
    match status {
        Some(s) if s.state == want => Ok(()),
        Some(s) => Err(failed(
            name,
            started,
            format!(
                "the resource failed: {}",
                s.reason.as_deref().unwrap_or("no reason given")
            ),
        )),
        None => {
            let s = handle.status();
            Err(failed(
                name,
                started,
                format!(
                    "hang: not {want} within {} ms (state {}, reason: {})",
                    within.as_millis(),
                    s.state,
                    s.reason.as_deref().unwrap_or("none")
                ),
            ))
        }
    }
}

/// Wait for `count` more health checks while the resource stays Online.
async fn checks(
    handle: &ResourceHandle,
    name: &str,
    count: u64,
    within: Duration,
    started: Instant,
) -> Result<()> {
    let first = handle.status().checks;
    let status = handle
        .wait_for(within, |s| {
            s.state != ResourceState::Online || s.checks >= first + count
        })
        .await;
    match status {
        Some(s) if s.state == ResourceState::Online => Ok(()),
        Some(s) => Err(failed(
            name,
            started,
            format!(
                "a health check failed: {} ({})",
                s.reason.as_deref().unwrap_or("no reason given"),
                s.state
            ),
        )),
        None => Err(failed(
            name,
            started,
            format!(
                "hang: {count} health checks did not complete within {} ms",
                within.as_millis()
            ),
        )),
    }
}

/// Run `warden plugin test`: one resource of the file through its whole
/// life cycle, each step printed with its timing; an error names the
/// step that failed.
pub async fn run(args: TestArgs) -> Result<()> {
    let total = Instant::now();
    let result = life_cycle(&args).await;
    match &result {
        Ok(()) => println!(
            "PASS {} ({:.1} s)",
            args.file.display(),
            total.elapsed().as_secs_f64()
        ),
        Err(_) => println!(
            "FAIL {} ({:.1} s)",
            args.file.display(),
            total.elapsed().as_secs_f64()
        ),
    }
    result
}

async fn life_cycle(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    let plugin = load(&args.file)
        .await
        .map_err(|e| failed("load", started, format!("{e:#}")))?;
    let info = plugin.info().clone();
    step("load", started, &format!("{} {}", info.name, info.version));

    let grants = grants(args, &info.name)?;
    let dir = data_dir()?;
    let dirs = ResourceDirs::inside(dir.path());
    let log = dirs.private.join(SERVICE_LOG);
    let result = run_resource(args, plugin, dirs, grants).await;
    if result.is_err() {
        print_output_tail(&log);
    }
    if args.keep_data {
        let kept = dir.keep();
        println!("note data kept     {}", kept.display());
    }
    result
}

/// Validate, drive and close the one resource of the test.
async fn run_resource(
    args: &TestArgs,
    plugin: Arc<Plugin>,
    dirs: ResourceDirs,
    grants: Grants,
) -> Result<()> {
    let info = plugin.info().clone();
    dirs.create()
        .with_context(|| format!("creating {}", dirs.data.display()))?;
    let interval = args.check_interval;
    let spec = ResourceSpec {
        name: "plugin-test".to_string(),
        type_name: info.name.clone(),
        properties: args.properties.clone(),
        timing: TimingOverrides {
            looks_alive_interval: Some(interval),
            is_alive_interval: Some(interval),
            pending_timeout: args.pending_timeout,
            ..TimingOverrides::default()
        },
        memory_limit: None,
        dirs,
        grants,
    };
    // The agent's timers for this resource: the monitor cuts a pending
    // call off at its timeout unless progress reports extend it, up to
    // the cap. A step waits for that (plus a margin) before it calls the
    // resource hung, so a slow online that reports progress passes here
    // exactly when it would pass in the agent.
    let timers = Timers::resolve(&plugin, &spec.timing);
    let pending = timers.pending_cap.max(Duration::from_secs(1));
    println!(
        "note timeouts      online/offline {} ms (--pending-timeout-ms){}, \
         extended by progress reports up to {} ms; checks every {} ms",
        timers.offline_timeout.as_millis(),
        if timers.online_timeout.is_none() {
            " (online: none, the type's own rule)"
        } else {
            ""
        },
        timers.pending_cap.as_millis(),
        interval.as_millis()
    );
    let check_time = interval * 3 + Duration::from_millis(info.timing.check_timeout_ms) * 2;
    let margin = Duration::from_secs(5);

    let started = Instant::now();
    let mut monitor = Monitor::default();
    let handle = monitor
        .add(plugin, spec)
        .await
        .map_err(|e| failed("validate", started, e))?;
    step("validate", started, "");

    let result = drive(&handle, pending + margin, check_time + margin)
        .await
        .map_err(|e| with_grant_hint(e, args));
    let started = Instant::now();
    handle.shutdown().await;
    monitor.shutdown().await;
    match result {
        Ok(()) => {
            step("close", started, "");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A failure because a spawn was refused names the flag that grants it.
fn with_grant_hint(err: anyhow::Error, args: &TestArgs) -> anyhow::Error {
    let refused_spawn = format!("{err:#}").contains("is not allowed for this plugin");
    if refused_spawn {
        println!(
            "hint grant         the plugin may only start programs given with \
             --grant-program /absolute/path (granted: {})",
            granted_list(args)
        );
        err.context("a program was not granted; grant it with --grant-program /absolute/path")
    } else {
        err
    }
}

fn granted_list(args: &TestArgs) -> String {
    if args.grant_programs.is_empty() {
        return "none".to_string();
    }
    args.grant_programs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn drive(handle: &ResourceHandle, pending: Duration, check_time: Duration) -> Result<()> {
    let started = Instant::now();
    handle.online()?;
    reach(handle, "online", ResourceState::Online, pending, started).await?;
    step("open+online", started, "");

    let started = Instant::now();
    checks(handle, "health checks", 2, check_time, started).await?;
    step("health checks", started, "2 passed");

    let started = Instant::now();
    let pid = match handle.control("pid", "").await? {
        Ok(pid) => Some(pid),
        Err(why) => {
            println!(
                "skip kill           the type manages no process here (control \"pid\": {why})"
            );
            None
        }
    };
    if let Some(pid) = pid {
        let pid: i32 = pid
            .trim()
            .parse()
            .map_err(|_| failed("kill", started, format!("control \"pid\" answered {pid:?}")))?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .map_err(|e| failed("kill", started, format!("kill -9 {pid}: {e}")))?;
        let noticed = handle
            .wait_for(check_time, |s| s.state == ResourceState::Failed)
            .await;
        match noticed {
            Some(s) => step(
                "kill",
                started,
                &format!(
                    "pid {pid} killed; noticed: {}",
                    s.reason.as_deref().unwrap_or("failed")
                ),
            ),
            None => {
                return Err(failed(
                    "kill",
                    started,
                    format!(
                        "pid {pid} killed but the resource did not fail within {} ms (state {})",
                        check_time.as_millis(),
                        handle.status().state
                    ),
                ));
            }
        }

        let started = Instant::now();
        handle.online()?;
        // The Failed state of the kill stays until the actor takes the
        // command; recovery starts when it leaves it.
        if handle
            .wait_for(pending, |s| s.state != ResourceState::Failed)
            .await
            .is_none()
        {
            return Err(failed(
                "recovery",
                started,
                "hang: the resource stayed Failed after online was asked",
            ));
        }
        reach(handle, "recovery", ResourceState::Online, pending, started).await?;
        checks(handle, "recovery", 1, check_time, started).await?;
        step("recovery", started, "online again, 1 check passed");
    }

    let started = Instant::now();
    handle.offline()?;
    reach(handle, "offline", ResourceState::Offline, pending, started).await?;
    step("offline", started, "");
    Ok(())
}

async fn load(file: &Path) -> Result<Arc<Plugin>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    })?;
    let plugin = Plugin::load(&runtime, &bytes)
        .await
        .with_context(|| format!("{} is not a usable plugin", file.display()))?;
    Ok(Arc::new(plugin))
}

/// The programs granted: exactly the ones given with `--grant-program`.
///
/// Not the plugin's `program` property or its default: `plugin test` often
/// runs as root against a plugin not yet trusted, and a grant taken from
/// the plugin's own description would let it name any program (`/bin/sh`)
/// and have it started. Without a grant a spawn is refused, and the refusal
/// (the resource failing to go online) says which flag grants it.
fn grants(args: &TestArgs, type_name: &str) -> Result<Grants> {
    if args.grant_programs.is_empty() {
        println!(
            "note grant         none: the plugin may start no program \
             (grant one with --grant-program /absolute/path)"
        );
    }
    for program in &args.grant_programs {
        println!("note grant         {}", program.display());
    }
    // The node configuration's own grant, resolved as the agent resolves
    // it: the user looked up now, an unknown one refused naming it.
    let grants = PluginGrants {
        allow_programs: args.grant_programs.clone(),
        user: args.user.clone(),
        ..PluginGrants::default()
    }
    .resolve(type_name)
    .context("--user")?;
    if let Some(run_as) = &grants.launch.run_as {
        println!(
            "note user          {} (uid {}, gid {}; no supplementary groups)",
            run_as.user, run_as.uid, run_as.gid
        );
    }
    Ok(grants)
}

/// Print the last [`OUTPUT_TAIL_LINES`] lines the managed program wrote
/// (its stdout and stderr both go to the service log), each cut to a
/// readable length with control characters escaped: the program's output
/// is the program's, and must not drive the terminal.
fn print_output_tail(log: &Path) {
    match output_tail(log, OUTPUT_TAIL_LINES) {
        Ok(lines) if lines.is_empty() => {
            println!("note output        the managed program wrote nothing")
        }
        Ok(lines) => {
            println!(
                "note output        the last {} lines of the managed program's output:",
                lines.len()
            );
            for line in lines {
                println!("  | {line}");
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("note output        no managed program was started")
        }
        Err(err) => println!("note output        could not read {}: {err}", log.display()),
    }
}

/// The last `count` lines of the file at `log` (its last
/// [`OUTPUT_TAIL_BYTES`] at most), escaped to plain text.
pub fn output_tail(log: &Path, count: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(OUTPUT_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(OUTPUT_TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    // A read that began mid-file began mid-line: drop that piece.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(count);
    Ok(lines[skip..].iter().map(|line| printable(line)).collect())
}

fn printable(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars().take(OUTPUT_LINE_CHARS) {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if line.chars().count() > OUTPUT_LINE_CHARS {
        out.push_str(" [...]");
    }
    out
}

/// The resource's data directory for the test: a fresh directory with an
/// unpredictable name, created owner-only (0700) under the temporary
/// directory, and removed when the test ends. A name known in advance (the
/// pid, say) would let another local user create it first, or plant a link
/// there, and so hand the resource a directory they control.
fn data_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("warden-plugin-test-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| {
            format!(
                "creating a private data directory under {}",
                std::env::temp_dir().display()
            )
        })
}

/// Check the arguments before anything runs.
pub fn check_args(args: &TestArgs) -> Result<()> {
    if args.check_interval.is_zero() {
        bail!("--check-interval-ms must be more than 0");
    }
    if args.pending_timeout.is_some_and(|t| t.is_zero()) {
        bail!("--pending-timeout-ms must be more than 0");
    }
    Ok(())
}

/// `--prop KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}
