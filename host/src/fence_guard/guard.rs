//! The guard process itself: `warden fence-guard`, started by the agent.
//!
//! Two threads and no async runtime: one reads the agent's lines from
//! stdin, the other keeps the deadline, kills, and tends the watchdog
//! device. Neither waits on anything of the agent's but the pipe.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{Pid, getpgid, getpgrp, getppid};

use super::watchdog::Armed;
use super::{Command, HeldAddress, MAX_LINE, addresses};

/// The watchdog device the guard holds (`[cluster] watchdog_device`), and
/// the timeout the agent derived from its lease TTL.
#[derive(Debug, Clone)]
pub struct WatchdogSetup {
    /// The watchdog device to arm.
    pub device: PathBuf,
    /// Its timeout in seconds (a third of the lease TTL).
    pub timeout_s: u32,
}

/// How long to wait before trying again to arm a device that refused.
const ARM_RETRY: Duration = Duration::from_secs(1);

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
pub fn run(watchdog: Option<WatchdogSetup>) -> ExitCode {
    ignore_stop_signals();
    let (tx, rx) = mpsc::channel();
    if let Err(err) = std::thread::Builder::new()
        .name("fence-guard-reader".to_string())
        .spawn(move || read_lines(tx))
    {
        tracing::error!("fence guard: could not start its reading thread: {err}");
        return ExitCode::FAILURE;
    }
    let mut guard = Guard::new(watchdog);
    tracing::info!(pid = std::process::id(), "fence guard started");
    loop {
        let input = match guard.wake_at() {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Input::Closed),
            },
            None => Some(rx.recv().unwrap_or(Input::Closed)),
        };
        match input {
            Some(Input::Line(line)) => guard.take(&line),
            Some(Input::Refused(why)) => tracing::warn!("fence guard: refused {why}"),
            Some(Input::Closed) => return guard.agent_gone(),
            None => {}
        }
        guard.tick();
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
    /// The virtual addresses to take off when the vouch runs out.
    addresses: BTreeSet<HeldAddress>,
    /// When the held groups are killed (a vouch, or a grace).
    vouch: Vouch,
    /// Until when the lease is vouched for: the watchdog is fed only
    /// before this moment, never after.
    fresh_until: Option<Instant>,
    /// How many groups' ownership keys the node holds.
    owned: u32,
    watchdog: Option<Watchdog>,
    /// Groups never to kill: the guard's own and the agent's.
    spared: [Option<i32>; 2],
}

/// The watchdog device, armed or not.
struct Watchdog {
    setup: WatchdogSetup,
    armed: Option<Armed>,
    next_feed: Instant,
    /// After a refusal to arm, not before this.
    next_try: Instant,
}

impl Watchdog {
    /// The timeout asked for: the device's may be shorter.
    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.setup.timeout_s))
    }
}

impl Guard {
    fn new(watchdog: Option<WatchdogSetup>) -> Guard {
        let agent = getpgid(Some(getppid())).ok().map(Pid::as_raw);
        let now = Instant::now();
        Guard {
            held: BTreeSet::new(),
            addresses: BTreeSet::new(),
            vouch: Vouch::Never,
            fresh_until: None,
            owned: 0,
            watchdog: watchdog.map(|setup| Watchdog {
                setup,
                armed: None,
                next_feed: now,
                next_try: now,
            }),
            spared: [Some(getpgrp().as_raw()), agent],
        }
    }

    /// When the loop must act without a line from the agent: the kill
    /// deadline, or the watchdog's next feed (or arming attempt) while the
    /// lease is vouched for.
    fn wake_at(&self) -> Option<Instant> {
        let kill = match self.vouch {
            Vouch::Until(deadline) => Some(deadline),
            Vouch::Never | Vouch::Lapsed => None,
        };
        let fresh = self.fresh_until.filter(|until| Instant::now() < *until);
        let wanted = self.wants_watchdog();
        let watchdog = self.watchdog.as_ref().and_then(|w| {
            let next = match (&w.armed, wanted) {
                (Some(_), _) => w.next_feed,
                (None, true) => w.next_try,
                // Nothing to arm: no wake for the watchdog.
                (None, false) => return None,
            };
            fresh.map(|until| next.min(until))
        });
        kill.into_iter().chain(watchdog).min()
    }

    /// Whether the device is to be armed: the node owns a group or runs a
    /// service.
    fn wants_watchdog(&self) -> bool {
        !self.holds_nothing() || self.owned > 0
    }

    /// No process group and no address held.
    fn holds_nothing(&self) -> bool {
        self.held.is_empty() && self.addresses.is_empty()
    }

