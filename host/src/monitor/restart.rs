//! The restart budget of one resource: restart on failure, up to a
//! threshold within a period, as the Windows cluster service does.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// When to restart a failed resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The failure that reaches this count within `period` is final: the
    /// resource stays Failed. The failures before it are restarted. 0 means
    /// never restart.
    pub threshold: u32,
    /// The window in which failures are counted.
    pub period: Duration,
    /// How long to wait before a restart.
    pub delay: Duration,
}

impl Default for RestartPolicy {
    /// 3 failures within 900 s, restarted at once: the Windows defaults.
    fn default() -> Self {
        RestartPolicy {
            threshold: 3,
            period: Duration::from_secs(900),
            delay: Duration::ZERO,
        }
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart; this was failure number `failure` within the period.
    Restart { failure: u32 },
    /// Stay Failed: `failures` within the period reached the threshold.
    GiveUp { failures: u32 },
}

/// Failures within the period, oldest first.
#[derive(Debug, Default)]
pub struct RestartBudget {
    failures: VecDeque<Instant>,
}

impl RestartBudget {
    /// Record a failure at `now` and decide.
    pub fn record(&mut self, policy: &RestartPolicy, now: Instant) -> Decision {
        self.forget_before(policy, now);
        self.failures.push_back(now);
        let failures = self.failures.len() as u32;
        if failures >= policy.threshold {
            Decision::GiveUp { failures }
        } else {
            Decision::Restart { failure: failures }
        }
    }

    /// Failures still within the period at `now`.
    pub fn recent(&mut self, policy: &RestartPolicy, now: Instant) -> u32 {
        self.forget_before(policy, now);
        self.failures.len() as u32
    }

    fn forget_before(&mut self, policy: &RestartPolicy, now: Instant) {
        while let Some(&first) = self.failures.front() {
            if now.saturating_duration_since(first) >= policy.period {
                self.failures.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(threshold: u32, period_s: u64) -> RestartPolicy {
        RestartPolicy {
            threshold,
            period: Duration::from_secs(period_s),
            delay: Duration::ZERO,
        }
    }

    #[test]
    fn the_third_failure_within_the_period_is_final() {
        let p = policy(3, 900);
        let mut b = RestartBudget::default();
        let t = Instant::now();
        assert_eq!(b.record(&p, t), Decision::Restart { failure: 1 });
        assert_eq!(
            b.record(&p, t + Duration::from_secs(10)),
            Decision::Restart { failure: 2 }
        );
        assert_eq!(
            b.record(&p, t + Duration::from_secs(20)),
            Decision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn failures_older_than_the_period_are_forgotten() {
        let p = policy(3, 900);
        let mut b = RestartBudget::default();
        let t = Instant::now();
        b.record(&p, t);
        b.record(&p, t + Duration::from_secs(1));
        // The first failure is exactly one period old: it no longer counts.
        assert_eq!(
            b.record(&p, t + Duration::from_secs(900)),
            Decision::Restart { failure: 2 }
        );
        assert_eq!(b.recent(&p, t + Duration::from_secs(2000)), 0);
    }

    #[test]
    fn threshold_zero_never_restarts() {
        let mut b = RestartBudget::default();
        assert_eq!(
            b.record(&policy(0, 900), Instant::now()),
            Decision::GiveUp { failures: 1 }
        );
    }
}
