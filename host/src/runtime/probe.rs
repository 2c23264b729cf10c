//! The `probe` import (contract 0.4.0; 0.5.0 added `http-check`, in
//! `http_check`): the health checks nearly every type
//! makes (a TCP connect, a line exchange, an HTTP GET), done by the host on
//! the plugin's behalf, so that a type written in a language without WASI
//! sockets (Python, JavaScript) can check its service.
//!
//! Invariants:
//! - **The sockets' grants, checked by the sockets' code**: the address is
//!   parsed like an `address` property and then passed to
//!   [`NetworkGrant::connect_targets`], the rule the WASI socket check
//!   applies; no name is looked up. A denial is logged within the plugin's
//!   output budget, so a plugin probing in a loop cannot flood the log.
//! - **Every probe ends by its own deadline**: the epoch cuts a guest
//!   running wasm, not a host call waiting on a socket, so each probe is
//!   bounded here by `min(timeout-ms, what remains of the calling export's
//!   deadline, MAX_TIMEOUT)`, every connect, write and read under it. The
//!   export's share is what remains less a tenth of it (at most
//!   [`DEADLINE_MARGIN`]): the plugin gets the probe's `timed-out` back in
//!   time to answer with it, rather than being cut off itself.
//! - **Answers are bounded before they are read**: a line at most
//!   [`MAX_ANSWER_LINE`] bytes, an HTTP status line and headers at most
//!   [`MAX_HTTP_HEAD`]; nothing more is read, whatever the peer sends.
//! - **Texts are one line and cut**: what an error quotes of an answer or of
//!   the plugin's arguments is escaped and cut to [`MAX_QUOTE`].
//! - Nothing the plugin passes reaches the wire unchecked: a line to send
//!   holds no CR or LF, a path is printable ASCII starting with `/`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::host_state::HostState;
use super::network::{Denied, parse_address};
use super::plugin_text;
use crate::contract::bindings::current::warden::resource::probe::{
    Host, HttpCheckSpec, ProbeError,
};

/// The longest line `exchange-line` reads, without its line end.
pub const MAX_ANSWER_LINE: usize = 4 * 1024;
/// The most `http-get` reads of an answer: status line and headers.
pub const MAX_HTTP_HEAD: usize = 16 * 1024;
/// The longest line `exchange-line` sends (without the CRLF it appends).
pub const MAX_SEND: usize = 4 * 1024;
/// The longest path `http-get` asks for.
pub const MAX_PATH: usize = 8 * 1024;
/// The longest address a probe takes (a DNS name is at most 253 bytes).
pub const MAX_ADDRESS: usize = 300;
/// The longest timeout a probe takes; a longer one is this. Only a call
/// without a deadline (an `online` that may take as long as it needs)
/// could otherwise wait longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most of a calling export's remaining time a probe leaves the
/// plugin to answer with its outcome (a tenth of it, at most this).
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// The most an error quotes of an answer or an argument.
pub const MAX_QUOTE: usize = 256;

/// What a probe answers the plugin.
pub(super) type Answer<T> = wasmtime::Result<Result<T, ProbeError>>;

impl Host for HostState {
    async fn connect(&mut self, address: String, timeout_ms: u64) -> Answer<u64> {
        let started = Instant::now();
        let outcome = match self.probe(address, timeout_ms) {
            Ok(probe) => probe.connect().await.map(drop),
            Err(refused) => Err(refused),
        };
        Ok(bounded_error(outcome).map(|()| millis(started.elapsed())))
    }

    async fn exchange_line(
        &mut self,
        address: String,
        send: Option<String>,
        expect_prefix: String,
        timeout_ms: u64,
    ) -> Answer<String> {
        let checked = send
            .as_deref()
            .map_or(Ok(()), |line| {
                check_line("the line to send", line, MAX_SEND)
            })
            .and_then(|()| check_line("the expected prefix", &expect_prefix, MAX_ANSWER_LINE))
            .and_then(|()| self.probe(address, timeout_ms));
        let outcome = match checked {
            Ok(probe) => probe.exchange_line(send.as_deref(), &expect_prefix).await,
            Err(refused) => Err(refused),
        };
        Ok(bounded_error(outcome))
    }

    async fn http_get(
        &mut self,
        address: String,
        path: String,
        expect_status: u16,
        timeout_ms: u64,
    ) -> Answer<u16> {
        let checked = check_path(&path).and_then(|()| self.probe(address, timeout_ms));
        let outcome = match checked {
            Ok(probe) => probe.http_get(&path, expect_status).await,
            Err(refused) => Err(refused),
        };
        Ok(bounded_error(outcome))
    }

    async fn http_check(&mut self, check: HttpCheckSpec) -> Answer<u16> {
        Ok(bounded_error(super::http_check::run(self, check).await))
    }
}

