//! A resource's copy of its data, as the actor runs it: the four copy
//! calls the group policy asks for, what the actor answers, and when a
//! copy's status is worth reporting.
//!
//! The policy decides where copies run and which one is active; the actor
//! only carries out a call and says how it went ([`CopyAnswer`]), and while
//! a copy runs it polls `copy-status` at the is-alive interval. Not every
//! poll is reported: in a cluster each report is an entry of the shared
//! log, and one a second per copy would flood it. [`StatusFilter`] holds
//! the rule.

use std::time::Duration;

use tokio::time::Instant;

use crate::contract::{CopyHealth, CopyRole, CopySource, CopyState};

/// A copy call for a resource's actor (the policy's copy actions, for one
/// node).
#[derive(Debug, Clone)]
pub enum CopyCommand {
    /// Run (or re-point) a passive copy following `source`.
    StartPassive(CopySource),
    /// Stop the passive copy (its data stays on disk).
    StopPassive,
    /// Make this node's copy the active one, with `generation`.
    Activate(u64),
    /// Stop serving: `generation` is the one that will replace this copy's.
    Deactivate(u64),
}

impl CopyCommand {
    /// The contract's name of the call, for messages.
    pub fn call(&self) -> &'static str {
        match self {
            CopyCommand::StartPassive(_) => "start-passive",
            CopyCommand::StopPassive => "stop-passive",
            CopyCommand::Activate(_) => "activate",
            CopyCommand::Deactivate(_) => "deactivate",
        }
    }
}

/// How a copy call went, or what a running copy said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyAnswer {
    /// The passive copy runs and follows its source.
    PassiveStarted,
    /// The passive copy stopped (asked to, or on its own).
    PassiveStopped,
    /// The copy is the active one: the resource is online here.
    Activated,
    /// The active copy stepped down and runs on as a passive one.
    Deactivated,
    /// The copy failed and was terminated: a call refused, cut off or
    /// trapped, or a passive copy's service exited.
    Failed(String),
    /// A status worth reporting (see [`StatusFilter`]).
    Status(CopyReading),
}

/// One copy's answer, from its resource's actor to the node's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The resource, by name.
    pub resource: String,
    /// What happened.
    pub answer: CopyAnswer,
}

/// A `copy-status` answer in the host's own terms (the contract's types
/// compare nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReading {
    /// `none`, `passive`, `active` or `deposed`.
    pub role: &'static str,
    /// The generation of the log the copy holds.
    pub generation: u64,
    /// The last position it holds durably.
    pub copied: u64,
    /// The last position it applied.
    pub replayed: u64,
    /// How far it is behind the active copy (0 for the active copy).
    pub lag: u64,
    /// `None` when healthy; else why its data cannot be used.
    pub unhealthy: Option<String>,
    /// The active copy only: why it refuses writes for now, though it
    /// serves and its data is the newest (a sync copy with no passive
    /// connected). The contract's `failed` from a copy whose role is
    /// `active`: an active copy's own failure is its resource failing its
    /// health checks, never its copy status.
    pub refusing: Option<String>,
    /// Whether it is unhealthy because its log diverged from the active
    /// copy's (then the policy has it reseeded).
    pub diverged: bool,
}

impl From<CopyState> for CopyReading {
    fn from(state: CopyState) -> Self {
        let active = matches!(state.role, CopyRole::Active);
        let diverged = matches!(state.health, CopyHealth::Diverged(_));
        let (unhealthy, refusing) = match state.health {
            CopyHealth::Healthy => (None, None),
            CopyHealth::Failed(reason) if active => (None, Some(reason)),
            CopyHealth::Failed(reason) | CopyHealth::Diverged(reason) => (Some(reason), None),
        };
        CopyReading {
            role: match state.role {
                CopyRole::None => "none",
                CopyRole::Passive => "passive",
                CopyRole::Active => "active",
                CopyRole::Deposed => "deposed",
            },
            generation: state.generation,
            copied: state.copied,
            replayed: state.replayed,
            lag: state.lag,
            unhealthy,
            refusing,
            diverged,
        }
    }
}

