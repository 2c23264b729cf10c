//! The `process` capability: the one program a resource manages.
//!
//! The slot lives in the resource's [`ResourceContext`](super::ResourceContext),
//! not in a wasm store, so the process outlives the instance that started it:
//! when an instance traps and is rebuilt, the new one finds the process
//! still running. A watcher task waits on the child and reports an exit the
//! resource did not ask for at once ([`ProcessExit`]), so the monitor need
//! not wait for the next poll to notice.
//!
//! A program starts with a cleared environment (plus what the operator
//! granted), in the resource's data directory or beneath it, optionally as
//! a configured user: what the plugin asks for never widens that.
//!
//! A service writes its output to `service.log` in the resource's private
//! directory, not to a pipe into the agent, so it does not depend on the
//! agent staying alive. A pid record there names the running process (pid,
//! start time, program; `pid_record.rs`). If the agent dies or is stopped
//! with `on_shutdown = "leave-running"`, its services live on; the next
//! agent reads the record at its first start of that resource and *adopts*
//! the process if the pid still runs the same program since the same
//! moment, so a service is neither run twice nor restarted needlessly. A
//! record naming another program is stale: that process is stopped first,
//! and so is a service whose start a killed agent never got to record.
//!
//! In a cluster, the fence guard (`crate::fence_guard`) holds each
//! service's process group from its spawn or adoption until its watcher has
//! seen it end and killed the group, so a frozen agent's services are
//! killed all the same.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::host_state::{Grants, LaunchGrants, ResourceDirs, RunAs};
use super::launch::{Credentials, Launch};
use super::pid_record::{self, FileId, PidRecord};
use super::private_file;
use crate::contract::bindings::current::warden::resource::process::{ProcessState, SpawnSpec};

/// An exit of a managed process that nobody asked for.
#[derive(Debug, Clone)]
pub struct ProcessExit {
    /// The process id.
    pub pid: u32,
    /// "exited with status 1", "killed by signal 9".
    pub how: String,
}

#[derive(Debug)]
struct Running {
    pid: u32,
    exit: watch::Receiver<Option<Ended>>,
    stopping: Arc<AtomicBool>,
}

/// How a managed process ended.
#[derive(Debug, Clone)]
struct Ended {
    state: ProcessState,
    /// "exited with status 1", "killed by signal 9".
    how: String,
}

impl Ended {
    fn from_status(status: &ExitStatus) -> Ended {
        Ended {
            state: state_of(status),
            how: describe(status),
        }
    }
}

/// Set when the agent leaves its services running on exit
/// (`on_shutdown = "leave-running"`): dropping a slot then kills nothing.
static LEAVE_RUNNING: AtomicBool = AtomicBool::new(false);

/// Leave every managed process running when the agent exits, for the next
/// agent to adopt.
pub fn leave_running_on_exit() {
    LEAVE_RUNNING.store(true, Ordering::SeqCst);
}

/// Whether the agent is exiting with its services left running: nothing
/// may then take a resource offline (see [`leave_running_on_exit`]).
pub fn leaving_running() -> bool {
    LEAVE_RUNNING.load(Ordering::SeqCst)
}

/// Set in cluster mode: every managed process is killed when the agent
/// dies (`PR_SET_PDEATHSIG`), because the cluster moves its groups to
/// another node once the agent's lease expires.
static DIE_WITH_AGENT: AtomicBool = AtomicBool::new(false);

/// Kill managed processes with the agent (cluster mode).
pub fn die_with_agent() {
    DIE_WITH_AGENT.store(true, Ordering::SeqCst);
}

/// The managed process of one resource, if any.
#[derive(Debug)]
pub struct ProcessSlot {
    resource: Arc<str>,
    current: Mutex<Option<Running>>,
    exits: mpsc::UnboundedSender<ProcessExit>,
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "ended".to_string(),
    }
}

