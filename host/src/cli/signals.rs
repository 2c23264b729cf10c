//! SIGINT and SIGTERM: honoured from the agent's first instant to its
//! last (see `main`, which resets them before anything else).

use anyhow::{Context, Result};

/// Give SIGINT and SIGTERM their default action (end the process) until
/// the agent listens for them: a shell starts a background job with
/// SIGINT ignored, and one sent before the agent listened would be lost.
pub fn reset_stop_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for stop in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: no handler is installed, only the default action; no
        // other thread exists yet.
        if let Err(err) = unsafe { signal(stop, SigHandler::SigDfl) } {
            eprintln!("warning: could not reset the action of {stop}: {err}");
        }
    }
}

/// SIGTERM and SIGINT, listened for from the agent's first moments.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Listen for SIGINT and SIGTERM from now on, so that one sent during
    /// start-up is not lost.
    pub fn listen() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// Until one of them arrives (or arrived since [`StopSignals::listen`]).
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
