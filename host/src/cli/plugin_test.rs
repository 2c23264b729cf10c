//! `warden plugin test FILE.wasm --prop k=v ...`: run one resource of a
//! plugin through its whole life cycle against real processes, in this
//! process, and print each step with its timing.
//!
//! Steps: load (as `plugin check`), validate, open + online, two health
//! checks, kill of the managed service (its pid from the `pid` control
//! code), recovery (online again), offline, close. A step that does not
//! finish in time (a hang) or ends the resource Failed (a trap, an error)
//! fails the test with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::monitor::{Monitor, ResourceHandle, ResourceSpec, ResourceState, TimingOverrides};
use crate::runtime::{Grants, Plugin, ResourceDirs, Runtime, RuntimeConfig};

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
}

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

    let grants = grants(args);
    let dir = data_dir()?;
    let dirs = ResourceDirs::inside(dir.path());
    dirs.create()
        .with_context(|| format!("creating {}", dir.path().display()))?;
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
    // Each step may take its timeout plus a margin; past that it hangs
    // (the monitor cuts calls off itself, so this is a second line).
    let pending = args
        .pending_timeout
        .unwrap_or(Duration::from_millis(info.timing.pending_timeout_ms))
        .max(Duration::from_secs(1));
    println!(
        "note timeouts      online/offline {} ms (--pending-timeout-ms), checks every {} ms",
        pending.as_millis(),
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
fn grants(args: &TestArgs) -> Grants {
    if args.grant_programs.is_empty() {
        println!(
            "note grant         none: the plugin may start no program \
             (grant one with --grant-program /absolute/path)"
        );
    }
    for program in &args.grant_programs {
        println!("note grant         {}", program.display());
    }
    Grants {
        allow_programs: args.grant_programs.clone(),
        ..Grants::default()
    }
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
