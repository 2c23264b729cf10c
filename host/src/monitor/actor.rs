//! The actor that runs one resource: its life cycle and its timers.
//!
//! One tokio task per resource owns that resource's sandbox. Nothing else
//! touches the sandbox, so no lock is held across a call into a plugin, and
//! a hung call stalls only its own resource. The actor takes commands from
//! its [`ResourceHandle`], managed-process exits from the runtime, and its
//! health-check timers; it publishes a [`ResourceStatus`] after every change
//! and an [`Event`] for everything that happens.
//!
//! The actor decides nothing beyond its own resource: a failure is
//! terminated, reported and left Failed. Whether to restart, and when, is
//! the group policy's decision (`crate::node`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use super::copies::{CopyAnswer, CopyCommand, CopyReport, StatusFilter};
use super::events::{Event, EventKind, unix_ms};
use super::spec::Timers;
use super::state::{LastCheck, ResourceState, ResourceStatus};
use crate::contract::Health;
use crate::runtime::{CallDeadline, CallError, Instance, Plugin, ProcessExit};

use super::spec::TimingOverrides;

mod copy_calls;

/// A request to a resource's actor.
#[derive(Debug)]
pub(crate) enum Command {
    Online,
    Offline,
    /// Terminate at once (no clean offline) and go Offline.
    Terminate,
    /// Suspend (`false`) or resume (`true`) health checks: the node's
    /// Monitoring component.
    Monitoring(bool),
    /// Fail the resource on purpose (fault injection by the operator).
    Fail {
        reason: String,
    },
    /// Control codes answer through `reply`.
    Control(Box<ControlRequest>),
    /// Move the resource to another version of its type (a hot swap).
    Swap(Box<SwapRequest>),
    /// One of the copy calls of a resource with copies.
    Copy(Box<CopyCommand>),
    /// Take the resource offline if it is not, close it, and stop.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

// The rare commands are boxed: every resource's command channel holds a
// first block of 32 commands for its life, so the enum's size is paid 32
// times per resource (issue #19, `heap_profile` bench).
const _: () = assert!(
    std::mem::size_of::<Command>() <= 32,
    "box the large Command variant"
);

/// A control code for the resource; answered through `reply`.
#[derive(Debug)]
pub(crate) struct ControlRequest {
    code: String,
    payload: String,
    reply: oneshot::Sender<Result<String, String>>,
}

/// A hot swap: move the resource to another version of its type. Skipped,
/// with an error, if it arrives after `deadline` (the actor was busy with a
/// long online, say): the swap is then rolled back.
#[derive(Debug)]
pub(crate) struct SwapRequest {
    plugin: Arc<Plugin>,
    properties: Vec<(String, String)>,
    deadline: Instant,
    /// Told when the actor starts the swap (dropped if it skips it).
    started: oneshot::Sender<()>,
    reply: oneshot::Sender<Result<String, SwapFailure>>,
}

/// Why a resource did not move to another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapFailure {
    /// The new version itself failed on the running resource (its online
    /// or first is-alive refused, trapped or timed out): a verdict on that
    /// build, which the node remembers across restarts.
    Version(String),
    /// The swap was not tried or not finished for a reason that says
    /// nothing about the version (the resource was busy, the swap was given
    /// up or took too long to answer).
    NotTried(String),
}

impl std::fmt::Display for SwapFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapFailure::Version(reason) | SwapFailure::NotTried(reason) => f.write_str(reason),
        }
    }
}

/// The two health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    LooksAlive,
    IsAlive,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::LooksAlive => "looks-alive",
            Check::IsAlive => "is-alive",
        }
    }
}

/// How long a control call may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a resource may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a swap may take once the actor has started it: instantiate and
/// open, online and is-alive on the new version, each bounded by a check
/// timeout (at most five minutes by the type's limits, see
/// `runtime::TIMING_LIMITS`), with room to spare. Past it the new instance
/// is dropped and the resource stays on its version.
pub(crate) const SWAP_WORK_LIMIT: Duration = Duration::from_secs(20 * 60);
/// How long a stopping actor gets, once the call in flight has been
/// cancelled, before it is left behind.
const STOP_GRACE: Duration = Duration::from_secs(15);

