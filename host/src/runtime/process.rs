//! The `process` capability: the one program a resource manages.
//!
//! The slot lives in the resource's [`ResourceContext`](super::ResourceContext),
//! not in a wasm store, so the process outlives the instance that started it:
//! when an instance traps and is rebuilt, the new one finds the process
//! still running. A watcher task waits on the child and reports an exit the
//! resource did not ask for at once ([`ProcessExit`]), so the monitor need
//! not wait for the next poll to notice.
//!
//! A service writes its output to `service.log` in the resource's data
//! directory, not to a pipe into the agent, so it does not depend on the
//! agent staying alive. A pid file there names the running process (pid,
//! start time, program). If the agent dies or is stopped with
//! `on_shutdown = "leave-running"`, its services live on; the next agent
//! finds the pid file at its first start of that resource and *adopts* the
//! process if the pid still runs the same program since the same moment,
//! so a service is neither run twice nor restarted needlessly. A pid file
//! naming another program is stale: that process is stopped first.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::contract::bindings::warden::resource::process::{ProcessState, SpawnSpec};

/// An exit of a managed process that nobody asked for.
#[derive(Debug, Clone)]
pub struct ProcessExit {
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

    /// Start `spec` if `allowed` says so. `data_dir` is the working directory
    /// unless the spec names one.
    pub fn spawn(
        &self,
        spec: &SpawnSpec,
        allowed: &[std::path::PathBuf],
        data_dir: &Path,
    ) -> Result<u32, String> {
        let program = Path::new(&spec.program);
        if !allowed.iter().any(|a| a == program) {
            let reason = format!(
                "program {} is not allowed for this plugin (allowed: {})",
                spec.program,
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            tracing::warn!(resource = %self.resource, "denied: {reason}");
            return Err(reason);
        }
        let mut current = self.lock();
        if let Some(running) = &*current
            && running.exit.borrow().is_none()
        {
            return Err(format!("already running as pid {}", running.pid));
        }
        if current.is_none()
            && let Some(adopted) = self.adopt_leftover(&spec.program, data_dir)
        {
            let pid = adopted.pid;
            *current = Some(adopted);
            return Ok(pid);
        }
        let cwd = spec
            .cwd
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Path::new)
            .unwrap_or(data_dir);
        let log_path = data_dir.join(SERVICE_LOG);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| format!("could not open {}: {err}", log_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone()
                    .map_err(|e| format!("{}: {e}", log_path.display()))?,
            ))
            .stderr(Stdio::from(log))
            // Its own process group, so that stop reaches what it forks.
            .process_group(0)
            .kill_on_drop(false);
        if DIE_WITH_AGENT.load(Ordering::SeqCst) {
            let agent = std::process::id();
            // SAFETY: between fork and exec only async-signal-safe calls
            // (prctl, getppid) are made, and nothing is allocated.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                    // The agent may have died before the call above.
                    if std::os::unix::process::parent_id() != agent {
                        return Err(std::io::Error::other("the agent is gone"));
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|err| format!("could not start {}: {err}", spec.program))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{} exited before it could be watched", spec.program))?;
        let pid_file = data_dir.join(PID_FILE);
        let started = start_time(pid).unwrap_or(0);
        if let Err(err) = std::fs::write(&pid_file, format!("{pid} {started} {}\n", spec.program)) {
            tracing::warn!(resource = %self.resource, "could not write {}: {err}", pid_file.display());
        }
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
            // Only this process's pid file: a newer one may have replaced it.
            if std::fs::read_to_string(&pid_file)
                .is_ok_and(|text| text.split_whitespace().next() == Some(&pid.to_string()))
            {
                let _ = std::fs::remove_file(&pid_file);
            }
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

/// The file in a resource's data directory that names its running process.
const PID_FILE: &str = ".warden-pid";

/// The file in a resource's data directory that its service writes to.
pub const SERVICE_LOG: &str = "service.log";

/// When `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it tells a process from a later one
/// that reused the pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessSlot {
    /// Adopt the process a previous agent left running for this resource,
    /// if the pid file names one that still runs `program` since the same
    /// moment. A stale pid file naming another live program is stopped
    /// first, so the service never runs twice.
    fn adopt_leftover(&self, program: &str, data_dir: &Path) -> Option<Running> {
        let pid_file = data_dir.join(PID_FILE);
        let text = std::fs::read_to_string(&pid_file).ok()?;
        let mut words = text.split_whitespace();
        let pid = words.next().and_then(|p| p.parse::<u32>().ok());
        let started = words.next().and_then(|t| t.parse::<u64>().ok());
        let recorded = words.next();
        let (Some(pid), Some(started), Some(recorded)) = (pid, started, recorded) else {
            let _ = std::fs::remove_file(&pid_file);
            return None;
        };
        let same_process = pid > 1 && start_time(pid) == Some(started);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !same_process || argv0 != recorded.as_bytes() {
            let _ = std::fs::remove_file(&pid_file);
            return None;
        }
        if recorded != program {
            tracing::warn!(
                resource = %self.resource,
                pid,
                "{recorded} was left running by a previous agent, but the resource now runs {program}: stopping it"
            );
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            for _ in 0..200 {
                if start_time(pid) != Some(started) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_file(&pid_file);
            return None;
        }
        tracing::info!(
            resource = %self.resource,
            pid,
            "adopted {program}, left running by a previous agent"
        );
        // Not our child: no exit status to wait for. Watch for it to go.
        let (exit_tx, exit) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        let watcher_stopping = stopping.clone();
        let exits = self.exits.clone();
        let resource = self.resource.clone();
        tokio::spawn(async move {
            while start_time(pid) == Some(started) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            if std::fs::read_to_string(&pid_file)
                .is_ok_and(|text| text.split_whitespace().next() == Some(&pid.to_string()))
            {
                let _ = std::fs::remove_file(&pid_file);
            }
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
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
}

/// How often an adopted process is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
