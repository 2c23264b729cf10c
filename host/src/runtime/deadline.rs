//! The deadline of one call into a plugin, which progress reports extend.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When the call in flight is cut off.
///
/// `online` and `offline` may report progress (SetResourceStatus in the
/// Windows model); each report moves the deadline to `now + extension`, but
/// never past the hard cap fixed when the call started.
#[derive(Debug)]
pub struct CallDeadline {
    started: Instant,
    at: Mutex<Option<Instant>>,
    extension: Duration,
    cap: Option<Instant>,
}

impl CallDeadline {
    /// A deadline `timeout` from now that progress reports may extend by
    /// `timeout` each, up to `cap` after the start. `None` means no deadline
    /// (an online the type declared must not time out).
    pub fn new(timeout: Option<Duration>, cap: Option<Duration>) -> CallDeadline {
        let started = Instant::now();
        CallDeadline {
            started,
            at: Mutex::new(timeout.map(|t| started + t)),
            extension: timeout.unwrap_or_default(),
            cap: cap.map(|c| started + c),
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

    /// Record progress: push the deadline out, up to the cap. Returns the
    /// time left before the call is cut off (`u64::MAX` ms without one).
    pub fn extend(&self) -> Duration {
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let Some(current) = *at else {
            return Duration::MAX;
        };
        let mut wanted = now + self.extension;
        if let Some(cap) = self.cap {
            wanted = wanted.min(cap);
        }
        let new = current.max(wanted);
        *at = Some(new);
        new.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn progress_extends_up_to_the_cap() {
        let d = CallDeadline::new(Some(Duration::from_secs(10)), Some(Duration::from_secs(25)));
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

    #[test]
    fn no_timeout_means_no_deadline() {
        let d = CallDeadline::new(None, None);
        assert_eq!(d.at(), None);
        assert_eq!(d.extend(), Duration::MAX);
    }
}
