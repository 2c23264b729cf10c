//! The deadline of one call into a plugin, which progress reports may extend
//! only where the contract allows it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When the call in flight is cut off.
///
/// Only `online` and `offline` may report progress (SetResourceStatus in
/// the Windows model): each report moves their deadline to
/// `now + extension`, never past the hard cap fixed when the call started.
/// Every other call (`describe`, `validate`, `open`, the health checks,
/// `control`, `terminate`, `close`) has a fixed deadline: a progress report
/// there extends nothing, so a plugin that keeps reporting cannot keep the
/// agent from starting, block the node loop, or hold a check open.
#[derive(Debug)]
pub struct CallDeadline {
    started: Instant,
    at: Mutex<Option<Instant>>,
    /// How far each progress report pushes the deadline, and the instant
    /// past which it never moves; `None` for a fixed deadline.
    extension: Option<(Duration, Instant)>,
}

impl CallDeadline {
    /// A deadline `timeout` from now that nothing moves.
    pub fn fixed(timeout: Duration) -> CallDeadline {
        let started = Instant::now();
        CallDeadline {
            started,
            at: Mutex::new(Some(started + timeout)),
            extension: None,
        }
    }

    /// The deadline of an `online` or `offline`: `timeout` from now, which
    /// each progress report moves to `timeout` after the report, up to `cap`
    /// after the start. `timeout: None` means no deadline at all (an online
    /// the type declared must not time out and the operator did not bound);
    /// only a cancel ends such a call.
    pub fn pending(timeout: Option<Duration>, cap: Duration) -> CallDeadline {
        let started = Instant::now();
        CallDeadline {
            started,
            at: Mutex::new(timeout.map(|t| started + t.min(cap))),
            extension: timeout.map(|t| (t, started + cap)),
        }
    }

    /// The instant the call is cut off, if it has a deadline.
    pub fn at(&self) -> Option<Instant> {
        *self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long the call has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// How long the call was allowed in the end: the timeout plus whatever
    /// progress reports added. Zero without a deadline.
    pub fn allowed(&self) -> Duration {
        self.at()
            .map(|at| at.saturating_duration_since(self.started))
            .unwrap_or_default()
    }

    /// Record progress: push an extensible deadline out, up to its cap.
    /// Returns the time left before the call is cut off (`Duration::MAX`
    /// without a deadline); a fixed deadline stays where it is.
    pub fn extend(&self) -> Duration {
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let Some(current) = *at else {
            return Duration::MAX;
        };
        let Some((extension, cap)) = self.extension else {
            return current.saturating_duration_since(now);
        };
        let new = current.max((now + extension).min(cap));
        *at = Some(new);
        new.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn progress_extends_up_to_the_cap() {
        let d = CallDeadline::pending(Some(Duration::from_secs(10)), Duration::from_secs(25));
        let start = Instant::now();
        assert_eq!(d.at(), Some(start + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(d.extend(), Duration::from_secs(10));
        assert_eq!(d.at(), Some(start + Duration::from_secs(18)));
        tokio::time::advance(Duration::from_secs(10)).await;
        // 18 s in: the next extension would reach 28 s, past the 25 s cap.
        assert_eq!(d.extend(), Duration::from_secs(7));
        assert_eq!(d.at(), Some(start + Duration::from_secs(25)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_deadline_is_not_extended() {
        let d = CallDeadline::fixed(Duration::from_secs(5));
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(d.extend(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(d.extend(), Duration::from_secs(1));
        assert_eq!(d.at(), Some(start + Duration::from_secs(5)));
        assert_eq!(d.allowed(), Duration::from_secs(5));
    }

    #[test]
    fn no_timeout_means_no_deadline() {
        let d = CallDeadline::pending(None, Duration::from_secs(25));
        assert_eq!(d.at(), None);
        assert_eq!(d.extend(), Duration::MAX);
    }
}
