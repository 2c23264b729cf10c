//! Small protocol helpers for health checks: connect with a timeout, a line
//! dialogue (SMTP, the mail services' text protocols), an HTTP GET.
//!
//! Plugins may connect only to the addresses named by their `address`
//! properties, and may not look names up; [`resolve`] therefore turns a
//! property's `host:port` into socket addresses itself (IP literals and
//! `localhost`), and the agent checks each connect. Every helper takes a
//! [`Deadline`], so a dialogue as a whole fails with a reason before the
//! agent has to cut the call off.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// When a check must be done by.
///
/// ```
/// use std::time::Duration;
/// use warden_sdk::net::Deadline;
/// let deadline = Deadline::after(Duration::from_secs(2));
/// assert!(deadline.left("the banner").is_ok());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// `ms` milliseconds from now.
    ///
    /// ```
    /// let deadline = warden_sdk::net::Deadline::after_ms(3000);
    /// # assert!(deadline.left("x").is_ok());
    /// ```
    pub fn after_ms(ms: u64) -> Deadline {
        Deadline::after(Duration::from_millis(ms))
    }

    /// `duration` from now (a [`crate::Props::duration`], say).
    ///
    /// ```
    /// use std::time::Duration;
    /// let deadline = warden_sdk::net::Deadline::after(Duration::from_millis(3000));
    /// # assert!(deadline.left("x").is_ok());
    /// ```
    pub fn after(duration: Duration) -> Deadline {
        let now = Instant::now();
        // A duration too long to add is as good as none.
        Deadline(
            now.checked_add(duration)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// Time left, or an error naming `what` was still to be done.
    ///
    /// ```
    /// use warden_sdk::net::Deadline;
    /// assert_eq!(Deadline::after_ms(0).left("the banner").unwrap_err(), "timed out before the banner");
    /// ```
    pub fn left(&self, what: &str) -> Result<Duration, String> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(format!("timed out before {what}"))
        } else {
            Ok(left)
        }
    }
}

/// The socket addresses of `host:port` (an IP address, `[v6]:port` or
/// `localhost:port`), without a name lookup.
///
/// ```
/// use warden_sdk::net::resolve;
/// assert_eq!(resolve("127.0.0.1:25")?.len(), 1);
/// assert_eq!(resolve("localhost:25")?.len(), 2); // IPv4 and IPv6
/// assert!(resolve("mail.example:25").unwrap_err().contains("cannot look names up"));
/// # Ok::<(), String>(())
/// ```
pub fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("address {address:?} has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {address:?} has a bad port"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    Err(format!(
        "address {address:?}: plugins cannot look names up; give an IP address or localhost"
    ))
}

/// Connect to `address`, trying each of its socket addresses in turn.
/// Reads and writes on the stream are bounded by `deadline` as it was at
/// connect time; [`Dialogue`] re-bounds each line.
///
/// ```no_run
/// # use warden_sdk::net::{connect, Deadline};
/// // A looks-alive that only asks whether the port accepts connections:
/// connect("127.0.0.1:25", Deadline::after_ms(3000)).map(drop)?;
/// # Ok::<(), String>(())
/// ```
pub fn connect(address: &str, deadline: Deadline) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for addr in resolve(address)? {
        let left = deadline.left(&format!("connecting to {address}"))?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                // Best effort: a runtime without socket timeouts still has
                // the agent's deadline around the whole call.
                let _ = stream.set_read_timeout(Some(left));
                let _ = stream.set_write_timeout(Some(left));
                return Ok(stream);
            }
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// A line-oriented dialogue over TCP (CRLF on the wire, either on read).
///
/// ```no_run
/// # use warden_sdk::net::{Dialogue, Deadline};
/// let mut store = Dialogue::connect("127.0.0.1:7000", Deadline::after_ms(3000))?;
/// store.ask("PING", "PONG")?;
/// let status = store.ask("STATUS", "STATUS ")?;
/// # Ok::<(), String>(())
/// ```
pub struct Dialogue {
    reader: BufReader<TcpStream>,
    deadline: Deadline,
}