pub(crate) struct Actor {
    pub name: String,
    pub instance: Instance,
    pub timers: Timers,
    /// The resource's own timer settings, to resolve again on a new version.
    pub overrides: TimingOverrides,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub exits: mpsc::UnboundedReceiver<ProcessExit>,
    pub status: watch::Sender<ResourceStatus>,
    /// How many [`ResourceHandle::wait_for`] are waiting on `status` now.
    /// A check's counters wake them only then: waking the watch's
    /// receivers costs every check a few locks for nobody nearly always
    /// (issue #19's CPU per check); state changes always wake them.
    pub status_waiters: Arc<AtomicUsize>,
    pub events: super::EventBus,
    /// Whether health checks run (the node's Monitoring component).
    pub monitoring: bool,
    /// Every state change and copy answer, lossless, in order, for the
    /// group policy.
    pub changes: mpsc::UnboundedSender<Report>,
    /// When each check is next due; `None` while the resource is not Online.
    pub next_looks_alive: Option<Instant>,
    pub next_is_alive: Option<Instant>,
    /// Which copy of the resource's data runs here, if any.
    pub copy: Option<CopyRun>,
    /// Which of its `copy-status` polls are reported.
    pub copy_filter: StatusFilter,
    /// When `copy-status` is next polled; `None` while no copy runs.
    pub next_copy_status: Option<Instant>,
    /// Where the lateness and the outcome of each check are counted
    /// (shared by every actor of the monitor, read by the metrics).
    pub counters: Arc<super::Counters>,
}

/// The copy of a resource's data that runs on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyRun {
    /// A passive copy: the resource is Offline here, its service runs and
    /// follows the active copy.
    Passive,
    /// The active copy: the resource is Online (or on its way) here.
    Active,
}

/// What a resource's actor tells the node's loop, on one lossless channel
/// so that a copy's answer and its resource's state changes stay in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The resource reached a new state.
    State(StateChange),
    /// A copy call finished, a passive copy failed, or a copy's status moved.
    Copy(CopyReport),
}

/// A resource reached a new state; sent to the group policy.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The resource, by name.
    pub resource: String,
    /// Its new state.
    pub state: ResourceState,
    /// Why it moved, when it failed.
    pub reason: Option<String>,
}

