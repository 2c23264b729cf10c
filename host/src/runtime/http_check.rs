//! `probe.http-check` (contract 0.5.0): an HTTP GET made by the host for a
//! health check, which may keep its connection for the next check of the
//! same address (HTTP/1.1 keep-alive).
//!
//! A fresh TCP connection per check costs the client more kernel CPU than
//! the rest of the check together (docs/benchmarks.md); a kept one makes a
//! check a write and a read.
//!
//! Invariants:
//! - **Every bound of `http-get` holds**: the same grant check and budget
//!   ([`super::probe`]), a head of at most [`MAX_HTTP_HEAD`], no redirect
//!   followed, the path origin-form, a host header a host name or an IP
//!   address (with an optional port) and nothing else, so no line can be
//!   injected.
//! - **At most [`MAX_KEPT`] idle connections per resource, one per
//!   address**: they live in the store's [`KeptConnections`] and close with
//!   it (the instance dropped, a trap, a hot swap). Adding one past the
//!   bound closes the oldest.
//! - **Only a connection whose answer was read to its end is kept**: the
//!   body must have a `Content-Length` of at most [`MAX_KEPT_BODY`] (or be
//!   empty by its status), HTTP/1.1, without `Connection: close` or
//!   `Transfer-Encoding`; it is read whole within the budget. Anything else
//!   (chunked, unknown length, too big, extra bytes) closes the connection.
//! - **A kept connection the server closed is replaced once**: closed or
//!   reset before any byte of the answer, the check is made again on a new
//!   connection within the same budget. A kept connection that stops
//!   answering is the check's `timed-out`, and is closed.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::host_state::HostState;
use super::probe::{MAX_HTTP_HEAD, Probe, check_path, end_of_head, header, parse_status, quote};
use crate::contract::bindings::current::warden::resource::probe::{
    HttpCheckSpec, ProbeError, StatusMatch,
};

/// The most idle connections one resource keeps (one per address).
pub const MAX_KEPT: usize = 4;
/// The largest body read to its end so that its connection can be kept;
/// a larger answer's connection is closed instead.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
/// The longest host header taken (a DNS name is at most 253 bytes).
pub const MAX_HOST_HEADER: usize = 300;

/// The idle connections of one store, by the address the plugin named.
/// Dropped with the store, which closes them.
#[derive(Debug, Default)]
pub(crate) struct KeptConnections {
    /// Oldest first; at most [`MAX_KEPT`], each address at most once.
    idle: Vec<(String, TcpStream)>,
}

impl KeptConnections {
    /// The idle connection to `address`, taken out (it is put back only if
    /// its next answer is read whole).
    fn take(&mut self, address: &str) -> Option<TcpStream> {
        let at = self.idle.iter().position(|(kept, _)| kept == address)?;
        Some(self.idle.remove(at).1)
    }

    /// Keep `stream` as the idle connection to `address`, closing the
    /// oldest when there are too many.
    fn keep(&mut self, address: String, stream: TcpStream) {
        self.idle.retain(|(kept, _)| *kept != address);
        if self.idle.len() >= MAX_KEPT {
            self.idle.remove(0);
        }
        self.idle.push((address, stream));
    }

    /// How many connections are kept (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.len()
    }
}

/// Make the check `check` for the store `state`.
pub(super) async fn run(state: &mut HostState, check: HttpCheckSpec) -> Result<u16, ProbeError> {
    check_path(&check.path)?;
    if let Some(host) = &check.host_header {
        check_host_header(host)?;
    }
    check_expect(check.expect)?;
    let probe = state.probe(check.address.clone(), check.timeout_ms)?;
    let request = request(&check, &probe.address);
    let kept = if check.reuse_connection {
        state.kept.take(&check.address).and_then(still_open)
    } else {
        None
    };
    let answer = match kept {
        Some(stream) => match exchange(&probe, stream, &request).await {
            Ok(answer) => answer,
            Err(Failure::Stale) => fresh_exchange(&probe, &request).await?,
            Err(Failure::Probe(error)) => return Err(error),
        },
        None => fresh_exchange(&probe, &request).await?,
    };
    if check.reuse_connection
        && let Some(stream) = answer.reusable
    {
        state.kept.keep(check.address.clone(), stream);
    }
    judge(
        &probe.address,
        answer.status,
        &answer.status_line,
        check.expect,
    )
}

