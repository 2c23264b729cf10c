//! A plugin's stdout and stderr, forwarded to the log line by line.
//!
//! A Rust guest prints its panic message to stderr just before it traps, so
//! the last lines are kept: the monitor puts them in the failure reason
//! ("trapped: ... — plugin said: panicked at ...").

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const KEPT_LINES: usize = 8;
const MAX_LINE: usize = 4096;

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
pub struct GuestOutput {
    resource: Arc<str>,
    stream: &'static str,
    lines: Arc<Mutex<Lines>>,
}

impl GuestOutput {
    pub fn new(resource: Arc<str>, stream: &'static str) -> GuestOutput {
        GuestOutput {
            resource,
            stream,
            lines: Arc::default(),
        }
    }

    /// How many lines have been printed so far.
    pub fn line_count(&self) -> u64 {
        self.lock().count
    }

    /// The lines printed after `since` (a value of [`Self::line_count`]),
    /// of the last few kept, joined with " | ".
    pub fn lines_since(&self, since: u64) -> Option<String> {
        let mut lines = self.lock();
        // A trap may come right after a write without a newline.
        if !lines.partial.is_empty() {
            let rest = std::mem::take(&mut lines.partial);
            push_line(&mut lines, &self.resource, self.stream, &rest);
        }
        let new = lines.count.saturating_sub(since) as usize;
        let take = new.min(lines.recent.len());
        if take == 0 {
            return None;
        }
        let start = lines.recent.len() - take;
        Some(
            lines
                .recent
                .range(start..)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | "),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        let mut lines = self.lock();
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut lines.partial);
                push_line(&mut lines, &self.resource, self.stream, &line);
            } else if lines.partial.len() < MAX_LINE {
                lines.partial.push(byte);
            }
        }
    }
}

fn push_line(lines: &mut Lines, resource: &str, stream: &str, raw: &[u8]) {
    let text = String::from_utf8_lossy(raw).trim_end().to_string();
    tracing::info!(target: "warden::plugin", resource, stream, "{text}");
    if lines.recent.len() == KEPT_LINES {
        lines.recent.pop_front();
    }
    lines.recent.push_back(text);
    lines.count += 1;
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

    #[test]
    fn keeps_the_lines_of_one_call() {
        let out = GuestOutput::new("r".into(), "stderr");
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
