//! The agent's side of the fence guard: start it, tell it what to hold and
//! how long the lease is vouched for, and start another if it dies.
//!
//! One guard per agent process, reached through free functions so that
//! the places that know something (the lease keeper, the process spawner
//! and its watcher) each tell it in one line; without a guard (a single
//! node, or `[cluster] fence_guard = false`) they do nothing.
//!
//! Writes to the guard never block the agent: the pipe is non-blocking,
//! and a line the guard does not take (it is stopped and its pipe full) is
//! reported, not waited for.
//!
//! If the guard dies, the agent says so at error level and starts another
//! at once (at most one start a second), which it tells every held process
//! group and what is left of the last vouch. It does not fence itself for
//! it: the guard is a second line of defence, the agent's own fence still
//! stands meanwhile, and stopping every group because a helper died would
//! turn the helper's fault into an outage.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::guard::WatchdogSetup;
use super::{Command, HeldAddress};

/// The shortest time between two starts of the guard, so that a guard that
/// dies at once is not restarted in a tight loop.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

static GUARD: OnceLock<Arc<Link>> = OnceLock::new();

/// What the agent knows of its guard.
#[derive(Default)]
struct Link {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The guard's pid, for messages.
    pid: u32,
    /// The write end of the guard's stdin; `None` while it is dead or
    /// after the goodbye.
    pipe: Option<File>,
    /// Every process group the guard must hold: a guard started anew is
    /// told them all.
    held: BTreeSet<i32>,
    /// Every virtual address the guard must take off when it fences.
    addresses: BTreeSet<HeldAddress>,
    /// How many groups' ownership keys this node holds.
    owned: u32,
    /// The watchdog device the guard holds, if one is configured.
    watchdog: Option<WatchdogSetup>,
    /// The end of the last vouch, on the agent's clock.
    vouched_until: Option<Instant>,
    /// The agent said goodbye: the guard's exit is expected.
    said_goodbye: bool,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Start this agent's fence guard (`warden fence-guard`, the agent's own
/// binary) and a thread that starts another if it dies. Once per process:
/// a second call finds it running.
///
/// A watchdog device is handed to the guard, which arms it when the node
/// holds something; the agent checked at its start that it can be armed
/// ([`super::watchdog::check`]).
pub fn start(watchdog: Option<WatchdogSetup>) -> Result<()> {
    if GUARD.get().is_some() {
        return Ok(());
    }
    let link = Arc::new(Link::default());
    link.lock().watchdog = watchdog;
    let child = spawn(&mut link.lock())?;
    if GUARD.set(link.clone()).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("fence-guard-watch".to_string())
        .spawn(move || watch(link, child))
        .context("starting the thread that watches the fence guard")?;
    Ok(())
}

/// The lease is vouched for until `until` (the moment the agent would
/// fence itself, and a little more): the guard kills the held groups if no
/// later vouch comes before it, by the guard's own clock.
pub fn vouch_until(until: Instant) {
    let Some(link) = GUARD.get() else { return };
    let mut state = link.lock();
    state.vouched_until = Some(until);
    let vouch = until.saturating_duration_since(Instant::now());
    send(&mut state, &Command::Vouch(vouch));
}

/// The agent is fencing itself (its renewals unanswered) and stops its
/// services on its own until `until`: the guard kills them then if they
/// still run. The lease is no longer vouched for.
pub fn grace_until(until: Instant) {
    let Some(link) = GUARD.get() else { return };
    let mut state = link.lock();
    let grace = until.saturating_duration_since(Instant::now());
    send(&mut state, &Command::Grace(grace));
}

/// This node now holds `groups` groups' ownership keys.
pub fn owns(groups: usize) {
    let Some(link) = GUARD.get() else { return };
    let groups = u32::try_from(groups).unwrap_or(u32::MAX);
    let mut state = link.lock();
    if state.owned != groups {
        state.owned = groups;
        send(&mut state, &Command::Owns(groups));
    }
}

/// A service's process group, from its spawn or adoption.
pub fn hold(pgid: u32) {
    let Some(link) = GUARD.get() else { return };
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    let mut state = link.lock();
    state.held.insert(pgid);
    send(&mut state, &Command::Hold(pgid));
}

/// The service has ended and its process group was killed.
pub fn release(pgid: u32) {
    let Some(link) = GUARD.get() else { return };
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    let mut state = link.lock();
    if state.held.remove(&pgid) {
        send(&mut state, &Command::Release(pgid));
    }
}

/// A virtual address is about to be put on an interface: held before it
/// is added, so that no moment passes with it up and the guard unaware.
pub fn hold_address(address: HeldAddress) {
    let Some(link) = GUARD.get() else { return };
    let mut state = link.lock();
    if state.addresses.insert(address.clone()) {
        send(&mut state, &Command::HoldAddress(address));
    }
}

/// The virtual address is off its interface again (or was never added).
pub fn release_address(address: &HeldAddress) {
    let Some(link) = GUARD.get() else { return };
    let mut state = link.lock();
    if state.addresses.remove(address) {
        send(&mut state, &Command::ReleaseAddress(address.clone()));
    }
}

/// The agent is stopping as planned. If its services are stopped, or
/// `left_running` on purpose, the guard is told to forget them; otherwise
/// it kills what is still held when the last vouch runs out. Either way
/// the pipe closes and the guard exits.
pub fn goodbye(left_running: bool) {
    let Some(link) = GUARD.get() else { return };
    let mut state = link.lock();
    state.said_goodbye = true;
    if left_running || (state.held.is_empty() && state.addresses.is_empty()) {
        send(&mut state, &Command::ReleaseAll);
    } else {
        tracing::warn!(
            "{} service process group(s) still run and {} virtual address(es) are still up at \
             shutdown; the fence guard kills and takes them off when the last vouch runs out",
            state.held.len(),
            state.addresses.len()
        );
    }
    state.pipe = None;
}

/// Start a guard and tell it what the agent holds and vouches for now.
fn spawn(state: &mut State) -> Result<Child> {
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0("warden").arg("fence-guard");
    if let Some(watchdog) = &state.watchdog {
        command
            .arg("--watchdog")
            .arg(&watchdog.device)
            .arg("--watchdog-timeout-s")
            .arg(watchdog.timeout_s.to_string());
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Not stopped or signalled with the agent's process group.
        .process_group(0)
        .spawn()
        .context("starting the fence guard (this agent's binary, warden fence-guard)")?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("the fence guard was started without a pipe"))?;
    let pipe = OwnedFd::from(stdin);
    fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context("making the fence guard's pipe non-blocking")?;
    state.pid = child.id();
    state.pipe = Some(File::from(pipe));
    for pgid in state.held.clone() {
        send(state, &Command::Hold(pgid));
    }
    for address in state.addresses.clone() {
        send(state, &Command::HoldAddress(address));
    }
    if state.owned > 0 {
        let owned = state.owned;
        send(state, &Command::Owns(owned));
    }
    if let Some(until) = state.vouched_until {
        send(
            state,
            &Command::Vouch(until.saturating_duration_since(Instant::now())),
        );
    }
    tracing::info!(
        pid = state.pid,
        held = state.held.len(),
        "fence guard running"
    );
    Ok(child)
}

/// Wait for the guard; when it dies (unless the agent said goodbye), say so
/// loudly and start another.
fn watch(link: Arc<Link>, mut child: Child) {
    let mut started = Instant::now();
    loop {
        let status = child.wait();
        {
            let mut state = link.lock();
            if state.said_goodbye {
                return;
            }
            state.pipe = None;
            match status {
                Ok(status) => tracing::error!(
                    pid = state.pid,
                    "the fence guard died ({status}); until another runs, only the agent's own \
                     fence stops this node's services if the agent stalls: starting another"
                ),
                Err(err) => {
                    tracing::error!(
                        pid = state.pid,
                        "the fence guard can no longer be watched ({err}); this node's services \
                         are guarded only by the agent's own fence"
                    );
                    return;
                }
            }
        }
        crate::systemd::notify_or_log("STATUS=the fence guard died; starting another");
        loop {
            std::thread::sleep((started + RESTART_PAUSE).saturating_duration_since(Instant::now()));
            started = Instant::now();
            let mut state = link.lock();
            if state.said_goodbye {
                return;
            }
            match spawn(&mut state) {
                Ok(next) => {
                    child = next;
                    break;
                }
                Err(err) => tracing::error!("{err:#}; trying again in {RESTART_PAUSE:?}"),
            }
        }
    }
}

/// Write one line. The pipe never blocks: a guard that does not read
/// (stopped, its pipe full) is reported, and a dead one is the watcher's
/// to report.
fn send(state: &mut State, command: &Command) {
    let Some(pipe) = state.pipe.as_mut() else {
        return;
    };
    let line = command.line();
    let written = loop {
        match pipe.write(line.as_bytes()) {
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match written {
        Ok(n) if n == line.len() => {}
        Ok(n) => tracing::error!(
            pid = state.pid,
            "only {n} of {} bytes of {:?} reached the fence guard",
            line.len(),
            line.trim_end()
        ),
        Err(err) if err.kind() == ErrorKind::WouldBlock => tracing::error!(
            pid = state.pid,
            "the fence guard is not reading its pipe (is it stopped?): {:?} not delivered",
            line.trim_end()
        ),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => state.pipe = None,
        Err(err) => tracing::error!(
            pid = state.pid,
            "telling the fence guard {:?}: {err}",
            line.trim_end()
        ),
    }
}