fn state_of(status: &ExitStatus) -> ProcessState {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessState::Exited(code),
        (None, Some(signal)) => ProcessState::KilledBySignal(signal),
        _ => ProcessState::Exited(-1),
    }
}

impl ProcessSlot {
    pub fn new(resource: Arc<str>, exits: mpsc::UnboundedSender<ProcessExit>) -> ProcessSlot {
        ProcessSlot {
            resource,
            current: Mutex::new(None),
            exits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> ProcessState {
        match &*self.lock() {
            None => ProcessState::NotStarted,
            Some(running) => match &*running.exit.borrow() {
                None => ProcessState::Running(running.pid),
                Some(ended) => ended.state,
            },
        }
    }

    /// Start `spec` within `grants`: an allowed program, with the
    /// environment the operator granted (never the agent's own), in the
    /// resource's data directory or a directory beneath it, as the user
    /// the operator chose. Every refusal names what was refused and why,
    /// and is logged.
    pub fn spawn(
        &self,
        spec: &SpawnSpec,
        grants: &Grants,
        dirs: &ResourceDirs,
    ) -> Result<u32, String> {
        let checked = check_spawn(spec, grants, &dirs.data).inspect_err(|reason| {
            tracing::warn!(resource = %self.resource, "denied: {reason}");
        })?;
        let mut current = self.lock();
        if let Some(running) = &*current
            && running.exit.borrow().is_none()
        {
            return Err(format!("already running as pid {}", running.pid));
        }
        if current.is_none()
            && let Some(adopted) = self.adopt_leftover(&spec.program, &dirs.private)
        {
            let pid = adopted.pid;
            *current = Some(adopted);
            return Ok(pid);
        }
        let launch = &grants.launch;
        let (program, log) = launch_for(spec, launch, &dirs.private, checked.cwd)?;
        if let Some(run_as) = &launch.run_as {
            hand_over(&dirs.data, run_as)?;
        }
        // Recorded before it exists: an agent killed the moment after the
        // start leaves the next one a way to find it.
        self.record(
            &dirs.private,
            &PidRecord::Starting {
                log,
                program: spec.program.clone(),
            },
        );
        // Started on this thread, the tokio worker polling the resource's
        // actor: in cluster mode the service's PR_SET_PDEATHSIG fires when
        // the thread that started it exits, and a worker lives as long as
        // the agent. Never move this to `spawn_blocking`, whose threads
        // retire after ten idle seconds and would take their services
        // with them.
        let child = program.start().map_err(|err| {
            pid_record::remove_if_starting(&dirs.private);
            format!("could not start {}: {err}", spec.program)
        })?;
        let pid = child.id();
        crate::fault_point::reached(crate::fault_point::SERVICE_STARTED);
        // Its process group (the pid: the launcher's setpgid(0, 0)), for the
        // fence guard.
        crate::fence_guard::hold(pid);
        let private_dir = dirs.private.clone();
        self.record(
            &dirs.private,
            &PidRecord::Running {
                pid,
                started: start_time(pid).unwrap_or(0),
                program: spec.program.clone(),
            },
        );
        let (exit_tx, exit_rx) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        let exits = self.exits.clone();
        let watcher_stopping = stopping.clone();
        let resource = self.resource.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let status = match status {
                Ok(status) => status,
                Err(err) => {
                    tracing::error!(%resource, pid, "waiting for the process failed: {err}");
                    return;
                }
            };
            let ended = Ended::from_status(&status);
            let how = ended.how.clone();
            // What it forked may live on in its process group (nginx's
            // workers after the master is killed), holding ports and
            // answering checks: the service is gone, so is its group.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            crate::fence_guard::release(pid);
            pid_record::remove_if_running(&private_dir, pid);
            exit_tx.send_replace(Some(ended));
            if watcher_stopping.load(Ordering::SeqCst) {
                tracing::info!(%resource, pid, "process {how} after stop");
            } else {
                tracing::warn!(%resource, pid, "process {how}");
                // The monitor may be gone (resource deleted): nothing to tell.
                let _ = exits.send(ProcessExit { pid, how });
            }
        });
        *current = Some(Running {
            pid,
            exit: exit_rx,
            stopping,
        });
        Ok(pid)
    }

