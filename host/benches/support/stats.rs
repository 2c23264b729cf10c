//! What the benches that time many calls share: the quantile of sorted
//! samples and a duration written for people. A module of its own (in a
//! directory, so cargo does not take it for a bench), included with
//! `#[path]` by each bench that prints such figures (not every bench uses
//! every helper).
#![allow(dead_code)]

use std::time::Duration;

/// The nearest-rank `q` quantile of sorted `samples`.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let n = samples.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    samples[rank - 1]
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}