    /// After every line and every wake: kill on a lapsed vouch, then tend
    /// the watchdog.
    fn tick(&mut self) {
        if let Vouch::Until(deadline) = self.vouch
            && Instant::now() >= deadline
        {
            self.lapse();
        }
        self.tend_watchdog();
    }

    /// Arm the device while the node owns or runs anything, and feed it
    /// when due, only while the lease is vouched for; without a vouch an
    /// armed device is never fed again and resets the node. Disarm it when
    /// the node holds nothing, as long as the guard's deadline has not
    /// passed: during an agent's own fence (a grace) too, since the agent,
    /// alive, reports each service gone, so a node cut off from etcd that
    /// stopped its services in time is not reset. After a lapse it stays
    /// armed: what the guard killed itself is not known to be gone.
    fn tend_watchdog(&mut self) {
        let wanted = self.wants_watchdog();
        let Some(watchdog) = self.watchdog.as_mut() else {
            return;
        };
        let now = Instant::now();
        let fresh = self.fresh_until.is_some_and(|until| now < until);
        let in_time = matches!(self.vouch, Vouch::Until(deadline) if now < deadline);
        match (watchdog.armed.as_mut(), wanted) {
            (None, true) if fresh && now >= watchdog.next_try => {
                match Armed::arm(&watchdog.setup.device, watchdog.setup.timeout_s) {
                    Ok(armed) => {
                        tracing::info!(
                            "fence guard: watchdog {} armed (timeout {:?}): this node owns {} \
                             group(s) and runs {} service process group(s)",
                            armed.path().display(),
                            armed.timeout(),
                            self.owned,
                            self.held.len()
                        );
                        watchdog.next_feed = now + feed_period(armed.timeout());
                        watchdog.armed = Some(armed);
                    }
                    Err(err) => {
                        tracing::error!(
                            "fence guard: could not arm the watchdog: {err:#}; trying again in \
                             {ARM_RETRY:?}"
                        );
                        watchdog.next_try = now + ARM_RETRY;
                    }
                }
            }
            (Some(_), false) if in_time => disarm(watchdog, "this node holds nothing"),
            (Some(armed), true) if fresh && now >= watchdog.next_feed => {
                if let Err(err) = armed.feed() {
                    tracing::error!("fence guard: {err:#}");
                }
                watchdog.next_feed = now + feed_period(armed.timeout());
            }
            _ => {}
        }
    }

    /// Carry out one line of the agent's.
    fn take(&mut self, line: &str) {
        let command = match Command::parse(line) {
            Ok(command) => command,
            Err(why) => {
                tracing::warn!("fence guard: refused {why}");
                return;
            }
        };
        match command {
            Command::Vouch(vouch) => self.vouch_for(vouch),
            Command::Grace(grace) => self.grace(grace),
            Command::Owns(groups) => self.owned = groups,
            Command::Hold(pgid) => self.hold(pgid),
            Command::Release(pgid) => {
                self.held.remove(&pgid);
            }
            Command::HoldAddress(address) => self.hold_address(address),
            Command::ReleaseAddress(address) => {
                self.addresses.remove(&address);
            }
            Command::ReleaseAll => self.goodbye(),
        }
    }

    /// `vouch`: the agent renewed its lease; nothing is killed for `vouch`.
    fn vouch_for(&mut self, vouch: Duration) {
        if matches!(self.vouch, Vouch::Lapsed) {
            tracing::info!("fence guard: the agent vouches for its lease again");
        }
        let until = Instant::now() + vouch;
        self.vouch = Vouch::Until(until);
        self.fresh_until = Some(until);
    }

    /// `grace`: the agent fences itself; kill after `grace` if it froze.
    fn grace(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        self.vouch = Vouch::Until(until);
        // Fed so that it still fires before the grace ends, and not past
        // what the last vouch allowed.
        if let Some(watchdog) = &self.watchdog
            && let Some(last_feed) = until.checked_sub(watchdog.timeout())
        {
            self.fresh_until = self.fresh_until.max(Some(last_feed));
        }
    }

    /// `hold`: never the guard's or the agent's own group; killed at once
    /// while no vouch is in force.
    fn hold(&mut self, pgid: i32) {
        if self.spared.contains(&Some(pgid)) {
            tracing::warn!(
                "fence guard: refused to hold process group {pgid}: it is the guard's or the agent's own"
            );
        } else if matches!(self.vouch, Vouch::Lapsed) {
            tracing::error!(
                "fence guard: process group {pgid} held while no vouch is in force: killing it"
            );
            kill_groups([pgid]);
        } else {
            self.held.insert(pgid);
        }
    }

