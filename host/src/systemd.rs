//! systemd integration: readiness, watchdog and stopping notifications.
//!
//! The protocol is one datagram to the socket named by `NOTIFY_SOCKET`
//! (sd_notify(3)); a few lines of std are enough, no library needed. Without
//! `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Send `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=...") to
/// systemd. Returns whether there was a socket to send to.
pub(crate) fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): '@' stands for the leading NUL.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// How often to send WATCHDOG=1: half of `WATCHDOG_USEC`, if systemd set
/// it for this process.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Log instead of failing: a lost notification must not stop the agent.
pub(crate) fn notify_or_log(state: &str) {
    if let Err(err) = notify(state) {
        tracing::warn!("could not notify systemd ({state}): {err}");
    }
}
