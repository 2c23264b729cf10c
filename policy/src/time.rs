//! Time as the engine sees it: a number of milliseconds, passed in by the driver.
//!
//! The engine never reads a clock. That is what makes it deterministic and lets
//! the tests run hours of simulated time in milliseconds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds: a point in time (since an origin the driver chooses) or a span.
///
/// Only failback windows look at the wall clock: they take the hour of day as
/// `(ms / 3_600_000) % 24`, so a driver that uses failback windows passes
/// milliseconds since the Unix epoch *in the cluster's time zone* (UTC plus the
/// zone offset). Everything else only compares and adds these numbers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The origin, or an empty span.
    pub const ZERO: Millis = Millis(0);

    /// A span of `s` seconds.
    pub const fn from_secs(s: u64) -> Millis {
        Millis(s.saturating_mul(1000))
    }

    /// A span of `m` minutes.
    pub const fn from_mins(m: u64) -> Millis {
        Millis(m.saturating_mul(60_000))
    }

    /// A span of `h` hours.
    pub const fn from_hours(h: u64) -> Millis {
        Millis(h.saturating_mul(3_600_000))
    }

    /// Adds without overflowing: a huge period simply means "never".
    pub const fn saturating_add(self, other: Millis) -> Millis {
        Millis(self.0.saturating_add(other.0))
    }

    /// Subtracts, stopping at zero.
    pub const fn saturating_sub(self, other: Millis) -> Millis {
        Millis(self.0.saturating_sub(other.0))
    }

    /// Hour of the day (0..24) of this point in time; see the type's docs.
    pub const fn hour_of_day(self) -> u8 {
        ((self.0 / 3_600_000) % 24) as u8
    }

    /// The first point in time after `self` at which the hour of day is `hour`
    /// (the start of that hour).
    pub fn next_hour_start(self, hour: u8) -> Millis {
        let hour_ms = 3_600_000;
        let start_of_this_hour = self.0 - self.0 % hour_ms;
        let now_hour = u64::from(self.hour_of_day());
        let mut ahead = (u64::from(hour) + 24 - now_hour) % 24;
        if ahead == 0 {
            ahead = 24;
        }
        Millis(start_of_this_hour.saturating_add(ahead * hour_ms))
    }
}

impl fmt::Display for Millis {
    /// `250ms`, `900s`, `6h`: the units an operator writes in configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// Error from parsing a [`Millis`] written as `250ms`, `10s`, `15m`, `6h` or `1d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number followed by ms, s, m, h or d")]
pub struct ParseMillisError(pub String);

impl FromStr for Millis {
    type Err = ParseMillisError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMillisError(s.to_string());
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(digits_end);
        let n: u64 = num.parse().map_err(|_| err())?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        n.checked_mul(factor).map(Millis).ok_or_else(err)
    }
}

impl std::ops::Add for Millis {
    type Output = Millis;
    /// Saturating: a huge period simply means "never".
    fn add(self, rhs: Millis) -> Millis {
        self.saturating_add(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for s in ["0s", "250ms", "900s", "6h", "1h", "5400s"] {
            let m: Millis = s.parse().expect("parses");
            assert_eq!(m.to_string(), s);
        }
        assert_eq!("15m".parse::<Millis>(), Ok(Millis::from_secs(900)));
        assert!("15".parse::<Millis>().is_err());
        assert!("h".parse::<Millis>().is_err());
    }

    #[test]
    fn next_hour_start_wraps_the_day() {
        let t = Millis::from_hours(23) + Millis::from_mins(30);
        assert_eq!(t.next_hour_start(2), Millis::from_hours(26));
        assert_eq!(t.next_hour_start(23), Millis::from_hours(47));
        assert_eq!(Millis::ZERO.next_hour_start(0), Millis::from_hours(24));
    }
}