/// The request of `check`: keep-alive when the connection may be kept.
fn request(check: &HttpCheckSpec, address: &str) -> String {
    let host = check.host_header.as_deref().unwrap_or(address);
    let connection = if check.reuse_connection {
        "keep-alive"
    } else {
        "close"
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warden-probe\r\nAccept: */*\r\n\
         Connection: {connection}\r\n\r\n",
        check.path
    )
}

/// A kept connection, unless the server already closed it (or sent
/// something unasked): one non-blocking read, no wait.
fn still_open(stream: TcpStream) -> Option<TcpStream> {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Some(stream),
        _ => None,
    }
}

/// What one exchange brought: the status and, when its answer was read
/// whole and the server lets it, the connection to keep.
struct Exchanged {
    status: u16,
    status_line: Vec<u8>,
    reusable: Option<TcpStream>,
}

/// Why an exchange failed.
enum Failure {
    /// The connection was closed or reset before any byte of the answer:
    /// a kept connection the server let go.
    Stale,
    /// The check's own failure.
    Probe(ProbeError),
}

impl From<ProbeError> for Failure {
    fn from(error: ProbeError) -> Failure {
        Failure::Probe(error)
    }
}

/// The exchange on a new connection.
async fn fresh_exchange(probe: &Probe, request: &str) -> Result<Exchanged, ProbeError> {
    let stream = probe.connect().await?;
    match exchange(probe, stream, request).await {
        Ok(answer) => Ok(answer),
        Err(Failure::Stale) => Err(ProbeError::Unexpected(format!(
            "{} closed the connection without answering",
            probe.address
        ))),
        Err(Failure::Probe(error)) => Err(error),
    }
}

/// Whether an I/O error is the peer having closed the connection.
fn closed_by_peer(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(err.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

/// Send `request` on `stream`, read the answer's head and, if the
/// connection can be kept, its body.
async fn exchange(
    probe: &Probe,
    mut stream: TcpStream,
    request: &str,
) -> Result<Exchanged, Failure> {
    use tokio::io::AsyncWriteExt;
    match probe.budget.run(stream.write_all(request.as_bytes())).await {
        None => {
            return Err(probe
                .budget
                .timed_out(format!("sending to {}", probe.address))
                .into());
        }
        Some(Err(err)) if closed_by_peer(&err) => return Err(Failure::Stale),
        Some(Err(err)) => {
            return Err(ProbeError::Connect(format!(
                "the connection to {} failed while sending: {err}",
                probe.address
            ))
            .into());
        }
        Some(Ok(())) => {}
    }
    // The first read tells a connection closed meanwhile from an answer.
    let mut chunk = vec![0u8; 2048];
    let first = match probe.budget.run(stream.read(&mut chunk)).await {
        None => {
            return Err(probe
                .budget
                .timed_out(format!(
                    "reading the status line and headers from {} (no byte came)",
                    probe.address
                ))
                .into());
        }
        Some(Ok(0)) => return Err(Failure::Stale),
        Some(Err(err)) if closed_by_peer(&err) => return Err(Failure::Stale),
        Some(Err(err)) => {
            return Err(ProbeError::Connect(format!(
                "the connection to {} failed while reading the status line and headers: {err}",
                probe.address
            ))
            .into());
        }
        Some(Ok(read)) => read,
    };
    chunk.truncate(first);
    // Not HTTP at all (an SSH banner): said at once, not after the close.
    if let Some(line_end) = chunk.iter().position(|&b| b == b'\n') {
        let line = &chunk[..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if parse_status(line).is_none() {
            return Err(not_http(&probe.address, line).into());
        }
    }
    let (answer, end) = probe
        .read_more_until(
            &mut stream,
            chunk,
            MAX_HTTP_HEAD,
            "the status line and headers",
            end_of_head,
        )
        .await?;
    let head = &answer[..end];
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
    let status = parse_status(status_line).ok_or_else(|| not_http(&probe.address, status_line))?;
    let body_start = if answer[end..].starts_with(b"\r\n\r\n") {
        end + 4
    } else {
        end + 2
    };
    let reusable = match kept_body_length(head, status) {
        Some(length) => read_body(probe, stream, &answer[body_start..], length).await,
        None => None,
    };
    Ok(Exchanged {
        status,
        status_line: status_line.to_vec(),
        reusable,
    })
}

/// The error of an answer whose first line is not an HTTP status line.
fn not_http(address: &str, line: &[u8]) -> ProbeError {
    ProbeError::Unexpected(format!(
        "{address} did not answer HTTP/1.x: its first line is {}",
        quote(line)
    ))
}

/// The length of the body to read so that the connection can be kept, or
/// `None` when it cannot be (the server closes it, the length is not
/// given, too big or chunked).
fn kept_body_length(head: &[u8], status: u16) -> Option<usize> {
    if !head.starts_with(b"HTTP/1.1 ") {
        return None;
    }
    let closes = head_lines(head, "connection").any(|value| {
        value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    if closes || header(head, "transfer-encoding").is_some() {
        return None;
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(0);
    }
    let mut lengths = head_lines(head, "content-length");
    let length = lengths.next()?;
    if lengths.any(|other| other != length) {
        return None;
    }
    let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
    (length <= MAX_KEPT_BODY).then_some(length)
}

/// Every value of header `name` (lower case) in `head`.
fn head_lines<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.split(|&b| b == b'\n').skip(1).filter_map(move |line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

/// Read the rest of a body of `length` bytes (`came` of it already) within
/// the budget: the connection, if it ended exactly there.
async fn read_body(
    probe: &Probe,
    mut stream: TcpStream,
    came: &[u8],
    length: usize,
) -> Option<TcpStream> {
    if came.len() > length {
        return None;
    }
    let mut left = length - came.len();
    let mut chunk = [0u8; 4096];
    while left > 0 {
        let take = left.min(chunk.len());
        match probe.budget.run(stream.read(&mut chunk[..take])).await {
            Some(Ok(read)) if read > 0 => left -= read,
            _ => return None,
        }
    }
    Some(stream)
}

/// Whether `status` passes `expect`, as the check's outcome.
fn judge(
    address: &str,
    status: u16,
    status_line: &[u8],
    expect: StatusMatch,
) -> Result<u16, ProbeError> {
    let (passes, expected) = match expect {
        StatusMatch::Exact(wanted) => (status == wanted, format!("status {wanted}")),
        StatusMatch::Class(class) => (
            status / 100 == u16::from(class),
            format!("a {class}xx status"),
        ),
    };
    if passes {
        return Ok(status);
    }
    let redirect = if (300..400).contains(&status) {
        "; redirects are not followed"
    } else {
        ""
    };
    Err(ProbeError::Unexpected(format!(
        "{address} answered {}, expected {expected}{redirect}",
        quote(status_line)
    )))
}

/// Refuse an expectation no status can meet.
fn check_expect(expect: StatusMatch) -> Result<(), ProbeError> {
    match expect {
        StatusMatch::Exact(status) if !(100..=599).contains(&status) => Err(ProbeError::Invalid(
            format!("the expected status {status} is not 100 to 599"),
        )),
        StatusMatch::Class(class) if !(1..=5).contains(&class) => Err(ProbeError::Invalid(
            format!("the expected status class {class} is not 1 to 5 (2 is 2xx)"),
        )),
        _ => Ok(()),
    }
}

/// Refuse a host header that is not a host name or an IP address with an
/// optional port: it reaches the request line by line, so anything else
/// (CR, LF, spaces, a second header) could forge the request.
fn check_host_header(host: &str) -> Result<(), ProbeError> {
    let invalid = |why: &str| {
        Err(ProbeError::Invalid(format!(
            "the host header {} {why}",
            quote(host.as_bytes())
        )))
    };
    if host.len() > MAX_HOST_HEADER {
        return invalid(&format!("is longer than {MAX_HOST_HEADER} bytes"));
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return invalid("opens [ without closing it");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return invalid("holds no IPv6 address between [ and ]");
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return invalid("has something other than :port after ]"),
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port
        && !(port.len() <= 5
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return invalid("has a port that is not 1 to 65535");
    }
    if let Some(name) = name
        && !is_host_name(name)
    {
        return invalid(
            "is not a host name or an IP address (letters, digits, '-' and '.', an optional :port)",
        );
    }
    Ok(())
}

/// A DNS name (labels of letters, digits and `-`, not starting or ending
/// with `-`, 1 to 63 bytes, a trailing dot allowed) or an IPv4 address.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_are_hosts_and_nothing_else() {
        for good in [
            "example.org",
            "example.org:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "a-b.c.",
        ] {
            assert!(check_host_header(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "example.org\r\nX-Injected: 1",
            "example.org\n",
            "a b",
            "-a.org",
            "a..org",
            "a.org:0",
            "a.org:99999",
            "a.org:",
            "[::1",
            "[nothost]:80",
            "[::1]x",
            "a.org/path",
            "user@a.org",
            &"a".repeat(64),
            &"a.".repeat(200),
        ] {
            assert!(
                matches!(check_host_header(bad), Err(ProbeError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expectations_no_status_meets_are_invalid() {
        assert!(check_expect(StatusMatch::Class(2)).is_ok());
        assert!(check_expect(StatusMatch::Exact(204)).is_ok());
        for bad in [
            StatusMatch::Class(0),
            StatusMatch::Class(6),
            StatusMatch::Exact(99),
        ] {
            assert!(check_expect(bad).is_err());
        }
    }

    #[test]
    fn a_status_class_passes_its_class_and_names_it_otherwise() {
        assert_eq!(
            judge("a:1", 204, b"", StatusMatch::Class(2)).ok(),
            Some(204)
        );
        let Err(ProbeError::Unexpected(why)) =
            judge("a:1", 503, b"HTTP/1.1 503 Busy", StatusMatch::Class(2))
        else {
            panic!("503 is not 2xx");
        };
        assert!(why.contains("503") && why.contains("2xx"), "{why}");
    }

    #[test]
    fn only_a_whole_small_body_keeps_the_connection() {
        let kept = |head: &str, status| kept_body_length(head.as_bytes(), status);
        assert_eq!(kept("HTTP/1.1 200 OK\r\nContent-Length: 5", 200), Some(5));
        assert_eq!(kept("HTTP/1.1 204 No\r\n", 204), Some(0));
        assert_eq!(kept("HTTP/1.1 200 OK\r\n", 200), None, "unknown length");
        assert_eq!(
            kept("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", 200),
            None
        );
        assert_eq!(
            kept("HTTP/1.1 200 OK\r\nContent-Length: 70000", 200),
            None,
            "too big"
        );
        assert_eq!(
            kept(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Close",
                200
            ),
            None
        );
        assert_eq!(kept("HTTP/1.0 200 OK\r\nContent-Length: 5", 200), None);
        assert_eq!(
            kept(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
                200
            ),
            None,
            "two lengths"
        );
        assert_eq!(kept("HTTP/1.1 200 OK\r\nContent-Length: -1", 200), None);
    }

    #[tokio::test]
    async fn at_most_a_few_connections_are_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let mut kept = KeptConnections::default();
        for i in 0..MAX_KEPT + 2 {
            let stream = TcpStream::connect(at).await.unwrap();
            kept.keep(format!("a{i}:1"), stream);
        }
        assert_eq!(kept.len(), MAX_KEPT);
        assert!(kept.take("a0:1").is_none(), "the oldest went first");
        assert!(kept.take(&format!("a{}:1", MAX_KEPT + 1)).is_some());
        assert!(kept.take(&format!("a{}:1", MAX_KEPT + 1)).is_none());
    }
}
