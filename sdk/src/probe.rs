//! Health probes the agent makes on the plugin's behalf (contract 0.4.0's
//! `probe` import): a connect, a line exchange, an HTTP GET; and (0.5.0)
//! [`http_check`], an HTTP check with a host header, a status class and a
//! connection the agent may keep between checks.
//!
//! The same checks as [`crate::net`]'s, but done by the host instead of
//! through the plugin's WASI sockets: the host holds the socket, bounds each
//! probe by its timeout and by what remains of the calling export's
//! deadline, caps the answer (a line at 4 KiB, an HTTP status line and
//! headers at 16 KiB) and gives back one line. The grants are the
//! sockets': only the addresses the resource's `address` properties name
//! (pass the property's value as it is, `localhost:6379` included); any
//! other is refused. A type that needs more than these three (a dialogue,
//! a body) keeps using [`crate::net`].
//!
//! Errors are the SDK's: a text for the operator, which starts with what
//! kind of failure it was (`denied:`, `invalid:`, `cannot connect:`,
//! `timed out:`, `unexpected answer:`). [`ProbeError`] is the typed form,
//! for a type that tells them apart ([`connect_typed`] and its kin).
//!
//! ```no_run
//! use std::time::Duration;
//! use warden_sdk::probe;
//!
//! // Redis: PING answered +PONG.
//! probe::exchange_line("127.0.0.1:6379", Some("PING"), "+PONG", Duration::from_secs(2))?;
//! // An SMTP banner: no line sent, the answer starts with 220.
//! probe::exchange_line("127.0.0.1:25", None, "220", Duration::from_secs(2))?;
//! // A web server's health page.
//! probe::http_get("[::1]:8080", "/healthz", 200, Duration::from_secs(2))?;
//! // Any 2xx, on a connection the agent keeps for the next check.
//! let check = probe::HttpCheck::new("127.0.0.1:8080", "/healthz")
//!     .expect(probe::StatusMatch::Class(2))
//!     .host_header("www.example.org")
//!     .reuse_connection(true);
//! probe::http_check(&check, Duration::from_secs(2))?;
//! // Only whether the port takes connections.
//! let took = probe::connect("localhost:11211", Duration::from_millis(500))?;
//! # let _ = took;
//! # Ok::<(), String>(())
//! ```

use std::time::Duration;

use crate::bindings::warden::resource::probe as import;

pub use import::{ProbeError, StatusMatch};

/// Connect to `address` and close the connection again; how long the
/// connection took.
pub fn connect(address: &str, timeout: Duration) -> Result<Duration, String> {
    connect_typed(address, timeout).map_err(text)
}

/// Connect; send `send` and CRLF if given; read one line (without its line
/// end) that must start with `expect_prefix` (empty: any line). The line.
pub fn exchange_line(
    address: &str,
    send: Option<&str>,
    expect_prefix: &str,
    timeout: Duration,
) -> Result<String, String> {
    exchange_line_typed(address, send, expect_prefix, timeout).map_err(text)
}

/// An HTTP/1.1 GET of `path` (starting with `/`) from `address`, whose
/// status must be `expect_status`; redirects are not followed. The status.
pub fn http_get(
    address: &str,
    path: &str,
    expect_status: u16,
    timeout: Duration,
) -> Result<u16, String> {
    http_get_typed(address, path, expect_status, timeout).map_err(text)
}

/// An HTTP check (contract 0.5.0's `http-check`): what to GET and which
/// statuses pass. Made by [`http_check`].
#[derive(Debug, Clone)]
pub struct HttpCheck {
    address: String,
    path: String,
    host_header: Option<String>,
    expect: StatusMatch,
    reuse_connection: bool,
}

impl HttpCheck {
    /// A GET of `path` (starting with `/`) from `address`, passing on 200,
    /// on a new connection each time.
    pub fn new(address: &str, path: &str) -> HttpCheck {
        HttpCheck {
            address: address.to_string(),
            path: path.to_string(),
            host_header: None,
            expect: StatusMatch::Exact(200),
            reuse_connection: false,
        }
    }

    /// Which statuses pass: one exactly, or a class (`Class(2)`: any 2xx).
    pub fn expect(mut self, expect: StatusMatch) -> HttpCheck {
        self.expect = expect;
        self
    }

    /// The `Host` header to send instead of the address (a host name or an
    /// IP address, with an optional port; the agent refuses anything else).
    pub fn host_header(mut self, host: &str) -> HttpCheck {
        self.host_header = Some(host.to_string());
        self
    }

    /// Whether the agent keeps the connection for the next check (it does
    /// when the answer's body is small and has a length). A kept connection
    /// costs the server nothing new per check, but does not notice a
    /// listener that stopped accepting new connections.
    pub fn reuse_connection(mut self, reuse: bool) -> HttpCheck {
        self.reuse_connection = reuse;
        self
    }
}

/// Make `check` within `timeout`; the status. Redirects are not followed.
pub fn http_check(check: &HttpCheck, timeout: Duration) -> Result<u16, String> {
    http_check_typed(check, timeout).map_err(text)
}

/// [`http_check`], failing with the typed error.
pub fn http_check_typed(check: &HttpCheck, timeout: Duration) -> Result<u16, ProbeError> {
    import::http_check(&import::HttpCheckSpec {
        address: check.address.clone(),
        path: check.path.clone(),
        host_header: check.host_header.clone(),
        expect: check.expect,
        reuse_connection: check.reuse_connection,
        timeout_ms: millis(timeout),
    })
}

/// [`connect`], failing with the typed error.
pub fn connect_typed(address: &str, timeout: Duration) -> Result<Duration, ProbeError> {
    import::connect(address, millis(timeout)).map(Duration::from_millis)
}

/// [`exchange_line`], failing with the typed error.
pub fn exchange_line_typed(
    address: &str,
    send: Option<&str>,
    expect_prefix: &str,
    timeout: Duration,
) -> Result<String, ProbeError> {
    import::exchange_line(address, send, expect_prefix, millis(timeout))
}

/// [`http_get`], failing with the typed error.
pub fn http_get_typed(
    address: &str,
    path: &str,
    expect_status: u16,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    import::http_get(address, path, expect_status, millis(timeout))
}

/// A probe's error as the SDK's error text: its kind, then the host's
/// words.
///
/// ```
/// use warden_sdk::probe::{ProbeError, text};
/// let why = text(ProbeError::TimedOut("connecting to 127.0.0.1:6379: no answer within 2000 ms".into()));
/// assert!(why.starts_with("timed out: connecting"));
/// ```
pub fn text(error: ProbeError) -> String {
    match error {
        ProbeError::Denied(why) => format!("denied: {why}"),
        ProbeError::Invalid(why) => format!("invalid: {why}"),
        ProbeError::Connect(why) => format!("cannot connect: {why}"),
        ProbeError::TimedOut(why) => format!("timed out: {why}"),
        ProbeError::Unexpected(why) => format!("unexpected answer: {why}"),
    }
}

/// A timeout in whole milliseconds, at least 1 (the host refuses 0) and at
/// most what fits.
fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
