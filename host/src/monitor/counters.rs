//! What the metrics count, counted where it happens.
//!
//! The metrics used to be counted by a task reading every event from the
//! live broadcast: each passing health check built an event, sent it and
//! woke that task, and at 10 000 resources checked every second that was a
//! tenth of the agent's CPU spent on counting (docs/benchmarks.md, "CPU per
//! check"); a task that fell behind the broadcast's buffer also missed
//! counts. Now a check is counted by its actor on atomic counters
//! ([`CheckCounts`], no lock, no allocation, no wake-up), and every other
//! event the metrics count by the bus as it is published
//! ([`EventCounts`], a lock taken only for the rare events: cut-offs,
//! restarts, failovers, exits, plugin events). `GET /metrics` reads them
//! when scraped. Nothing can be missed: there is no queue to fall behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::check_lag::CheckLag;
use super::events::{Event, EventKind};
use super::state::ResourceState;

/// Everything a monitor counts for the metrics, shared by its actors and
/// its event bus.
#[derive(Debug, Default)]
pub struct Counters {
    /// How late each scheduled check started.
    pub check_lag: CheckLag,
    /// Every check that ran, by check and result, and how long it took.
    pub checks: CheckCounts,
    /// The other events the metrics count.
    pub events: EventCounts,
}

/// Upper bounds of the health-check latency buckets, in microseconds
/// (`warden_health_check_latency_seconds`).
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 10_000_000,
];

/// The most a single latency counts for in the sum (about twelve days), so
/// that the sum cannot wrap.
const MAX_LATENCY_US: u64 = 1 << 40;

/// The health checks the agent runs, each counted on its own.
pub const CHECK_NAMES: [&str; 2] = ["is-alive", "looks-alive"];

/// One check's counts.
#[derive(Debug, Default)]
struct OneCheck {
    healthy: AtomicU64,
    failed: AtomicU64,
    /// Checks per latency bucket, not cumulative: bucket `i` counts those
    /// longer than `LATENCY_BOUNDS_US[i - 1]` and at most
    /// `LATENCY_BOUNDS_US[i]`.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len()],
    /// The sum of every latency, in microseconds.
    sum_us: AtomicU64,
}

/// Every health check run, by check ([`CHECK_NAMES`]) and result, and the
/// latency histogram of each check. Lock-free: counted on the path of
/// every check.
#[derive(Debug, Default)]
pub struct CheckCounts {
    by_check: [OneCheck; CHECK_NAMES.len()],
}

/// One check's counts as [`CheckCounts::snapshot`] read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSnapshot {
    /// `is-alive` or `looks-alive`.
    pub check: &'static str,
    /// Checks that passed.
    pub healthy: u64,
    /// Checks that failed, were cut off or trapped.
    pub failed: u64,
    /// Checks that took at most `LATENCY_BOUNDS_US[i]`, for each `i`.
    pub cumulative: [u64; LATENCY_BOUNDS_US.len()],
    /// Every check counted (`healthy + failed`, never below the last
    /// bucket).
    pub count: u64,
    /// The sum of their latencies, in microseconds.
    pub sum_us: u64,
}

impl CheckCounts {
    /// Count one run of `check` (one of [`CHECK_NAMES`]; another name is
    /// not a check and is not counted) that took `latency`.
    pub fn record(&self, check: &str, healthy: bool, latency: Duration) {
        let Some(i) = CHECK_NAMES.iter().position(|name| *name == check) else {
            debug_assert!(false, "{check:?} is not a health check");
            return;
        };
        let counts = &self.by_check[i];
        let us =
            u64::try_from(latency.as_micros()).map_or(MAX_LATENCY_US, |us| us.min(MAX_LATENCY_US));
        if let Some(b) = LATENCY_BOUNDS_US.iter().position(|bound| us <= *bound) {
            counts.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        counts.sum_us.fetch_add(us, Ordering::Relaxed);
        let result = if healthy {
            &counts.healthy
        } else {
            &counts.failed
        };
        result.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of each check so far, in the order of [`CHECK_NAMES`].
    /// Read counter by counter while checks go on: the buckets are read
    /// first, so the count is never behind them.
    pub fn snapshot(&self) -> Vec<CheckSnapshot> {
        CHECK_NAMES
            .iter()
            .zip(&self.by_check)
            .map(|(check, counts)| {
                let mut cumulative = [0; LATENCY_BOUNDS_US.len()];
                let mut running = 0;
                for (i, bucket) in counts.buckets.iter().enumerate() {
                    running += bucket.load(Ordering::Relaxed);
                    cumulative[i] = running;
                }
                let sum_us = counts.sum_us.load(Ordering::Relaxed);
                let healthy = counts.healthy.load(Ordering::Relaxed);
                let failed = counts.failed.load(Ordering::Relaxed);
                CheckSnapshot {
                    check,
                    healthy,
                    failed,
                    cumulative,
                    count: (healthy + failed).max(running),
                    sum_us,
                }
            })
            .collect()
    }
}

/// The events other than health checks that the metrics count, by what
/// the metrics name them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventTally {
    /// Calls cut off or trapped, by call.
    pub cut_offs: BTreeMap<&'static str, u64>,
    /// Restarts of failed resources (Failed to OnlinePending), by resource.
    pub restarts: BTreeMap<String, u64>,
    /// Groups failed over (the policy's `move` decisions for a failover).
    pub failovers: u64,
    /// Managed processes that exited unasked.
    pub process_exits: u64,
    /// Plugin events by action (loaded, swapped, rolled-back, rejected).
    pub plugins: BTreeMap<String, u64>,
}

/// [`EventTally`], counted by the event bus as each event is published.
#[derive(Debug, Default)]
pub struct EventCounts {
    tally: Mutex<EventTally>,
}

impl EventCounts {
    /// Count `event` if it is one the metrics count (health checks are
    /// [`CheckCounts`]'s).
    pub fn count(&self, event: &Event) {
        let counted = match &event.kind {
            EventKind::CutOff { .. }
            | EventKind::ProcessExited { .. }
            | EventKind::Plugin { .. } => true,
            EventKind::State { from, to, .. } => {
                *from == ResourceState::Failed && *to == ResourceState::OnlinePending
            }
            EventKind::Policy { action, reason } => {
                action == "move" && reason.starts_with("failover")
            }
            EventKind::Check { .. }
            | EventKind::TerminateFailed { .. }
            | EventKind::Copy { .. } => false,
        };
        if !counted {
            return;
        }
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        match &event.kind {
            EventKind::CutOff { call, .. } => *tally.cut_offs.entry(call).or_default() += 1,
            EventKind::State { .. } => {
                *tally.restarts.entry(event.resource.clone()).or_default() += 1
            }
            EventKind::Policy { .. } => tally.failovers += 1,
            EventKind::ProcessExited { .. } => tally.process_exits += 1,
            EventKind::Plugin { action, .. } => {
                *tally.plugins.entry(action.clone()).or_default() += 1
            }
            EventKind::Check { .. }
            | EventKind::TerminateFailed { .. }
            | EventKind::Copy { .. } => {}
        }
    }