    /// Stop the process: SIGTERM, SIGKILL after `grace`. Not a failure.
    pub async fn stop(&self, grace: Duration) -> Result<ProcessState, String> {
        let (pid, mut exit) = {
            let current = self.lock();
            let Some(running) = &*current else {
                return Ok(ProcessState::NotStarted);
            };
            running.stopping.store(true, Ordering::SeqCst);
            (running.pid, running.exit.clone())
        };
        if exit.borrow().is_none() {
            let group = Pid::from_raw(pid as i32);
            if !grace.is_zero() {
                let _ = killpg(group, Signal::SIGTERM);
                if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
                    .await
                    .is_ok()
                {
                    return Ok(self.state());
                }
                tracing::warn!(resource = %self.resource, pid, "no exit {grace:?} after SIGTERM; sending SIGKILL");
            }
            let _ = killpg(group, Signal::SIGKILL);
            if tokio::time::timeout(Duration::from_secs(10), exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                return Err(format!("process {pid} did not exit 10 s after SIGKILL"));
            }
        }
        Ok(self.state())
    }
}

impl Drop for ProcessSlot {
    /// A resource that is dropped (deleted, or the agent shutting down
    /// without taking it offline) leaves no orphan behind.
    fn drop(&mut self) {
        if LEAVE_RUNNING.load(Ordering::SeqCst) {
            return;
        }
        if let Some(running) = &*self.lock()
            && running.exit.borrow().is_none()
        {
            running.stopping.store(true, Ordering::SeqCst);
            let _ = killpg(Pid::from_raw(running.pid as i32), Signal::SIGKILL);
        }
    }
}

/// The file in a resource's private directory that its service writes to.
pub const SERVICE_LOG: &str = "service.log";

/// How `spec` starts: an empty environment but for what the operator
/// granted and the plugin set, output to the service log in `private_dir`
/// (whose identity is returned beside), the working directory `cwd`
/// (opened beneath the data directory), the granted user, and in cluster
/// mode death with the agent. The launcher (`launch.rs`) gives it a process
/// group of its own and stdin from /dev/null.
fn launch_for(
    spec: &SpawnSpec,
    launch: &LaunchGrants,
    private_dir: &Path,
    cwd: OwnedFd,
) -> Result<(Launch, FileId), String> {
    let refused =
        |err: super::launch::LaunchError| format!("could not start {}: {err}", spec.program);
    let log_path = private_dir.join(SERVICE_LOG);
    let log = private_file::open_append(&log_path)
        .map_err(|err| format!("could not open {}: {err}", log_path.display()))?;
    let log_copy = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_id = FileId::of(&log).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut program = Launch::new(Path::new(&spec.program)).map_err(refused)?;
    for arg in &spec.args {
        program.arg(arg).map_err(refused)?;
    }
    // The agent's environment may hold secrets, and a variable like
    // LD_PRELOAD runs code of the plugin's choosing: only these (the
    // plugin's value of a name replaces the operator's).
    for (name, value) in launch.env.iter().chain(&spec.env) {
        program.env(name, value).map_err(refused)?;
    }
    program
        .stdout(OwnedFd::from(log_copy))
        .stderr(OwnedFd::from(log))
        // A descriptor opened beneath the data directory without
        // following links: no path the plugin can swap in between.
        .cwd(cwd);
    if let Some(run_as) = &launch.run_as {
        // Without supplementary groups, the agent's or the user's.
        program.run_as(Credentials {
            uid: run_as.uid,
            gid: run_as.gid,
        });
    }
    if DIE_WITH_AGENT.load(Ordering::SeqCst) {
        program.die_with_parent();
    }
    Ok((program, log_id))
}

