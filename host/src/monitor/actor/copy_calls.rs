//! The actor's side of a resource's copies: the four copy calls, each
//! bounded as online and offline are, and the `copy-status` poll while a
//! copy runs (what is reported when: [`crate::monitor::StatusFilter`]).
//!
//! The active copy is the resource online: activate moves the resource
//! through OnlinePending to Online (health checks then run as for any
//! online resource), deactivate through OfflinePending to Offline. A
//! passive copy runs with the resource Offline. These moves reach the
//! group policy as the copy's answer, not as state changes, so the policy
//! hears of each once.

use tokio::time::Instant;

use super::{Actor, CopyRun, Report, err_call};
use crate::monitor::copies::{CopyAnswer, CopyCommand, CopyReading, CopyReport};
use crate::monitor::events::EventKind;
use crate::monitor::state::ResourceState;
use crate::runtime::{CallDeadline, CallError};

impl Actor {
    /// Carry out one copy call and answer it.
    pub(super) async fn copy_call(&mut self, command: CopyCommand) {
        let call = command.call();
        match command {
            CopyCommand::StartPassive(source) => {
                if matches!(
                    self.state(),
                    ResourceState::Online
                        | ResourceState::OnlinePending
                        | ResourceState::OfflinePending
                ) {
                    // The policy deactivates an active copy before it makes
                    // it passive; anything else is a request out of turn.
                    let reason = format!(
                        "start-passive refused: the resource is {} here (deactivate it first)",
                        self.state()
                    );
                    self.answer_copy(call, CopyAnswer::Failed(reason));
                    return;
                }
                let deadline =
                    CallDeadline::pending(self.timers.online_timeout, self.timers.pending_cap);
                match self.instance.start_passive(source, deadline).await {
                    Ok(Ok(())) => {
                        if self.state() == ResourceState::Failed {
                            self.set_state_reporting(ResourceState::Offline, None, false);
                        }
                        self.run_copy(CopyRun::Passive);
                        self.answer_copy(call, CopyAnswer::PassiveStarted);
                    }
                    Ok(Err(reason)) => self.copy_failed(call, reason).await,
                    Err(err) => self.copy_cut_off(err).await,
                }
            }
            CopyCommand::StopPassive => {
                if self.copy == Some(CopyRun::Active) || self.state().is_active() {
                    let reason = format!(
                        "stop-passive refused: the resource is {} here, as the active copy",
                        self.state()
                    );
                    self.answer_copy(call, CopyAnswer::Failed(reason));
                    return;
                }
                let deadline = CallDeadline::pending(
                    Some(self.timers.offline_timeout),
                    self.timers.pending_cap,
                );
                match self.instance.stop_passive(deadline).await {
                    Ok(Ok(())) => {
                        self.stop_copy();
                        self.answer_copy(call, CopyAnswer::PassiveStopped);
                    }
                    Ok(Err(reason)) => self.copy_failed(call, reason).await,
                    Err(err) => self.copy_cut_off(err).await,
                }
            }
            CopyCommand::Activate(generation) => {
                self.set_state_reporting(ResourceState::OnlinePending, None, false);
                let deadline =
                    CallDeadline::pending(self.timers.online_timeout, self.timers.pending_cap);
                match self.instance.activate(generation, deadline).await {
                    Ok(Ok(())) => {
                        self.set_state_reporting(ResourceState::Online, None, false);
                        self.run_copy(CopyRun::Active);
                        self.answer_copy(call, CopyAnswer::Activated);
                    }
                    Ok(Err(reason)) => self.copy_failed(call, reason).await,
                    Err(err) => self.copy_cut_off(err).await,
                }
            }
            CopyCommand::Deactivate(generation) => {
                self.set_state_reporting(ResourceState::OfflinePending, None, false);
                let deadline = CallDeadline::pending(
                    Some(self.timers.offline_timeout),
                    self.timers.pending_cap,
                );
                match self.instance.deactivate(generation, deadline).await {
                    Ok(Ok(())) => {
                        self.set_state_reporting(ResourceState::Offline, None, false);
                        self.run_copy(CopyRun::Passive);
                        self.answer_copy(call, CopyAnswer::Deactivated);
                    }
                    Ok(Err(reason)) => self.copy_failed(call, reason).await,
                    Err(err) => self.copy_cut_off(err).await,
                }
            }
        }
    }

