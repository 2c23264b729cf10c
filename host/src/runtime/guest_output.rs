//! A plugin's stdout and stderr, forwarded to the log line by line, and the
//! budget that bounds how much any plugin output reaches the log.
//!
//! A Rust guest prints its panic message to stderr just before it traps, so
//! the last lines are kept: the monitor puts them in the failure reason
//! ("trapped: ... — plugin said: panicked at ...").
//!
//! A plugin can print (or call `host::log`) as fast as it runs: 100 MiB in
//! a few seconds. Every line a resource's plugin sends to the log — stdout,
//! stderr, log messages, progress reports — spends from one
//! [`OutputBudget`] per resource, a token bucket of lines and bytes. The
//! type-level calls (describe, validate) belong to no resource: they spend
//! from one budget per loaded plugin (`Plugin`), shared by all of them, so
//! that many calls, each in a store of its own, cannot flood the log
//! either. Lines over a budget are dropped (still kept for trap reasons),
//! with one warning when dropping starts and one "N lines suppressed" when
//! output fits again.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::plugin_text::{self, MAX_LINE, MAX_REASON};

const KEPT_LINES: usize = 8;

/// Lines a second one resource's plugin (or one plugin's type-level calls,
/// together) may write to the log, on average.
pub const LINES_PER_SECOND: f64 = 50.0;
/// Lines it may write at once after being quiet.
pub const LINE_BURST: f64 = 200.0;
/// Bytes a second one resource's plugin (or one plugin's type-level calls,
/// together) may write to the log, on average.
pub const BYTES_PER_SECOND: f64 = 64.0 * 1024.0;
/// Bytes it may write at once after being quiet.
pub const BYTE_BURST: f64 = 256.0 * 1024.0;

/// What the budget says about one line.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Log it; `suppressed` lines were dropped since the last one logged.
    Log { suppressed: u64 },
    /// Drop it; `first` if it is the first dropped since the last logged.
    Drop { first: bool },
}

#[derive(Debug)]
struct Bucket {
    lines: f64,
    bytes: f64,
    at: Instant,
    suppressed: u64,
}

/// The rate limit of one resource's plugin output to the log (or of one
/// plugin's type-level calls, all together): a token bucket of
/// [`LINES_PER_SECOND`] (burst [`LINE_BURST`]) and [`BYTES_PER_SECOND`]
/// (burst [`BYTE_BURST`]).
#[derive(Debug)]
pub(crate) struct OutputBudget {
    bucket: Mutex<Bucket>,
}

impl Default for OutputBudget {
    fn default() -> Self {
        OutputBudget::new(Instant::now())
    }
}