/// A spawn request that passed every check.
struct CheckedSpawn {
    /// The working directory, opened beneath the data directory.
    cwd: OwnedFd,
}

/// Check `spec` against `grants`: the program, every variable it asks for,
/// and its working directory.
fn check_spawn(spec: &SpawnSpec, grants: &Grants, data_dir: &Path) -> Result<CheckedSpawn, String> {
    let allowed = &grants.allow_programs;
    if !allowed.iter().any(|a| a == Path::new(&spec.program)) {
        return Err(format!(
            "program {} is not allowed for this plugin (allowed: {})",
            spec.program,
            list_or_none(allowed.iter().map(|p| p.display().to_string()))
        ));
    }
    let allow_env = &grants.launch.allow_env;
    for (name, value) in &spec.env {
        if !allow_env.iter().any(|a| a == name) {
            return Err(format!(
                "environment variable {name:?} is not allowed for this plugin (allowed: {}; \
                 the node configuration's [plugins.TYPE] allow_env grants names)",
                list_or_none(allow_env.iter().cloned())
            ));
        }
        if value.contains('\0') {
            return Err(format!("environment variable {name:?} holds a NUL byte"));
        }
    }
    if spec.args.iter().any(|a| a.contains('\0')) {
        return Err("an argument holds a NUL byte".to_string());
    }
    let cwd = open_beneath(data_dir, spec.cwd.as_deref().unwrap_or(""))?;
    Ok(CheckedSpawn { cwd })
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Open the working directory `cwd` (empty, `/data`, `/data/sub` or the
/// relative `sub`) beneath `data_dir`, one component at a time and never
/// through a link, so that it cannot lead out of the data directory.
fn open_beneath(data_dir: &Path, cwd: &str) -> Result<OwnedFd, String> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    let refuse = |why: &str| {
        format!(
            "working directory {cwd:?} {why}: a program runs in the resource's data \
             directory (/data) or a directory beneath it"
        )
    };
    let relative = match cwd.strip_prefix(super::GUEST_DATA_DIR) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ if cwd.starts_with('/') => return Err(refuse("is outside the data directory")),
        _ => cwd,
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut dir = open(data_dir, flags, Mode::empty()).map_err(|e| {
        format!(
            "could not open the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    for part in relative.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(refuse("climbs out with .."));
        }
        dir = openat(&dir, part, flags, Mode::empty()).map_err(|e| match e {
            nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => {
                refuse(&format!("has {part:?}, which is a link or not a directory"))
            }
            other => refuse(&format!("cannot be opened at {part:?}: {other}")),
        })?;
    }
    Ok(dir)
}

/// Give the data directory to the user the programs run as, so that a
/// service that does not run as root can work in it.
fn hand_over(data_dir: &Path, run_as: &RunAs) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    if meta.uid() == run_as.uid && meta.gid() == run_as.gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(data_dir, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
        format!(
            "could not give the data directory {} to user {}: {e}",
            data_dir.display(),
            run_as.user
        )
    })
}

/// When `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it tells a process from a later one
/// that reused the pid. None once it has ended: a zombie (state `Z`, or
/// `X`) keeps its entry until its parent reaps it, and an adopted
/// process's parent is not this agent but whatever reaps orphans here,
/// which may take its time (seconds, in some containers).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let mut after = stat[stat.rfind(')')? + 2..].split_whitespace();
    if matches!(after.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    after.nth(18)?.parse().ok()
}

impl ProcessSlot {
    /// Write `record` in `private_dir`; a failure is logged (the service
    /// runs all the same, and a next agent finds no record to act on).
    fn record(&self, private_dir: &Path, record: &PidRecord) {
        if let Err(err) = pid_record::write(private_dir, record) {
            tracing::warn!(
                resource = %self.resource,
                "could not write the pid record in {}: {err}",
                private_dir.display()
            );
        }
    }

