//! The `process` capability: the one program a resource manages.
//!
//! The slot lives in the resource's [`ResourceContext`](super::ResourceContext),
//! not in a wasm store, so the process outlives the instance that started it:
//! when an instance traps and is rebuilt, the new one finds the process
//! still running. A watcher task waits on the child and reports an exit the
//! resource did not ask for at once ([`ProcessExit`]), so the monitor need
//! not wait for the next poll to notice.
//!
//! A pid file in the resource's data directory names the running process.
//! If the agent is killed, its services live on; the next agent finds the
//! pid file at its first start of that resource and stops the leftover
//! (after checking that the pid still runs the same program) before it
//! starts anew, so a service never runs twice.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
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
    exit: watch::Receiver<Option<ExitStatus>>,
    stopping: Arc<AtomicBool>,
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
                Some(status) => state_of(status),
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
        if current.is_none() {
            reap_leftover(&self.resource, data_dir);
        }
        let cwd = spec
            .cwd
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Path::new)
            .unwrap_or(data_dir);
        let mut command = Command::new(program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that stop reaches what it forks.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|err| format!("could not start {}: {err}", spec.program))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{} exited before it could be watched", spec.program))?;
        for (stream, pipe) in [
            (
                "stdout",
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            ),
            (
                "stderr",
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            ),
        ] {
            if let Some(pipe) = pipe {
                tokio::spawn(forward_lines(self.resource.clone(), stream, pipe));
            }
        }
        let pid_file = data_dir.join(PID_FILE);
        if let Err(err) = std::fs::write(&pid_file, format!("{pid} {}\n", spec.program)) {
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
            let how = describe(&status);
            // Only this process's pid file: a newer one may have replaced it.
            if std::fs::read_to_string(&pid_file)
                .is_ok_and(|text| text.split_whitespace().next() == Some(&pid.to_string()))
            {
                let _ = std::fs::remove_file(&pid_file);
            }
            exit_tx.send_replace(Some(status));
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

/// Stop the process a previous agent left running for this resource, if
/// the pid file names one that still runs the same program.
fn reap_leftover(resource: &str, data_dir: &Path) {
    let pid_file = data_dir.join(PID_FILE);
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let mut words = text.split_whitespace();
    let (Some(pid), Some(program)) = (
        words.next().and_then(|p| p.parse::<i32>().ok()),
        words.next(),
    ) else {
        let _ = std::fs::remove_file(&pid_file);
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if pid > 1 && argv0 == program.as_bytes() {
        tracing::warn!(
            resource,
            pid,
            "{program} was left running by a previous agent; stopping it before starting anew"
        );
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        // It is not our child: wait for it to vanish rather than for an exit
        // status, briefly.
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(&pid_file);
}

async fn forward_lines(
    resource: Arc<str>,
    stream: &'static str,
    pipe: Box<dyn AsyncRead + Send + Unpin>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "warden::service", resource = %resource, stream, "{line}");
    }
}