impl HostState {
    /// A probe of `address` for this resource: the address checked against
    /// its grant, the timeout bounded by the call's deadline.
    pub(super) fn probe(&self, address: String, timeout_ms: u64) -> Result<Probe, ProbeError> {
        if address.len() > MAX_ADDRESS {
            return Err(ProbeError::Invalid(format!(
                "the address {} is longer than {MAX_ADDRESS} bytes",
                quote(address.as_bytes())
            )));
        }
        if address.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            // It is also the `Host` of an HTTP probe: no line may be forged.
            return Err(ProbeError::Invalid(format!(
                "the address {} holds spaces or control characters",
                quote(address.as_bytes())
            )));
        }
        parse_address(&address).map_err(|why| {
            ProbeError::Invalid(format!("the address {} {why}", quote(address.as_bytes())))
        })?;
        let targets = self
            .network
            .connect_targets(&self.resource.name, &address)
            .map_err(|denied| self.refuse(denied))?;
        let export_deadline = self.deadline.as_ref().and_then(|d| d.at());
        let budget = Budget::new(timeout_ms, export_deadline)?;
        Ok(Probe {
            address,
            targets,
            budget,
        })
    }

    /// A denial, logged within the plugin's output budget.
    fn refuse(&self, denied: Denied) -> ProbeError {
        let text = denied.to_string();
        if self.resource.output.admit(&self.resource.name, text.len()) {
            tracing::warn!(resource = &*self.resource.name, "denied: probe: {text}");
        }
        ProbeError::Denied(text)
    }
}

/// How long one probe may take, and what bounded it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// The instant the probe gives up.
    until: Instant,
    /// How long it was given.
    given: Duration,
    /// Whether the calling export's deadline, not the timeout asked,
    /// bounded it.
    by_deadline: bool,
}

impl Budget {
    /// `min(asked, what remains before export_deadline less its margin,
    /// MAX_TIMEOUT)`.
    fn new(asked_ms: u64, export_deadline: Option<Instant>) -> Result<Budget, ProbeError> {
        if asked_ms == 0 {
            return Err(ProbeError::Invalid(
                "the timeout is 0 ms; give a probe at least 1 ms".to_string(),
            ));
        }
        let now = Instant::now();
        let asked = Duration::from_millis(asked_ms).min(MAX_TIMEOUT);
        let remaining = export_deadline.map(|at| {
            let remaining = at.saturating_duration_since(now);
            remaining - (remaining / 10).min(DEADLINE_MARGIN)
        });
        let (given, by_deadline) = match remaining {
            Some(remaining) if remaining < asked => (remaining, true),
            _ => (asked, false),
        };
        Ok(Budget {
            until: now + given,
            given,
            by_deadline,
        })
    }

    /// The error of a probe that ran out of time while `doing`.
    pub(super) fn timed_out(&self, doing: String) -> ProbeError {
        let why = if self.by_deadline {
            " (what remained of the calling export's deadline)"
        } else {
            ""
        };
        ProbeError::TimedOut(format!(
            "{doing}: no answer within {} ms{why}",
            self.given.as_millis()
        ))
    }

    /// Run `io` until the probe's end: `None` if time ran out first.
    pub(super) async fn run<T>(&self, io: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(self.until, io).await.ok()
    }
}

/// One probe: where it goes (`address` as the plugin named it, `targets`
/// as granted) and its budget.
pub(super) struct Probe {
    pub(super) address: String,
    targets: Vec<SocketAddr>,
    pub(super) budget: Budget,
}

impl Probe {
    /// A connection to the first target that takes one.
    pub(super) async fn connect(&self) -> Result<TcpStream, ProbeError> {
        let mut failures = Vec::new();
        for target in &self.targets {
            match self.budget.run(TcpStream::connect(target)).await {
                None => {
                    return Err(self
                        .budget
                        .timed_out(format!("connecting to {} ({target})", self.address)));
                }
                Some(Ok(stream)) => return Ok(stream),
                Some(Err(err)) => failures.push(format!("{target}: {err}")),
            }
        }
        Err(ProbeError::Connect(format!(
            "cannot connect to {}: {}",
            self.address,
            failures.join("; ")
        )))
    }