    /// Adopt the process a previous agent left running for this resource,
    /// if the pid record names one that still runs `program` since the same
    /// moment. A stale record naming another live program is stopped first,
    /// and so is a service whose start the previous agent did not live to
    /// record, so the service never runs twice.
    fn adopt_leftover(&self, program: &str, private_dir: &Path) -> Option<Running> {
        let record = match pid_record::read(private_dir) {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(resource = %self.resource, "{err}");
                return None;
            }
        };
        let (pid, started, recorded) = match record {
            PidRecord::Running {
                pid,
                started,
                program,
            } => (pid, started, program),
            PidRecord::Starting { log, program } => {
                self.stop_unrecorded_start(log, &program);
                pid_record::remove(private_dir);
                return None;
            }
        };
        let same_process = pid > 1 && start_time(pid) == Some(started);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !same_process || argv0 != recorded.as_bytes() {
            pid_record::remove(private_dir);
            return None;
        }
        if recorded != program {
            tracing::warn!(
                resource = %self.resource,
                pid,
                "{recorded} was left running by a previous agent, but the resource now runs {program}: stopping it"
            );
            kill_and_wait(&[pid]);
            pid_record::remove(private_dir);
            return None;
        }
        tracing::info!(
            resource = %self.resource,
            pid,
            "adopted {program}, left running by a previous agent"
        );
        crate::fence_guard::hold(pid);
        // Not our child: no exit status to wait for. Watch for it to go.
        let (exit_tx, exit) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        let watcher_stopping = stopping.clone();
        let exits = self.exits.clone();
        let resource = self.resource.clone();
        let private_dir = private_dir.to_path_buf();
        tokio::spawn(async move {
            while start_time(pid) == Some(started) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            pid_record::remove_if_running(&private_dir, pid);
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            crate::fence_guard::release(pid);
            let how = "ended (it was adopted, so its exit status is unknown)".to_string();
            exit_tx.send_replace(Some(Ended {
                state: ProcessState::Exited(-1),
                how: how.clone(),
            }));
            if !watcher_stopping.load(Ordering::SeqCst) {
                tracing::warn!(%resource, pid, "process {how}");
                let _ = exits.send(ProcessExit { pid, how });
            }
        });
        Some(Running {
            pid,
            exit,
            stopping,
        })
    }

    /// Stop what a previous agent started with `log` as its output and was
    /// killed before recording: the service and whatever it forked, found by
    /// the log they hold open. Stopped rather than adopted: its pid and
    /// start time were never recorded to check it by, and the start that
    /// follows is the one the agent knows.
    fn stop_unrecorded_start(&self, log: FileId, program: &str) {
        let holders = pid_record::holders_of(log);
        if holders.is_empty() {
            return;
        }
        tracing::warn!(
            resource = %self.resource,
            "a previous agent was killed while starting {program}: stopping what it started \
             (pids {holders:?}, found by the service log they hold)"
        );
        kill_and_wait(&holders);
    }
}

/// SIGKILL each of `pids` with its process group (a service's group is its
/// own, never the agent's), and wait up to 2 s for each to be gone.
fn kill_and_wait(pids: &[u32]) {
    let own_group = nix::unistd::getpgrp();
    let started: Vec<(u32, Option<u64>)> = pids.iter().map(|&p| (p, start_time(p))).collect();
    for &pid in pids {
        let pid = Pid::from_raw(pid as i32);
        match nix::unistd::getpgid(Some(pid)) {
            Ok(group) if group != own_group && group.as_raw() > 1 => {
                let _ = killpg(group, Signal::SIGKILL);
            }
            _ => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }
    for _ in 0..200 {
        if started
            .iter()
            .all(|&(pid, at)| at.is_none() || start_time(pid) != at)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How often an adopted process is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