    /// What was counted so far.
    pub fn snapshot(&self) -> EventTally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_is_counted_by_name_result_and_latency() {
        let counts = CheckCounts::default();
        counts.record("is-alive", true, Duration::from_micros(100));
        counts.record("is-alive", true, Duration::from_micros(101));
        counts.record("is-alive", false, Duration::from_secs(60));
        counts.record("looks-alive", true, Duration::ZERO);
        let s = counts.snapshot();
        let is_alive = &s[0];
        assert_eq!(is_alive.check, "is-alive");
        assert_eq!((is_alive.healthy, is_alive.failed), (2, 1));
        assert_eq!(is_alive.cumulative[0], 1, "100 µs is within 100 µs");
        assert_eq!(is_alive.cumulative[1], 2, "101 µs is within 250 µs");
        assert_eq!(
            is_alive.cumulative[LATENCY_BOUNDS_US.len() - 1],
            2,
            "60 s is past every bound"
        );
        assert_eq!(is_alive.count, 3);
        assert_eq!(is_alive.sum_us, 100 + 101 + 60_000_000);
        let looks_alive = &s[1];
        assert_eq!(looks_alive.check, "looks-alive");
        assert_eq!((looks_alive.healthy, looks_alive.failed), (1, 0));
        assert_eq!(looks_alive.cumulative[0], 1);
        assert_eq!(looks_alive.sum_us, 0);
    }

    #[test]
    fn an_absurd_latency_saturates_instead_of_wrapping() {
        let counts = CheckCounts::default();
        counts.record("is-alive", true, Duration::MAX);
        counts.record("is-alive", true, Duration::MAX);
        let s = counts.snapshot();
        assert_eq!(s[0].sum_us, 2 * MAX_LATENCY_US);
        assert_eq!(s[0].count, 2);
    }

    fn event(resource: &str, kind: EventKind) -> Event {
        Event {
            at_ms: 0,
            resource: resource.to_string(),
            kind,
        }
    }

    #[test]
    fn only_the_events_the_metrics_name_are_counted() {
        let counts = EventCounts::default();
        let restart = EventKind::State {
            from: ResourceState::Failed,
            to: ResourceState::OnlinePending,
            reason: None,
        };
        counts.count(&event("r1", restart.clone()));
        counts.count(&event("r1", restart));
        counts.count(&event(
            "r2",
            EventKind::State {
                from: ResourceState::Offline,
                to: ResourceState::OnlinePending,
                reason: None,
            },
        ));
        counts.count(&event(
            "r1",
            EventKind::CutOff {
                call: "is-alive",
                reason: "timed out".into(),
            },
        ));
        counts.count(&event(
            "g",
            EventKind::Policy {
                action: "move".into(),
                reason: "failover: r1 failed".into(),
            },
        ));
        counts.count(&event(
            "g",
            EventKind::Policy {
                action: "move".into(),
                reason: "asked by the operator".into(),
            },
        ));
        counts.count(&event(
            "r1",
            EventKind::ProcessExited {
                pid: 7,
                how: "killed by signal 9".into(),
            },
        ));
        counts.count(&event(
            "chaos",
            EventKind::Plugin {
                action: "swapped".into(),
                version: None,
                reason: None,
            },
        ));
        // A check is CheckCounts' to count.
        counts.count(&event(
            "r1",
            EventKind::Check {
                check: "is-alive",
                healthy: false,
                latency_us: 3,
                reason: None,
            },
        ));
        let tally = counts.snapshot();
        assert_eq!(tally.restarts, BTreeMap::from([("r1".to_string(), 2)]));
        assert_eq!(tally.cut_offs, BTreeMap::from([("is-alive", 1)]));
        assert_eq!(tally.failovers, 1);
        assert_eq!(tally.process_exits, 1);
        assert_eq!(tally.plugins, BTreeMap::from([("swapped".to_string(), 1)]));
    }
}