    /// Connect, send `send` and CRLF if given, read one line; it must start
    /// with `expect_prefix`.
    async fn exchange_line(
        &self,
        send: Option<&str>,
        expect_prefix: &str,
    ) -> Result<String, ProbeError> {
        let mut stream = self.connect().await?;
        if let Some(line) = send {
            let mut bytes = Vec::with_capacity(line.len() + 2);
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            self.send(&mut stream, &bytes).await?;
        }
        // The line, its CRLF, and one byte more to tell a line too long.
        let cap = MAX_ANSWER_LINE + 2;
        let (answer, end) = self
            .read_until(&mut stream, cap, "a line", |bytes| {
                bytes.iter().position(|&b| b == b'\n')
            })
            .await?;
        let line = answer[..end].strip_suffix(b"\r").unwrap_or(&answer[..end]);
        if line.len() > MAX_ANSWER_LINE {
            return Err(self.too_long("a line", MAX_ANSWER_LINE, line));
        }
        let line = String::from_utf8_lossy(line).into_owned();
        if !line.starts_with(expect_prefix) {
            return Err(ProbeError::Unexpected(format!(
                "{} answered {}, expected a line starting with {}",
                self.address,
                quote(line.as_bytes()),
                quote(expect_prefix.as_bytes())
            )));
        }
        Ok(line)
    }

    /// Connect, send a GET of `path`, read the status line and headers;
    /// the status must be `expect_status`.
    async fn http_get(&self, path: &str, expect_status: u16) -> Result<u16, ProbeError> {
        let mut stream = self.connect().await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: warden-probe\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            self.address
        );
        self.send(&mut stream, request.as_bytes()).await?;
        let (head, end) = self
            .read_until(
                &mut stream,
                MAX_HTTP_HEAD,
                "the status line and headers",
                end_of_head,
            )
            .await?;
        let head = &head[..end];
        let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
        let status = parse_status(status_line).ok_or_else(|| {
            ProbeError::Unexpected(format!(
                "{} did not answer HTTP/1.x: its first line is {}",
                self.address,
                quote(status_line)
            ))
        })?;
        if status != expect_status {
            let redirect = if (300..400).contains(&status) {
                match header(head, "location") {
                    Some(to) => format!("; redirects are not followed (Location: {})", quote(to)),
                    None => "; redirects are not followed".to_string(),
                }
            } else {
                String::new()
            };
            return Err(ProbeError::Unexpected(format!(
                "{} answered {}, expected status {expect_status}{redirect}",
                self.address,
                quote(status_line)
            )));
        }
        Ok(status)
    }

    /// Write all of `bytes` within the budget.
    pub(super) async fn send(
        &self,
        stream: &mut TcpStream,
        bytes: &[u8],
    ) -> Result<(), ProbeError> {
        match self.budget.run(stream.write_all(bytes)).await {
            None => Err(self
                .budget
                .timed_out(format!("sending to {}", self.address))),
            Some(Err(err)) => Err(ProbeError::Connect(format!(
                "the connection to {} failed while sending: {err}",
                self.address
            ))),
            Some(Ok(())) => Ok(()),
        }
    }

    /// Read from `stream` until `end` finds the end of what is wanted (the
    /// bytes and that end's offset), never more than `cap` bytes in all.
    async fn read_until(
        &self,
        stream: &mut TcpStream,
        cap: usize,
        wanted: &str,
        end: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<(Vec<u8>, usize), ProbeError> {
        self.read_more_until(stream, Vec::with_capacity(1024), cap, wanted, end)
            .await
    }

    /// [`Probe::read_until`], `answer` holding what came already.
    pub(super) async fn read_more_until(
        &self,
        stream: &mut TcpStream,
        mut answer: Vec<u8>,
        cap: usize,
        wanted: &str,
        end: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<(Vec<u8>, usize), ProbeError> {
        if let Some(at) = end(&answer) {
            return Ok((answer, at));
        }
        let mut chunk = [0u8; 2048];
        loop {
            let room = cap - answer.len();
            if room == 0 {
                return Err(self.too_long(wanted, cap, &answer));
            }
            let take = room.min(chunk.len());
            let read = match self.budget.run(stream.read(&mut chunk[..take])).await {
                None => {
                    return Err(self.budget.timed_out(format!(
                        "reading {wanted} from {} ({} bytes came: {})",
                        self.address,
                        answer.len(),
                        quote(&answer)
                    )));
                }
                Some(Err(err)) => {
                    return Err(ProbeError::Connect(format!(
                        "the connection to {} failed while reading {wanted}: {err}",
                        self.address
                    )));
                }
                Some(Ok(read)) => read,
            };
            if read == 0 {
                return Err(ProbeError::Unexpected(if answer.is_empty() {
                    format!("{} closed the connection without answering", self.address)
                } else {
                    format!(
                        "{} closed the connection before the end of {wanted}: {}",
                        self.address,
                        quote(&answer)
                    )
                }));
            }
            // Search again only where the end could newly be (an end
            // marker is at most 4 bytes, so 3 may precede this read).
            let from = answer.len().saturating_sub(3);
            answer.extend_from_slice(&chunk[..read]);
            if let Some(at) = end(&answer[from..]) {
                return Ok((answer, from + at));
            }
        }
    }

    /// The error of an answer longer than allowed.
    fn too_long(&self, wanted: &str, cap: usize, answer: &[u8]) -> ProbeError {
        ProbeError::Unexpected(format!(
            "{wanted} from {} is longer than {} KiB: {}",
            self.address,
            cap / 1024,
            quote(answer)
        ))
    }
}

/// Where an HTTP head ends (the offset of its blank line's start).
pub(super) fn end_of_head(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status of `HTTP/1.x NNN reason`.
pub(super) fn parse_status(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 3 && !rest[3..].starts_with(' ') {
        return None;
    }
    code.parse().ok()
}

/// The value of header `name` (lower case) in an HTTP head.
pub(super) fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

/// Refuse a line argument that holds a line end (it would end the line
/// early, or inject another) or is too long.
fn check_line(what: &str, line: &str, max: usize) -> Result<(), ProbeError> {
    if line.contains(['\r', '\n']) {
        return Err(ProbeError::Invalid(format!(
            "{what} {} holds CR or LF; a probe sends one line",
            quote(line.as_bytes())
        )));
    }
    if line.len() > max {
        return Err(ProbeError::Invalid(format!(
            "{what} is {} bytes, longer than {max}",
            line.len()
        )));
    }
    Ok(())
}

/// Refuse a path that is not an origin-form request target: it must start
/// with `/` and be printable ASCII without spaces.
pub(super) fn check_path(path: &str) -> Result<(), ProbeError> {
    if path.len() > MAX_PATH {
        return Err(ProbeError::Invalid(format!(
            "the path is {} bytes, longer than {MAX_PATH}",
            path.len()
        )));
    }
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProbeError::Invalid(format!(
            "the path {} must start with / and be printable ASCII without spaces \
             (percent-encode the rest)",
            quote(path.as_bytes())
        )));
    }
    Ok(())
}

