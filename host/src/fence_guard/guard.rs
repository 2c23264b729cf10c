//! The guard process itself: `warden fence-guard`, started by the agent.
//!
//! Two threads and no async runtime: one reads the agent's lines from
//! stdin, the other keeps the deadline and kills. Neither waits on
//! anything of the agent's but the pipe.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{Pid, getpgid, getpgrp, getppid};

use super::{Command, MAX_LINE};

/// What the reading thread hands the main one.
enum Input {
    Line(String),
    /// A line that was not read as a command, and why.
    Refused(String),
    /// The agent's end closed (or could not be read any more).
    Closed,
}

/// Whether the agent's vouch is in force.
#[derive(Debug, Clone, Copy)]
enum Vouch {
    /// Not yet vouched for: the agent has not renewed its lease yet.
    Never,
    /// Until this moment of the guard's own clock.
    Until(Instant),
    /// It ran out, and every group held then was killed.
    Lapsed,
}

/// Run the guard until the agent's pipe closes (and, if groups are still
/// held, until the vouch runs out and they are killed).
pub fn run() -> ExitCode {
    ignore_stop_signals();
    let (tx, rx) = mpsc::channel();
    if let Err(err) = std::thread::Builder::new()
        .name("fence-guard-reader".to_string())
        .spawn(move || read_lines(tx))
    {
        tracing::error!("fence guard: could not start its reading thread: {err}");
        return ExitCode::FAILURE;
    }
    let mut guard = Guard::new();
    tracing::info!(pid = std::process::id(), "fence guard started");
    loop {
        let input = match guard.vouch {
            Vouch::Until(deadline) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(input) => input,
                    Err(RecvTimeoutError::Timeout) => {
                        guard.lapse();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => Input::Closed,
                }
            }
            Vouch::Never | Vouch::Lapsed => rx.recv().unwrap_or(Input::Closed),
        };
        match input {
            Input::Line(line) => guard.take(&line),
            Input::Refused(why) => tracing::warn!("fence guard: refused {why}"),
            Input::Closed => return guard.agent_gone(),
        }
    }
}

/// The guard outlives the agent's planned stop (the agent's goodbye ends
/// it) and a terminal's hangup: SIGTERM, SIGINT and SIGHUP are ignored.
/// SIGKILL still ends it; the agent then starts another.
fn ignore_stop_signals() {
    for stop in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: no handler is installed, only the ignore action; no
        // other thread exists yet.
        if let Err(err) = unsafe { signal(stop, SigHandler::SigIgn) } {
            tracing::warn!("fence guard: could not ignore {stop}: {err}");
        }
    }
}

/// Read the agent's lines; a line longer than [`MAX_LINE`] or not UTF-8 is
/// refused whole, and reading goes on at the next one.
fn read_lines(tx: mpsc::Sender<Input>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 512];
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut overlong = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                let _ = tx.send(Input::Refused(format!("reading the agent's pipe: {err}")));
                break;
            }
        };
        for &byte in &buf[..n] {
            if byte != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(byte);
                } else {
                    overlong = true;
                }
                continue;
            }
            let input = if overlong {
                Input::Refused(format!("a line longer than {MAX_LINE} bytes"))
            } else {
                match String::from_utf8(std::mem::take(&mut line)) {
                    Ok(text) => Input::Line(text),
                    Err(_) => Input::Refused("a line that is not UTF-8".to_string()),
                }
            };
            line.clear();
            overlong = false;
            if tx.send(input).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Input::Closed);
}

struct Guard {
    held: BTreeSet<i32>,
    vouch: Vouch,
    /// Groups never to kill: the guard's own and the agent's.
    spared: [Option<i32>; 2],
}

impl Guard {
    fn new() -> Guard {
        let agent = getpgid(Some(getppid())).ok().map(Pid::as_raw);
        Guard {
            held: BTreeSet::new(),
            vouch: Vouch::Never,
            spared: [Some(getpgrp().as_raw()), agent],
        }
    }

    fn take(&mut self, line: &str) {
        let command = match Command::parse(line) {
            Ok(command) => command,
            Err(why) => {
                tracing::warn!("fence guard: refused {why}");
                return;
            }
        };
        match command {
            Command::Vouch(vouch) => {
                if matches!(self.vouch, Vouch::Lapsed) {
                    tracing::info!("fence guard: the agent vouches for its lease again");
                }
                self.vouch = Vouch::Until(Instant::now() + vouch);
            }
            Command::Hold(pgid) if self.spared.contains(&Some(pgid)) => {
                tracing::warn!(
                    "fence guard: refused to hold process group {pgid}: it is the guard's or the agent's own"
                );
            }
            Command::Hold(pgid) => {
                if matches!(self.vouch, Vouch::Lapsed) {
                    tracing::error!(
                        "fence guard: process group {pgid} held while no vouch is in force: killing it"
                    );
                    kill_groups([pgid]);
                } else {
                    self.held.insert(pgid);
                }
            }
            Command::Release(pgid) => {
                self.held.remove(&pgid);
            }
            Command::ReleaseAll => {
                if !self.held.is_empty() {
                    tracing::info!(
                        "fence guard: released {} process group(s) at the agent's goodbye",
                        self.held.len()
                    );
                }
                self.held.clear();
            }
        }
    }

    /// The vouch ran out: kill every held group, and wait for the next.
    fn lapse(&mut self) {
        self.vouch = Vouch::Lapsed;
        if self.held.is_empty() {
            tracing::warn!("fence guard: the agent's vouch for its lease ran out; nothing held");
            return;
        }
        let held = std::mem::take(&mut self.held);
        tracing::error!(
            "fence guard: the agent's vouch for its lease ran out (the agent is stopped, \
             stalled, or cut off from etcd): killing process group(s) {}",
            list(&held)
        );
        kill_groups(held);
    }

    /// The agent's end closed: with nothing held (a goodbye), exit now;
    /// otherwise kill what is held once the vouch runs out, then exit.
    fn agent_gone(mut self) -> ExitCode {
        if self.held.is_empty() {
            tracing::info!("fence guard: the agent said goodbye; exiting");
            return ExitCode::SUCCESS;
        }
        tracing::error!(
            "fence guard: the agent is gone without a goodbye; killing process group(s) {} \
             when its vouch runs out",
            list(&self.held)
        );
        if let Vouch::Until(deadline) = self.vouch {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
        let held = std::mem::take(&mut self.held);
        kill_groups(held.iter().copied());
        tracing::error!(
            "fence guard: killed process group(s) {}; exiting",
            list(&held)
        );
        ExitCode::SUCCESS
    }
}

/// SIGKILL to each group; one that is already gone is no error.
fn kill_groups(groups: impl IntoIterator<Item = i32>) {
    for pgid in groups {
        match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => tracing::error!("fence guard: could not kill process group {pgid}: {err}"),
        }
    }
}

fn list(groups: &BTreeSet<i32>) -> String {
    groups
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
