//! One line per notable event, on stderr.
//!
//! Why stderr and plain lines: the supervisor (a Warden plugin, or a person at
//! a terminal) captures a service's stderr. One self-contained line per event,
//! with a UTC timestamp, the program name and its pid, greps well and
//! interleaves cleanly when several services share one log. Each line goes
//! out in a single `write` so threads never interleave mid-line.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Names the program in every later line. Call once, first thing in `main`.
pub fn init(program: &'static str) {
    let _ = PROGRAM.set(program);
}

/// Writes one line. Use the [`log!`](crate::log!) macro rather than this.
pub fn write(args: fmt::Arguments<'_>) {
    let program = PROGRAM.get().copied().unwrap_or("mail");
    let line = format!(
        "{} {program}[{}]: {args}\n",
        timestamp(SystemTime::now()),
        std::process::id()
    );
    // Nothing sensible to do if stderr is gone; the service keeps serving.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs one event line: `log!("recovered {n} records")`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::write(format_args!($($arg)*))
    };
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-05-01T12:00:00.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`), so that logging needs no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_782_400_250);
        assert_eq!(timestamp(leap_day), "2000-02-29T00:00:00.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(timestamp(t), "2025-12-31T23:59:59.000Z");
    }
}