impl OutputBudget {
    fn new(now: Instant) -> OutputBudget {
        OutputBudget {
            bucket: Mutex::new(Bucket {
                lines: LINE_BURST,
                bytes: BYTE_BURST,
                at: now,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line of `len` bytes from `resource`'s plugin may go to the
    /// log now. Logs the start and the end of a suppression itself.
    pub(crate) fn admit(&self, resource: &str, len: usize) -> bool {
        match self.admit_at(len, Instant::now()) {
            Admission::Log { suppressed } => {
                if suppressed > 0 {
                    tracing::warn!(
                        target: "warden::plugin",
                        resource,
                        "{suppressed} lines of plugin output suppressed (over {LINES_PER_SECOND} \
                         lines or {} KiB a second)",
                        BYTES_PER_SECOND / 1024.0
                    );
                }
                true
            }
            Admission::Drop { first } => {
                if first {
                    tracing::warn!(
                        target: "warden::plugin",
                        resource,
                        "plugin output over its rate limit: suppressing lines until it slows down"
                    );
                }
                false
            }
        }
    }

    fn admit_at(&self, len: usize, now: Instant) -> Admission {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.at = now.max(bucket.at);
        bucket.lines = (bucket.lines + elapsed * LINES_PER_SECOND).min(LINE_BURST);
        bucket.bytes = (bucket.bytes + elapsed * BYTES_PER_SECOND).min(BYTE_BURST);
        let cost = len as f64;
        if bucket.lines >= 1.0 && bucket.bytes >= cost {
            bucket.lines -= 1.0;
            bucket.bytes -= cost;
            Admission::Log {
                suppressed: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed += 1;
            Admission::Drop {
                first: bucket.suppressed == 1,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
    recent: VecDeque<String>,
    /// Incremented for every complete line, so a caller can tell which lines
    /// were printed during one call.
    count: u64,
}

/// One stream (stdout or stderr) of one resource's plugin.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    resource: Arc<str>,
    stream: &'static str,
    lines: Arc<Mutex<Lines>>,
    budget: Arc<OutputBudget>,
}

impl GuestOutput {
    /// A stream of `resource`'s plugin whose lines spend from `budget`.
    pub(crate) fn new(
        resource: Arc<str>,
        stream: &'static str,
        budget: Arc<OutputBudget>,
    ) -> GuestOutput {
        GuestOutput {
            resource,
            stream,
            lines: Arc::default(),
            budget,
        }
    }

    /// How many lines have been printed so far.
    pub(crate) fn line_count(&self) -> u64 {
        self.lock().count
    }

    /// The lines printed after `since` (a value of [`Self::line_count`]),
    /// of the last few kept, joined with " | ".
    pub(crate) fn lines_since(&self, since: u64) -> Option<String> {
        let mut lines = self.lock();
        // A trap may come right after a write without a newline.
        if !lines.partial.is_empty() {
            let rest = std::mem::take(&mut lines.partial);
            self.push_line(&mut lines, &rest);
        }
        let new = lines.count.saturating_sub(since) as usize;
        let take = new.min(lines.recent.len());
        if take == 0 {
            return None;
        }
        // The last lines matter most (a panic message comes last): keep as
        // many of them as fit in a failure reason.
        let mut said: Vec<&str> = Vec::new();
        let mut size = 0;
        for line in lines.recent.iter().rev().take(take) {
            if !said.is_empty() && size + line.len() + 3 > MAX_REASON {
                break;
            }
            size += line.len() + 3;
            said.push(line);
        }
        said.reverse();
        Some(said.join(" | "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        let mut lines = self.lock();
        let mut pieces = bytes.split(|&b| b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            // Keep one byte past the limit, so the line is marked as cut.
            let room = (MAX_LINE + 1).saturating_sub(lines.partial.len());
            lines
                .partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if pieces.peek().is_some() {
                // A newline followed this piece: the line is complete.
                let line = std::mem::take(&mut lines.partial);
                self.push_line(&mut lines, &line);
            }
        }
    }

    /// One complete line: escaped and cut, logged if the budget allows, and
    /// kept for a trap reason either way.
    fn push_line(&self, lines: &mut Lines, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw).trim_end().to_string();
        let text = plugin_text::one_line(text, MAX_LINE);
        if self.budget.admit(&self.resource, text.len()) {
            let (resource, stream) = (&*self.resource, self.stream);
            tracing::info!(target: "warden::plugin", resource, stream, "{text}");
        }
        if lines.recent.len() == KEPT_LINES {
            lines.recent.pop_front();
        }
        lines.recent.push_back(text);
        lines.count += 1;
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Never fail and never block: a guest's eprintln! panics on a write
        // error, and a plugin must not be able to stall on its own log.
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> GuestOutput {
        GuestOutput::new("r".into(), "stderr", Arc::default())
    }

    #[test]
    fn keeps_the_lines_of_one_call() {
        let out = output();
        out.write(b"before\n");
        let mark = out.line_count();
        assert_eq!(out.lines_since(mark), None);
        out.write(b"panicked at src/lib.rs:1:\nboom");
        assert_eq!(
            out.lines_since(mark).as_deref(),
            Some("panicked at src/lib.rs:1: | boom")
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_forged_line_stays_inside_its_own_line() {
        let out = GuestOutput::new("r".into(), "stdout", Arc::default());
        let mark = out.line_count();
        out.write(b"ok\r2026-12-02T22:00:00Z  INFO warden: forged\x1b[2J\n");
        assert_eq!(
            out.lines_since(mark).as_deref(),
            Some("ok\\r2026-12-02T22:00:00Z  INFO warden: forged\\u{1b}[2J")
        );
    }

    #[test]
    fn a_long_line_is_cut_and_marked() {
        let out = GuestOutput::new("r".into(), "stdout", Arc::default());
        let mark = out.line_count();
        out.write(&vec![b'x'; 10 * MAX_LINE]);
        out.write(b"\n");
        let said = out.lines_since(mark).unwrap_or_default();
        assert_eq!(said.len(), MAX_LINE + plugin_text::CUT_MARK.len());
        assert!(said.ends_with(plugin_text::CUT_MARK));
    }

    #[test]
    fn trap_output_keeps_the_last_lines_within_a_reason() {
        let out = GuestOutput::new("r".into(), "stderr", Arc::default());
        let mark = out.line_count();
        for _ in 0..KEPT_LINES {
            out.write(&vec![b'y'; MAX_LINE]);
            out.write(b"\n");
        }
        out.write(b"panicked at the end");
        let said = out.lines_since(mark).unwrap_or_default();
        assert!(said.len() <= MAX_REASON, "{}", said.len());
        assert!(said.ends_with("panicked at the end"), "{said}");
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate_and_counts_what_it_dropped() {
        let start = Instant::now();
        let budget = OutputBudget::new(start);
        let burst = LINE_BURST as usize;
        for _ in 0..burst {
            assert!(matches!(budget.admit_at(10, start), Admission::Log { .. }));
        }
        assert_eq!(budget.admit_at(10, start), Admission::Drop { first: true });
        for _ in 0..99 {
            assert_eq!(budget.admit_at(10, start), Admission::Drop { first: false });
        }
        // One second later, the rate's worth of lines is back; the first
        // one logged reports the hundred dropped.
        let later = start + Duration::from_secs(1);
        assert_eq!(
            budget.admit_at(10, later),
            Admission::Log { suppressed: 100 }
        );
        for _ in 1..(LINES_PER_SECOND as usize) {
            assert_eq!(budget.admit_at(10, later), Admission::Log { suppressed: 0 });
        }
        assert_eq!(budget.admit_at(10, later), Admission::Drop { first: true });
    }

    #[test]
    fn the_budget_counts_bytes_as_well_as_lines() {
        let start = Instant::now();
        let budget = OutputBudget::new(start);
        let line = 16 * 1024;
        let fit = (BYTE_BURST as usize) / line;
        for _ in 0..fit {
            assert!(matches!(
                budget.admit_at(line, start),
                Admission::Log { .. }
            ));
        }
        assert_eq!(
            budget.admit_at(line, start),
            Admission::Drop { first: true }
        );
        // A long quiet time refills to the burst, not beyond.
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..fit {
            assert!(matches!(
                budget.admit_at(line, much_later),
                Admission::Log { .. }
            ));
        }
        assert!(matches!(
            budget.admit_at(line, much_later),
            Admission::Drop { .. }
        ));
    }
}