/// `bytes` as an error may quote them: in double quotes, lossy UTF-8, one
/// line (control characters escaped), cut.
pub(super) fn quote(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(MAX_QUOTE + 1)];
    let text = plugin_text::one_line(String::from_utf8_lossy(head).into_owned(), MAX_QUOTE);
    format!("\"{text}\"")
}

/// An outcome whose error text is one line of at most
/// [`plugin_text::MAX_REASON`].
fn bounded_error<T>(outcome: Result<T, ProbeError>) -> Result<T, ProbeError> {
    outcome.map_err(|error| match error {
        ProbeError::Denied(text) => ProbeError::Denied(plugin_text::reason(text)),
        ProbeError::Invalid(text) => ProbeError::Invalid(plugin_text::reason(text)),
        ProbeError::Connect(text) => ProbeError::Connect(plugin_text::reason(text)),
        ProbeError::TimedOut(text) => ProbeError::TimedOut(plugin_text::reason(text)),
        ProbeError::Unexpected(text) => ProbeError::Unexpected(plugin_text::reason(text)),
    })
}

/// A duration in whole milliseconds, for the plugin.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status(b"HTTP/2 200"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn heads_end_at_a_blank_line() {
        assert_eq!(
            end_of_head(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"),
            Some(21)
        );
        assert_eq!(end_of_head(b"HTTP/1.1 200 OK\nA: b\n\nbody"), Some(20));
        assert_eq!(end_of_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        let head = b"HTTP/1.1 301 Moved\r\nLOCATION:  /elsewhere \r\n";
        assert_eq!(header(head, "location"), Some(&b"/elsewhere"[..]));
    }

    #[test]
    fn arguments_that_would_inject_are_invalid() {
        assert!(check_line("l", "PING\r\nFLUSHALL", 64).is_err());
        assert!(check_line("l", "PING", 64).is_ok());
        assert!(check_path("/health").is_ok());
        for bad in ["health", "/a b", "/a\r\nX: y", "/é", ""] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_export_deadline_bounds_the_timeout() {
        let soon = Instant::now() + Duration::from_millis(300);
        let budget = Budget::new(10_000, Some(soon)).unwrap();
        assert!(budget.by_deadline);
        assert_eq!(
            budget.given,
            Duration::from_millis(270),
            "a tenth left to answer"
        );
        let later = Instant::now() + Duration::from_secs(10);
        let budget = Budget::new(60_000, Some(later)).unwrap();
        assert_eq!(
            budget.given,
            Duration::from_millis(9_900),
            "at most 100 ms left"
        );
        let budget = Budget::new(100, Some(soon)).unwrap();
        assert!(!budget.by_deadline);
        let budget = Budget::new(u64::MAX, None).unwrap();
        assert_eq!(budget.given, MAX_TIMEOUT);
        assert!(Budget::new(0, None).is_err());
    }

    #[test]
    fn quotes_are_one_short_line() {
        let quoted = quote(&b"x\n".repeat(10 << 20));
        assert!(quoted.len() < MAX_QUOTE + 16, "{}", quoted.len());
        assert!(!quoted.contains('\n'));
    }
}