impl Actor {
    pub(super) async fn run(mut self) {
        // The task that runs this future is allocated once, for the
        // resource's life, at the size of its largest await: the rare
        // paths (commands, shutdown, exits, copy status) are boxed for
        // their length so that only the checks' state is inline (issue
        // #19, `heap_profile` bench).
        loop {
            let check = self.next_check();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        Box::pin(self.shutdown()).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => Box::pin(self.handle(command)).await,
                    // Every handle is gone: nobody can ask anything more.
                    None => {
                        Box::pin(self.shutdown()).await;
                        return;
                    }
                },
                Some(exit) = self.exits.recv() => Box::pin(self.on_exit(exit)).await,
                () = sleep_until_opt(self.next_copy_status) => {
                    Box::pin(self.poll_copy_status()).await
                }
                () = sleep_until_opt(check.map(|(_, at)| at)) => {
                    if let Some((check, at)) = check {
                        self.run_check(check, at).await;
                    }
                }
            }
        }
    }

    fn state(&self) -> ResourceState {
        self.status.borrow().state
    }

    fn emit(&self, kind: EventKind) {
        self.events.send(Event::now(&self.name, kind));
    }

    fn set_state(&mut self, to: ResourceState, reason: Option<String>) {
        self.set_state_reporting(to, reason, true);
    }

    /// [`Actor::set_state`]; `report`: whether the group policy hears of
    /// it as a state change (not when a copy call's answer says it).
    fn set_state_reporting(&mut self, to: ResourceState, reason: Option<String>, report: bool) {
        let from = self.state();
        let instances = self.instance.generations();
        self.status.send_modify(|status| {
            status.state = to;
            status.reason = reason.clone();
            status.instances = instances;
            if to == ResourceState::Failed {
                status.failures += 1;
            }
        });
        if matches!(to, ResourceState::Failed | ResourceState::Offline)
            && self.copy == Some(CopyRun::Active)
        {
            // An active copy that failed was terminated with its resource,
            // and one taken offline stopped with it.
            self.stop_copy();
        }
        if from != to {
            if report {
                let _ = self.changes.send(Report::State(StateChange {
                    resource: self.name.clone(),
                    state: to,
                    reason: reason.clone(),
                }));
            }
            match &reason {
                Some(reason) => tracing::info!(resource = %self.name, "{from} -> {to}: {reason}"),
                None => tracing::info!(resource = %self.name, "{from} -> {to}"),
            }
            self.emit(EventKind::State { from, to, reason });
        }
        if to == ResourceState::Online {
            self.schedule_checks_from(Instant::now());
        } else {
            self.next_looks_alive = None;
            self.next_is_alive = None;
        }
    }

    /// Each check due one interval after `now` (on the checks' grid,
    /// `schedule.rs`).
    fn schedule_checks_from(&mut self, now: Instant) {
        self.next_looks_alive = self
            .timers
            .looks_alive_interval
            .map(|i| super::schedule::due_at(now + i, i));
        let interval = self.timers.is_alive_interval;
        self.next_is_alive = Some(super::schedule::due_at(now + interval, interval));
    }

    /// The check due first. Is-alive wins a tie: it is the thorough one.
    fn next_check(&self) -> Option<(Check, Instant)> {
        if !self.monitoring {
            return None;
        }
        match (self.next_looks_alive, self.next_is_alive) {
            (Some(la), Some(ia)) if la < ia => Some((Check::LooksAlive, la)),
            (_, Some(ia)) => Some((Check::IsAlive, ia)),
            (Some(la), None) => Some((Check::LooksAlive, la)),
            (None, None) => None,
        }
    }

    /// Carry out one command of the monitor or the node.
    ///
    /// Long on purpose: one arm per [`Command`], each a few lines around
    /// one call into the plugin (through the instance, so bounded); one
    /// match shows which commands a resource in each state accepts.
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Online => {
                if matches!(self.state(), ResourceState::Offline | ResourceState::Failed) {
                    self.bring_online().await;
                }
            }
            Command::Offline => match self.state() {
                ResourceState::Online => self.take_offline().await,
                // A failed resource was terminated when it failed; there is
                // nothing left to take offline cleanly.
                ResourceState::Failed => self.set_state(ResourceState::Offline, None),
                _ => {}
            },
            Command::Fail { reason } => {
                if matches!(
                    self.state(),
                    ResourceState::Online | ResourceState::OnlinePending
                ) {
                    self.fail(reason).await;
                }
            }
            Command::Terminate => {
                if self.state() != ResourceState::Offline || self.copy.is_some() {
                    self.terminate().await;
                    self.stop_copy();
                    self.set_state(ResourceState::Offline, Some("terminated".to_string()));
                }
            }
            Command::Control(request) => {
                let ControlRequest {
                    code,
                    payload,
                    reply,
                } = *request;
                let answer = match self
                    .instance
                    .control(&code, &payload, CONTROL_TIMEOUT)
                    .await
                {
                    Ok(answer) => answer,
                    Err(err) => {
                        self.emit(EventKind::CutOff {
                            call: "control",
                            reason: err.to_string(),
                        });
                        Err(err.to_string())
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Monitoring(enabled) => {
                if enabled && !self.monitoring && self.state() == ResourceState::Online {
                    // Checks resume one interval from now, not all at once.
                    self.schedule_checks_from(Instant::now());
                }
                self.monitoring = enabled;
            }
            Command::Swap(request) => {
                let SwapRequest {
                    plugin,
                    properties,
                    deadline,
                    started,
                    reply,
                } = *request;
                let outcome = if Instant::now() > deadline {
                    Err(SwapFailure::NotTried(
                        "the resource was busy past the swap's deadline".to_string(),
                    ))
                } else {
                    let _ = started.send(());
                    match tokio::time::timeout(
                        SWAP_WORK_LIMIT,
                        self.swap(plugin, properties, &reply),
                    )
                    .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Err(SwapFailure::NotTried(format!(
                            "the swap took more than {SWAP_WORK_LIMIT:?}; the resource stays \
                             on its version"
                        ))),
                    }
                };
                let _ = reply.send(outcome);
            }
            Command::Copy(command) => self.copy_call(*command).await,
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Move to a new version of the type without leaving the current state.
    /// Calls in flight have finished (the actor runs one thing at a time).
    /// An Online resource's new instance must first go through `online`
    /// (which the contract requires to find a running resource so and return
    /// at once) and then pass an is-alive before it takes over, or the old
    /// one stays. Both calls are bounded by the check timeout, so a version
    /// that hangs costs the resource no more than one hung health check.
    /// The swap takes effect only if whoever asked still waits for the
    /// answer (`reply` open): one that gave up rolls back, and a swap it
    /// no longer counts must not happen behind its back.
    async fn swap(
        &mut self,
        plugin: Arc<Plugin>,
        properties: Vec<(String, String)>,
        reply: &oneshot::Sender<Result<String, SwapFailure>>,
    ) -> Result<String, SwapFailure> {
        let from = self.instance.plugin().info().version.clone();
        let to = plugin.info().version.clone();
        let mut next = self.instance.successor(plugin, properties);
        let timers = Timers::resolve(next.plugin(), &self.overrides);
        if self.state() == ResourceState::Online {
            let deadline = CallDeadline::fixed(timers.check_timeout);
            match next.online(deadline).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(SwapFailure::Version(format!(
                        "version {to} failed online on the running resource: {reason}"
                    )));
                }
                Err(err) => return Err(call_failure(&to, err)),
            }
            match next.is_alive(timers.check_timeout).await {
                Ok(Health::Healthy) => {}
                Ok(Health::Failed(reason)) => {
                    return Err(SwapFailure::Version(format!(
                        "version {to} failed its first is-alive: {reason}"
                    )));
                }
                Err(err) => return Err(call_failure(&to, err)),
            }
        }
        if reply.is_closed() {
            return Err(SwapFailure::NotTried(format!(
                "version {to}: the swap was given up before it finished; the resource stays on {from}"
            )));
        }
        // The old store is dropped, not closed: the resource lives on in
        // the new instance and must not be released.
        self.instance = next;
        self.timers = timers;
        self.status.send_modify(|s| s.version = to.clone());
        tracing::info!(resource = %self.name, "now on version {to} (was {from})");
        Ok(format!("{} moved from version {from} to {to}", self.name))
    }

    async fn bring_online(&mut self) {
        self.set_state(ResourceState::OnlinePending, None);
        let deadline = CallDeadline::pending(self.timers.online_timeout, self.timers.pending_cap);
        match self.instance.online(deadline).await {
            Ok(Ok(())) => self.set_state(ResourceState::Online, None),
            Ok(Err(reason)) => self.fail(format!("online failed: {reason}")).await,
            Err(err) => self.fail_call(err).await,
        }
    }

    async fn take_offline(&mut self) {
        self.set_state(ResourceState::OfflinePending, None);
        let deadline =
            CallDeadline::pending(Some(self.timers.offline_timeout), self.timers.pending_cap);
        match self.instance.offline(deadline).await {
            Ok(Ok(())) => self.set_state(ResourceState::Offline, None),
            Ok(Err(reason)) => {
                self.terminate().await;
                self.set_state(
                    ResourceState::Failed,
                    Some(format!("offline failed: {reason}")),
                );
            }
            Err(err) => {
                self.emit(EventKind::CutOff {
                    call: err_call(&err),
                    reason: err.to_string(),
                });
                self.terminate().await;
                self.set_state(ResourceState::Failed, Some(err.to_string()));
            }
        }
    }

    async fn run_check(&mut self, check: Check, scheduled: Instant) {
        // How late the timer and the actor got to it: the wait of a check
        // behind every other on the node's workers.
        self.counters
            .check_lag
            .record(Instant::now().saturating_duration_since(scheduled));
        let interval = match check {
            Check::LooksAlive => self
                .timers
                .looks_alive_interval
                .unwrap_or(self.timers.is_alive_interval),
            Check::IsAlive => self.timers.is_alive_interval,
        };
        // Keep the schedule: the next check is due one interval after this
        // one was due, not after it finished, unless it ran that long; on
        // the grid that makes checks due together one wake-up.
        let next = super::schedule::due_at((scheduled + interval).max(Instant::now()), interval);
        match check {
            Check::LooksAlive => self.next_looks_alive = Some(next),
            Check::IsAlive => self.next_is_alive = Some(next),
        }
        let verdict = self.check_once(check).await;
        if let Err(reason) = verdict {
            // A looks-alive that reports failure is confirmed by an is-alive,
            // as the Windows resource monitor does; a looks-alive that hung
            // or trapped is failure enough.
            let reason = if check == Check::LooksAlive && !reason.cut_off {
                match self.check_once(Check::IsAlive).await {
                    Ok(()) => return,
                    Err(confirmed) => confirmed,
                }
            } else {
                reason
            };
            self.fail(reason.text).await;
        }
    }

    /// Run one check and report it. `Err` holds the failure reason.
    async fn check_once(&mut self, check: Check) -> Result<(), CheckFailure> {
        let started = Instant::now();
        let result = match check {
            Check::LooksAlive => self.instance.looks_alive(self.timers.check_timeout).await,
            Check::IsAlive => self.instance.is_alive(self.timers.check_timeout).await,
        };
        let latency = started.elapsed();
        let latency_us = latency.as_micros() as u64;
        let instances = self.instance.generations();
        let verdict = match result {
            Ok(Health::Healthy) => Ok(()),
            Ok(Health::Failed(reason)) => Err(CheckFailure {
                text: format!("{} failed: {reason}", check.name()),
                cut_off: false,
            }),
            Err(err) => {
                self.emit(EventKind::CutOff {
                    call: err_call(&err),
                    reason: err.to_string(),
                });
                Err(CheckFailure {
                    text: err.to_string(),
                    cut_off: true,
                })
            }
        };
        let last_check = LastCheck {
            check: check.name(),
            healthy: verdict.is_ok(),
            latency_us,
            at_ms: unix_ms(),
        };
        self.counters
            .checks
            .record(check.name(), verdict.is_ok(), latency);
        self.status.send_if_modified(|s| {
            s.checks += 1;
            s.instances = instances;
            s.last_check = Some(last_check);
            // Read under the watch's lock, after the change: a waiter that
            // counted itself in after this read sees the change when it
            // first looks (see `ResourceHandle::wait_for`).
            self.status_waiters.load(Ordering::SeqCst) > 0
        });
        // A passing check changes nothing: counted above, it is an event
        // only for whoever listens live (the history does not keep it).
        if verdict.is_err() || self.events.listened() {
            self.emit(EventKind::Check {
                check: check.name(),
                healthy: verdict.is_ok(),
                latency_us,
                reason: verdict.as_ref().err().map(|f| f.text.clone()),
            });
        }
        verdict
    }

    async fn on_exit(&mut self, exit: ProcessExit) {
        self.emit(EventKind::ProcessExited {
            pid: exit.pid,
            how: exit.how.clone(),
        });
        if self.copy == Some(CopyRun::Passive) {
            self.terminate().await;
            self.stop_copy();
            self.answer_copy(
                "start-passive",
                CopyAnswer::Failed(format!(
                    "the passive copy's managed process {} {}",
                    exit.pid, exit.how
                )),
            );
            return;
        }
        if matches!(
            self.state(),
            ResourceState::Online | ResourceState::OnlinePending
        ) {
            self.fail(format!("managed process {} {}", exit.pid, exit.how))
                .await;
        }
    }

    async fn fail_call(&mut self, err: CallError) {
        self.emit(EventKind::CutOff {
            call: err_call(&err),
            reason: err.to_string(),
        });
        self.fail(err.to_string()).await;
    }

    /// The resource failed: terminate it and mark it Failed. What happens
    /// next is the group policy's decision.
    async fn fail(&mut self, reason: String) {
        tracing::warn!(resource = %self.name, "failed: {reason}");
        self.terminate().await;
        self.set_state(ResourceState::Failed, Some(reason));
    }

    /// Best-effort terminate, on a fresh instance if the last one was thrown
    /// away.
    async fn terminate(&mut self) {
        if let Err(err) = self.instance.terminate(self.timers.terminate_timeout).await {
            tracing::warn!(resource = %self.name, "terminate failed: {err}");
            self.emit(EventKind::TerminateFailed {
                reason: err.to_string(),
            });
        }
    }

    async fn shutdown(&mut self) {
        // An agent leaving its services running drops its node as it
        // exits, and every actor then hears it shut down: the service
        // stays, for the next agent to adopt.
        if crate::runtime::leaving_running() {
            return;
        }
        if matches!(
            self.state(),
            ResourceState::Online | ResourceState::OnlinePending | ResourceState::Failed
        ) {
            self.take_offline().await;
        } else if self.copy == Some(CopyRun::Passive) {
            self.copy_call(CopyCommand::StopPassive).await;
        }
        if let Err(err) = self.instance.close(CLOSE_TIMEOUT).await {
            tracing::warn!(resource = %self.name, "close failed: {err}");
        }
    }
}