    /// Poll the running copy's status and report it if the rule says so. A
    /// poll that is cut off or traps fails the copy: a passive one is
    /// thrown away, an active one fails as its resource.
    pub(super) async fn poll_copy_status(&mut self) {
        let Some(run) = self.copy else {
            self.next_copy_status = None;
            return;
        };
        self.next_copy_status = Some(Instant::now() + self.timers.is_alive_interval);
        match self.instance.copy_status(self.timers.check_timeout).await {
            Ok(state) => {
                let reading = CopyReading::from(state);
                if self.copy_filter.report(&reading, Instant::now()) {
                    self.answer_copy("copy-status", CopyAnswer::Status(reading));
                }
            }
            Err(err) => match run {
                CopyRun::Passive => self.copy_cut_off(err).await,
                CopyRun::Active => self.fail_call(err).await,
            },
        }
    }

    /// A copy now runs here: poll its status from now on, the first poll
    /// at once so the policy learns where it stands.
    fn run_copy(&mut self, run: CopyRun) {
        self.copy = Some(run);
        self.copy_filter.reset();
        self.next_copy_status = Some(Instant::now());
    }

    /// No copy runs here any more.
    pub(super) fn stop_copy(&mut self) {
        self.copy = None;
        self.copy_filter.reset();
        self.next_copy_status = None;
    }

    /// A copy call was refused: terminate what runs and answer CopyFailed
    /// (an activation or deactivation leaves its resource Failed).
    async fn copy_failed(&mut self, call: &'static str, reason: String) {
        let reason = format!("{call} failed: {reason}");
        tracing::warn!(resource = %self.name, "{reason}");
        self.terminate().await;
        self.stop_copy();
        if self.state() != ResourceState::Offline {
            self.set_state_reporting(ResourceState::Failed, Some(reason.clone()), false);
        }
        self.answer_copy(call, CopyAnswer::Failed(reason));
    }

    /// A copy call was cut off or trapped: as [`Actor::copy_failed`], with
    /// the cut-off recorded.
    async fn copy_cut_off(&mut self, err: CallError) {
        let call = err_call(&err);
        self.emit(EventKind::CutOff {
            call,
            reason: err.to_string(),
        });
        let reason = err.to_string();
        tracing::warn!(resource = %self.name, "{reason}");
        self.terminate().await;
        self.stop_copy();
        if self.state() != ResourceState::Offline {
            self.set_state_reporting(ResourceState::Failed, Some(reason.clone()), false);
        }
        self.answer_copy(call, CopyAnswer::Failed(reason));
    }

    /// Tell the group policy (and the event history) how a copy call went.
    pub(super) fn answer_copy(&self, call: &'static str, answer: CopyAnswer) {
        let outcome = match &answer {
            CopyAnswer::PassiveStarted => "the passive copy runs".to_string(),
            CopyAnswer::PassiveStopped => "the passive copy stopped".to_string(),
            CopyAnswer::Activated => "the copy is active".to_string(),
            CopyAnswer::Deactivated => "the copy stepped down".to_string(),
            CopyAnswer::Failed(reason) => format!("failed: {reason}"),
            CopyAnswer::Status(r) => format!(
                "{} generation={} copied={} replayed={} lag={} {}",
                r.role,
                r.generation,
                r.copied,
                r.replayed,
                r.lag,
                match (&r.unhealthy, &r.refusing, r.diverged) {
                    (Some(why), _, true) => format!("unhealthy: diverged: {why}"),
                    (Some(why), _, false) => format!("unhealthy: {why}"),
                    (None, Some(why), _) => format!("healthy, refusing writes: {why}"),
                    (None, None, _) => "healthy".to_string(),
                }
            ),
        };
        self.emit(EventKind::Copy { call, outcome });
        let _ = self.changes.send(Report::Copy(CopyReport {
            resource: self.name.clone(),
            answer,
        }));
    }
}