impl Dialogue {
    /// Connect to `address` for a dialogue that must end by `deadline`.
    ///
    /// ```no_run
    /// # use warden_sdk::net::{Dialogue, Deadline};
    /// let mut smtp = Dialogue::connect("127.0.0.1:25", Deadline::after_ms(3000))?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn connect(address: &str, deadline: Deadline) -> Result<Dialogue, String> {
        Ok(Dialogue {
            reader: BufReader::new(connect(address, deadline)?),
            deadline,
        })
    }

    /// Send one line; CRLF is added.
    ///
    /// ```no_run
    /// # let mut smtp = warden_sdk::net::Dialogue::connect("127.0.0.1:25", warden_sdk::net::Deadline::after_ms(3000))?;
    /// smtp.send("EHLO warden")?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stream = self.reader.get_mut();
        let _ = stream.set_write_timeout(Some(self.deadline.left("sending")?));
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("sending {line:?}: {e}"))
    }

    /// Read one line, without its line ending. The end of the stream is an
    /// error.
    ///
    /// ```no_run
    /// # let mut peer = warden_sdk::net::Dialogue::connect("127.0.0.1:7000", warden_sdk::net::Deadline::after_ms(3000))?;
    /// let greeting = peer.read_line()?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn read_line(&mut self) -> Result<String, String> {
        let left = self.deadline.left("an answer came")?;
        let _ = self.reader.get_mut().set_read_timeout(Some(left));
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("the peer closed the connection".to_string()),
            Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => Err(format!("reading an answer: {e}")),
        }
    }

    /// Read a reply in the SMTP style (`250-...` lines, then `250 ...`) and
    /// check its code. Returns the lines.
    ///
    /// ```no_run
    /// # let mut smtp = warden_sdk::net::Dialogue::connect("127.0.0.1:25", warden_sdk::net::Deadline::after_ms(3000))?;
    /// smtp.expect_reply("220")?; // the banner
    /// # Ok::<(), String>(())
    /// ```
    pub fn expect_reply(&mut self, code: &str) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            if !line.starts_with(code) {
                return Err(format!("expected {code}, got {line:?}"));
            }
            let more = line.as_bytes().get(code.len()) == Some(&b'-');
            lines.push(line);
            if !more {
                return Ok(lines);
            }
        }
    }

    /// Send `line` and expect a one-line answer starting with `prefix`.
    /// Returns the answer.
    ///
    /// ```no_run
    /// # let mut indexer = warden_sdk::net::Dialogue::connect("127.0.0.1:7001", warden_sdk::net::Deadline::after_ms(3000))?;
    /// let lag = indexer.ask("LAG", "LAG ")?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn ask(&mut self, line: &str, prefix: &str) -> Result<String, String> {
        self.send(line)?;
        let answer = self.read_line()?;
        if answer.starts_with(prefix) {
            Ok(answer)
        } else {
            Err(format!("{line:?} was answered {answer:?}, not {prefix}..."))
        }
    }
}

/// A one-line question and answer on a fresh connection (a Redis `PING`
/// answered `+PONG`, a memcached `version`, ...): connect, send `line`,
/// expect an answer starting with `prefix`, close. Returns the answer.
///
/// ```no_run
/// # use warden_sdk::net::{ask_once, Deadline};
/// ask_once("127.0.0.1:6379", "PING", "+PONG", Deadline::after_ms(2000))?;
/// # Ok::<(), String>(())
/// ```
pub fn ask_once(
    address: &str,
    line: &str,
    prefix: &str,
    deadline: Deadline,
) -> Result<String, String> {
    Dialogue::connect(address, deadline)?.ask(line, prefix)
}

/// The SMTP health dialogue: a 220 banner, EHLO answered 250, QUIT.
///
/// ```no_run
/// # use warden_sdk::net::{smtp_check, Deadline};
/// smtp_check("127.0.0.1:25", Deadline::after_ms(3000))?;
/// # Ok::<(), String>(())
/// ```
pub fn smtp_check(address: &str, deadline: Deadline) -> Result<(), String> {
    let mut smtp = Dialogue::connect(address, deadline)?;
    smtp.expect_reply("220")
        .map_err(|e| format!("banner: {e}"))?;
    smtp.send("EHLO warden")?;
    smtp.expect_reply("250").map_err(|e| format!("EHLO: {e}"))?;
    smtp.send("QUIT")?;
    // A server may close without answering QUIT; the check has passed.
    let _ = smtp.read_line();
    Ok(())
}

/// An HTTP answer: the status and the body (at most `MAX_BODY` bytes).
#[derive(Debug, Clone)]
///
/// ```no_run
/// # use warden_sdk::net::{http_get, Deadline};
/// let answer = http_get("127.0.0.1:8080", "", "/health", Deadline::after_ms(3000))?;
/// if !(200..300).contains(&answer.status) {
///     return Err(format!("GET /health answered {}: {}", answer.status, answer.body));
/// }
/// # Ok::<(), String>(())
/// ```
pub struct HttpResponse {
    /// The status code (`200`).
    pub status: u16,
    /// The body, as text (invalid UTF-8 replaced), cut at [`MAX_BODY`].
    pub body: String,
}

/// The most body an [`http_get`] reads; health checks need little.
///
/// ```
/// assert_eq!(warden_sdk::net::MAX_BODY, 65536);
/// ```
pub const MAX_BODY: u64 = 64 * 1024;

/// `GET path` over HTTP/1.1 with `Connection: close`. `host` is the Host
/// header (the address's host when empty).
///
/// ```no_run
/// # use warden_sdk::net::{http_get, Deadline};
/// let answer = http_get("127.0.0.1:8080", "mail.example", "/health", Deadline::after_ms(3000))?;
/// # Ok::<(), String>(())
/// ```
pub fn http_get(
    address: &str,
    host: &str,
    path: &str,
    deadline: Deadline,
) -> Result<HttpResponse, String> {
    let mut stream = connect(address, deadline)?;
    let host = if host.is_empty() {
        address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address)
    } else {
        host
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warden\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending GET {path}: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| format!("reading the answer to GET {path}: {e}"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP status line: {status_line:?}"))?;
    loop {
        let mut header = String::new();
        let n = reader
            .read_line(&mut header)
            .map_err(|e| format!("reading headers of GET {path}: {e}"))?;
        if n == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut body = Vec::new();
    // The body is a bonus: a check may pass on the status alone.
    let _ = reader.take(MAX_BODY).read_to_end(&mut body);
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_without_lookups() {
        assert_eq!(resolve("127.0.0.1:25").unwrap().len(), 1);
        assert_eq!(resolve("[::1]:25").unwrap().len(), 1);
        assert_eq!(resolve("localhost:25").unwrap().len(), 2);
        assert!(
            resolve("mail.example:25")
                .unwrap_err()
                .contains("cannot look names up")
        );
        assert!(resolve("localhost").is_err());
    }
}