struct CheckFailure {
    text: String,
    /// The check was cut off or trapped, rather than answering "failed".
    cut_off: bool,
}

fn err_call(err: &CallError) -> &'static str {
    match err {
        CallError::TimedOut { call, .. }
        | CallError::Cancelled { call, .. }
        | CallError::Trapped { call, .. }
        | CallError::MemoryLimit { call, .. }
        | CallError::StackOverflow { call }
        | CallError::NotReplicated { call, .. } => call,
        CallError::OpenRefused { .. } => "open",
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The monitor's side of one resource: send it commands, read its status.
#[derive(Debug, Clone)]
pub struct ResourceHandle {
    pub(crate) name: Arc<str>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) status: watch::Receiver<ResourceStatus>,
    /// The actor's [`Actor::status_waiters`].
    pub(crate) status_waiters: Arc<AtomicUsize>,
    pub(crate) cancel: Arc<watch::Sender<u64>>,
}

/// One [`ResourceHandle::wait_for`] waiting, for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count_in(waiters: &'a AtomicUsize) -> Waiting<'a> {
        waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The resource's actor has stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resource {0:?} is no longer running")]
pub struct Gone(pub String);

impl ResourceHandle {
    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource's status now.
    pub fn status(&self) -> ResourceStatus {
        self.status.borrow().clone()
    }