/// Positions a copy must move by (copied, replayed or lag) before its
/// status is reported again at once: small enough that the policy's lag
/// rule (100 positions by default) sees a lagging copy within a few polls,
/// large enough that a steady write load is not one log entry per poll.
pub const REPORT_POSITION_STEP: u64 = 10;
/// A status whose positions moved less than [`REPORT_POSITION_STEP`] is
/// still reported once this long has passed since the last report, so the
/// engine's view never trails the copy by more than that.
pub const REPORT_REFRESH: Duration = Duration::from_secs(10);

/// Decides which `copy-status` polls are reported.
///
/// The rule: report the first status of a running copy; then report when
/// its role, generation or health (or the reason) changed, when its lag
/// reached 0 or left it, when copied, replayed or lag moved by at least
/// [`REPORT_POSITION_STEP`] since the last report, or when anything moved
/// and [`REPORT_REFRESH`] has passed since the last report. An unchanged
/// status is never reported twice.
#[derive(Debug, Default)]
pub struct StatusFilter {
    last: Option<(CopyReading, Instant)>,
}

impl StatusFilter {
    /// Whether `reading`, polled at `now`, is to be reported; if so it
    /// becomes the last one reported.
    pub fn report(&mut self, reading: &CopyReading, now: Instant) -> bool {
        let due = match &self.last {
            None => true,
            Some((last, at)) => {
                let moved = |a: u64, b: u64| a.abs_diff(b);
                let step = moved(last.copied, reading.copied)
                    .max(moved(last.replayed, reading.replayed))
                    .max(moved(last.lag, reading.lag));
                last.role != reading.role
                    || last.generation != reading.generation
                    || last.unhealthy != reading.unhealthy
                    || last.refusing != reading.refusing
                    || last.diverged != reading.diverged
                    || (last.lag == 0) != (reading.lag == 0)
                    || step >= REPORT_POSITION_STEP
                    || (step > 0 && now.duration_since(*at) >= REPORT_REFRESH)
            }
        };
        if due {
            self.last = Some((reading.clone(), now));
        }
        due
    }

    /// Forget the last report: the copy stopped, and the next one to run
    /// reports its first status.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(copied: u64, lag: u64) -> CopyReading {
        CopyReading {
            role: "passive",
            generation: 1,
            copied,
            replayed: copied,
            lag,
            unhealthy: None,
            refusing: None,
            diverged: false,
        }
    }

    #[test]
    fn the_first_status_and_every_change_of_role_generation_or_health_are_reported() {
        let now = Instant::now();
        let mut filter = StatusFilter::default();
        assert!(filter.report(&reading(5, 3), now));
        assert!(!filter.report(&reading(5, 3), now), "unchanged");
        let mut active = reading(5, 3);
        active.role = "active";
        assert!(filter.report(&active, now));
        active.generation = 2;
        assert!(filter.report(&active, now));
        active.unhealthy = Some("disk full".into());
        assert!(filter.report(&active, now));
        active.unhealthy = Some("forked at 4".into());
        assert!(filter.report(&active, now), "a new reason is news");
        active.diverged = true;
        assert!(filter.report(&active, now), "diverged is news");
        filter.reset();
        assert!(filter.report(&active, now), "first again after a reset");
    }

    #[test]
    fn positions_are_reported_when_they_moved_enough_or_after_the_refresh_period() {
        let start = Instant::now();
        let mut filter = StatusFilter::default();
        assert!(filter.report(&reading(100, 4), start));
        assert!(
            !filter.report(&reading(101, 5), start),
            "a small step waits"
        );
        assert!(
            filter.report(&reading(100 + REPORT_POSITION_STEP, 4), start),
            "a step of {REPORT_POSITION_STEP}"
        );
        assert!(filter.report(&reading(110, 0), start), "caught up");
        assert!(filter.report(&reading(111, 1), start), "fell behind");
        let later = start + REPORT_REFRESH;
        assert!(!filter.report(&reading(111, 1), later), "nothing moved");
        assert!(
            filter.report(&reading(112, 1), later),
            "moved, and it is time"
        );
        assert!(!filter.report(&reading(113, 1), later));
    }

    #[test]
    fn a_huge_jump_in_either_direction_does_not_overflow() {
        let now = Instant::now();
        let mut filter = StatusFilter::default();
        assert!(filter.report(&reading(u64::MAX, u64::MAX), now));
        assert!(filter.report(&reading(0, 1), now));
    }
}
