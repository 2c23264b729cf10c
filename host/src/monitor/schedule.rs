//! When a health check is due: on a grid shared by every resource, so that
//! checks due at about the same moment wake the node once.
//!
//! Each resource's checks keep their own rhythm (`Actor::run_check`), and
//! with thousands of resources their due times are spread over every
//! millisecond: at 10 000 resources checked every second the tokio workers
//! woke, ran a check or two and parked again about a thousand times a
//! second each, and the epoch ticker, which runs while any call is in
//! flight, was unparked for nearly every one: a quarter of the agent's CPU
//! once the idle stacks were no longer released after every call
//! (docs/benchmarks.md, "CPU per check"). Due
//! times rounded up to a grid of [`MAX_STEP`] (finer for short intervals,
//! [`step`]) make the checks of one step a burst: the workers wake once
//! for it, run them back to back, and the ticker ticks through it.
//!
//! What the rounding costs: a check is due at most one step after the
//! exact rhythm would have it, and an interval that is not a whole number
//! of steps is run as the next whole number (1 234 ms as 1 240 ms). The
//! rounded time is the schedule: a check's lateness
//! (`warden_check_lateness_seconds`) is counted from it.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The grid's coarsest step: at most this much later than exact.
pub(super) const MAX_STEP: Duration = Duration::from_millis(10);

/// The finest step: tokio's timers have a resolution of a millisecond.
const MIN_STEP: Duration = Duration::from_millis(1);

/// The grid's step for checks `interval` apart: a hundredth of the
/// interval, between [`MIN_STEP`] and [`MAX_STEP`], so that the rounding
/// never stretches an interval by more than about 1 %.
pub(super) fn step(interval: Duration) -> Duration {
    (interval / 100).clamp(MIN_STEP, MAX_STEP)
}

/// Where the grid starts: the first time it is asked for, shared by every
/// resource of the process.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `at` rounded up to the grid for checks `interval` apart: the first
/// multiple of [`step`] from the grid's origin that is not before `at`.
pub(super) fn due_at(at: Instant, interval: Duration) -> Instant {
    let origin = origin();
    let step = step(interval).as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let rounded = since.div_ceil(step) * step;
    // Past u64 nanoseconds (585 years) there is no grid worth keeping.
    match u64::try_from(rounded) {
        Ok(nanos) => origin + Duration::from_nanos(nanos),
        Err(_) => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_time_is_rounded_up_to_the_grid_never_down() {
        let origin = origin();
        let second = Duration::from_secs(1);
        for offset_us in [0, 1, 999, 5_000, 9_999, 10_000, 10_001, 123_456_789] {
            let at = origin + Duration::from_micros(offset_us);
            let due = due_at(at, second);
            assert!(due >= at, "{offset_us} µs: rounded down");
            assert!(due - at < MAX_STEP, "{offset_us} µs: {:?} late", due - at);
            let since = (due - origin).as_nanos();
            assert_eq!(
                since % MAX_STEP.as_nanos(),
                0,
                "{offset_us} µs: off the grid"
            );
        }
        // A time on the grid stays where it is.
        let on = origin + Duration::from_millis(30);
        assert_eq!(due_at(on, second), on);
    }

    #[test]
    fn checks_due_in_the_same_step_share_one_due_time() {
        let base = due_at(Instant::now(), Duration::from_secs(1));
        let dues: Vec<Instant> = (1..10)
            .map(|ms| due_at(base + Duration::from_millis(ms), Duration::from_secs(1)))
            .collect();
        assert!(dues.iter().all(|due| *due == base + MAX_STEP), "{dues:?}");
    }

    #[test]
    fn the_step_is_a_hundredth_of_the_interval_within_its_bounds() {
        assert_eq!(step(Duration::from_secs(10)), MAX_STEP);
        assert_eq!(step(Duration::from_secs(1)), MAX_STEP);
        assert_eq!(step(Duration::from_millis(500)), Duration::from_millis(5));
        assert_eq!(step(Duration::from_millis(50)), MIN_STEP);
        assert_eq!(step(Duration::ZERO), MIN_STEP);
        // An interval that is a whole number of steps keeps its rhythm.
        let interval = Duration::from_millis(200);
        let first = due_at(Instant::now(), interval);
        let mut due = first;
        for _ in 0..100 {
            due = due_at(due + interval, interval);
        }
        assert_eq!(due - first, interval * 100);
    }
}