    fn send(&self, command: Command) -> Result<(), Gone> {
        self.commands
            .send(command)
            .map_err(|_| Gone(self.name.to_string()))
    }

    /// Ask for the resource to come online.
    pub fn online(&self) -> Result<(), Gone> {
        self.send(Command::Online)
    }

    /// Ask for the resource to go offline.
    pub fn offline(&self) -> Result<(), Gone> {
        self.send(Command::Offline)
    }

    /// Terminate the resource at once (no clean offline); it ends Offline.
    pub fn terminate(&self) -> Result<(), Gone> {
        self.send(Command::Terminate)
    }

    /// Suspend or resume the resource's health checks.
    pub fn set_monitoring(&self, enabled: bool) -> Result<(), Gone> {
        self.send(Command::Monitoring(enabled))
    }

    /// Fail the resource on purpose, as if a health check had failed.
    pub fn fail(&self, reason: &str) -> Result<(), Gone> {
        self.send(Command::Fail {
            reason: reason.to_string(),
        })
    }

    /// Carry out a copy call (a resource with copies); the answer comes as
    /// a [`Report::Copy`] on the monitor's report stream.
    pub fn copy(&self, command: CopyCommand) -> Result<(), Gone> {
        self.send(Command::Copy(Box::new(command)))
    }

