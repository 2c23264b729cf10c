//! Fault points: named instants at which a test may freeze the agent, to
//! kill it there as a real crash could.
//!
//! Some windows are too short to hit from outside (the microseconds between
//! a service's start and its pid record), yet what the next agent does
//! after a crash inside one is exactly what must be tested. With
//! `WARDEN_FAULT_POINT=NAME` in its environment the agent stops itself
//! (SIGSTOP, every thread at once) each time it reaches the point `NAME`;
//! the test then sends SIGKILL. Without the variable a point costs one
//! load of a value read once.

use std::sync::OnceLock;

/// The environment variable that names the point to stop at.
pub const VARIABLE: &str = "WARDEN_FAULT_POINT";

/// A service's process exists; its pid record does not name it yet.
pub const SERVICE_STARTED: &str = "service-started";

/// Stop the whole agent here if the environment names `point`.
pub fn reached(point: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(VARIABLE).ok());
    if chosen.as_deref() == Some(point) {
        tracing::warn!("fault point {point} reached: stopping ({VARIABLE})");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