    /// `hold-address`: taken off at once while no vouch is in force.
    fn hold_address(&mut self, address: HeldAddress) {
        if matches!(self.vouch, Vouch::Lapsed) {
            tracing::error!(
                "fence guard: address {address} held while no vouch is in force: taking it off"
            );
            addresses::take_off(&BTreeSet::from([address]));
        } else {
            self.addresses.insert(address);
        }
    }

    /// `release-all`, the agent's goodbye: hold nothing, own nothing, and
    /// disarm the watchdog.
    fn goodbye(&mut self) {
        if !self.holds_nothing() {
            tracing::info!(
                "fence guard: released {} process group(s) and {} address(es) at the \
                 agent's goodbye",
                self.held.len(),
                self.addresses.len()
            );
        }
        self.held.clear();
        self.addresses.clear();
        self.owned = 0;
        if let Some(watchdog) = self.watchdog.as_mut()
            && watchdog.armed.is_some()
        {
            disarm(watchdog, "the agent said goodbye");
        }
    }

    /// The vouch ran out: kill every held group, and wait for the next.
    fn lapse(&mut self) {
        self.vouch = Vouch::Lapsed;
        self.fresh_until = None;
        if let Some(armed) = self.watchdog.as_ref().and_then(|w| w.armed.as_ref()) {
            tracing::error!(
                "fence guard: the vouch ran out: the watchdog {} is no longer fed and resets \
                 this node within {:?} of its last feed",
                armed.path().display(),
                armed.timeout()
            );
        }
        if self.holds_nothing() {
            tracing::warn!("fence guard: the agent's vouch for its lease ran out; nothing held");
            return;
        }
        tracing::error!(
            "fence guard: the agent's vouch for its lease ran out (the agent is stopped, \
             stalled, or cut off from etcd): killing process group(s) [{}], taking address(es) \
             [{}] off",
            list(&self.held),
            addresses::list(&self.addresses)
        );
        self.fence();
    }

    /// Kill every held group and take every held address off.
    fn fence(&mut self) {
        kill_groups(std::mem::take(&mut self.held));
        addresses::take_off(&std::mem::take(&mut self.addresses));
    }

    /// The agent's end closed: with nothing held (a goodbye), exit now;
    /// otherwise kill what is held once the vouch runs out, then exit.
    fn agent_gone(mut self) -> ExitCode {
        if self.holds_nothing() {
            tracing::info!("fence guard: the agent's pipe closed with nothing held; exiting");
            self.exit_armed();
            return ExitCode::SUCCESS;
        }
        tracing::error!(
            "fence guard: the agent is gone without a goodbye; killing process group(s) [{}] and \
             taking address(es) [{}] off when its vouch runs out",
            list(&self.held),
            addresses::list(&self.addresses)
        );
        // Until the deadline the watchdog is still fed (the vouch holds).
        while let Some(at) = self.wake_at() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            self.tick();
        }
        // Never vouched for: killed at once (a lapse killed them otherwise).
        if !self.holds_nothing() {
            tracing::error!(
                "fence guard: killing process group(s) [{}], taking address(es) [{}] off",
                list(&self.held),
                addresses::list(&self.addresses)
            );
            self.fence();
        }
        tracing::info!("fence guard: exiting");
        self.exit_armed();
        ExitCode::SUCCESS
    }

    /// The guard exits without the agent's goodbye: an armed watchdog stays
    /// armed (its descriptor closes without the magic `V`) and resets the
    /// node, as sbd's does when the cluster manager dies.
    fn exit_armed(&self) {
        if let Some(armed) = self.watchdog.as_ref().and_then(|w| w.armed.as_ref()) {
            tracing::error!(
                "fence guard: exiting without the agent's goodbye: the watchdog {} stays armed \
                 and resets this node within {:?} of its last feed",
                armed.path().display(),
                armed.timeout()
            );
        }
    }
}

/// How often the device is fed: a quarter of its timeout, so a late feed
/// or two never lets it fire while the vouch holds.
fn feed_period(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(100))
}

/// The magic close: the device stops and the node is not reset.
fn disarm(watchdog: &mut Watchdog, why: &str) {
    let Some(armed) = watchdog.armed.take() else {
        return;
    };
    let path = armed.path().display().to_string();
    match armed.disarm() {
        Ok(()) => tracing::info!("fence guard: watchdog {path} disarmed: {why}"),
        Err(err) => tracing::error!("fence guard: {err:#}"),
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