    /// Move the resource to another version of its type; waits for the
    /// answer. `deadline`: give up if the actor is busy with something else
    /// until then (a long online). Bounded either way: by `deadline` for
    /// the swap to start and by [`SWAP_WORK_LIMIT`] once it has; a swap
    /// given up on does not take effect.
    pub async fn swap(
        &self,
        plugin: Arc<Plugin>,
        properties: Vec<(String, String)>,
        deadline: Instant,
    ) -> Result<Result<String, SwapFailure>, Gone> {
        let (reply, answer) = oneshot::channel();
        let (started_tx, started) = oneshot::channel();
        self.send(Command::Swap(Box::new(SwapRequest {
            plugin,
            properties,
            deadline,
            started: started_tx,
            reply,
        })))?;
        // Dropping `answer` on giving up is what keeps a late swap from
        // taking effect (the actor commits only while it is open).
        if tokio::time::timeout_at(deadline, started).await.is_err() {
            return Ok(Err(SwapFailure::NotTried(
                "the resource was busy past the swap's deadline".to_string(),
            )));
        }
        let limit = SWAP_WORK_LIMIT + Duration::from_secs(5);
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(Gone(self.name.to_string())),
            Err(_) => Ok(Err(SwapFailure::NotTried(format!(
                "the swap gave no answer within {limit:?}"
            )))),
        }
    }

    /// Cut off the call in flight (an online that has no pending timeout,
    /// say). It ends as a failure with the reason "cancelled by the operator".
    pub fn cancel_pending(&self) {
        self.cancel.send_modify(|generation| *generation += 1);
    }

    /// The operator's cancel: cut off the resource's pending online or
    /// offline (an online the type declared unbounded, say), which fails
    /// and terminates the resource. Refused, naming the state, when nothing
    /// is pending: a cancel must not cut off a health check or a control.
    pub fn cancel(&self) -> Result<String, String> {
        let call = match self.status().state {
            ResourceState::OnlinePending => "online",
            ResourceState::OfflinePending => "offline",
            other => {
                return Err(format!(
                    "resource {:?} has no pending online or offline to cancel (it is {other})",
                    &*self.name
                ));
            }
        };
        self.cancel_pending();
        Ok(format!(
            "resource {}: its pending {call} was cancelled",
            self.name
        ))
    }

    /// Run a control code and wait for the answer.
    pub async fn control(&self, code: &str, payload: &str) -> Result<Result<String, String>, Gone> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Control(Box::new(ControlRequest {
            code: code.to_string(),
            payload: payload.to_string(),
            reply,
        })))?;
        answer.await.map_err(|_| Gone(self.name.to_string()))
    }

    /// Take the resource offline, close it, and stop its actor.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// [`ResourceHandle::shutdown`], bounded: if the actor has not stopped
    /// within `wait` (a call that does not end, such as an online the type
    /// declared unbounded, holds it), the call in flight is cancelled, which
    /// fails and terminates the resource, and the actor gets a grace to
    /// finish; past that it is left behind, with an error in the log.
    /// Returns whether the actor stopped.
    pub async fn shutdown_within(&self, wait: Duration) -> bool {
        let (reply, mut done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_err() {
            return true;
        }
        if tokio::time::timeout(wait, &mut done).await.is_ok() {
            return true;
        }
        tracing::warn!(
            resource = %self.name,
            "did not stop within {wait:?}; cancelling the call in flight"
        );
        self.cancel_pending();
        let stopped = tokio::time::timeout(STOP_GRACE, done).await.is_ok();
        if !stopped {
            tracing::error!(
                resource = %self.name,
                "did not stop within {STOP_GRACE:?} of being cancelled; left behind"
            );
        }
        stopped
    }

    /// Wait until the status satisfies `ready`, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl FnMut(&ResourceStatus) -> bool,
    ) -> Option<ResourceStatus> {
        let mut status = self.status.clone();
        // Counted in before the first look at the status (which
        // `watch::Receiver::wait_for` takes under the watch's lock), so that
        // a check either is seen by that look or wakes this wait.
        let _waiting = Waiting::count_in(&self.status_waiters);
        let waited = tokio::time::timeout(timeout, status.wait_for(ready)).await;
        match waited {
            Ok(Ok(status)) => Some(status.clone()),
            _ => None,
        }
    }
}

/// A call into the new version that did not complete: the version's fault,
/// unless the operator cancelled it (then nothing was learnt of the
/// version, and it must not be remembered as rejected).
fn call_failure(to: &str, err: CallError) -> SwapFailure {
    let reason = format!("version {to}: {err}");
    match err {
        CallError::Cancelled { .. } => SwapFailure::NotTried(reason),
        _ => SwapFailure::Version(reason),
    }
}
