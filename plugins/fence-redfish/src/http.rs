//! A small HTTP/1.1 client over the socket the agent grants: one request
//! per connection (`Connection: close`), every answer bounded in size and
//! time, so a hostile or broken BMC costs a clear error, not the call.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::Device;

/// The most a status line and headers may take.
const MAX_HEAD: usize = 16 * 1024;
/// The most a body may take: a ComputerSystem is a few KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// What the device answered.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The socket addresses of `host:port` without a name lookup (an IP
/// address, `[v6]:port` or `localhost:port`): a plugin may not look
/// names up.
pub fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has no port (expected ip:port)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{address:?} has a bad port"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    Err(format!(
        "{address:?}: a fence type cannot look names up; give an IP address or localhost"
    ))
}

/// Up to 200 characters of `body`, on one line, for an error message.
pub fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(": {}", text.trim())
}

fn left(deadline: Instant, what: &str) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(format!("timed out {what}"))
    } else {
        Ok(left)
    }
}

fn connect(device: &Device, deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for addr in resolve(&device.address)? {
        let wait = left(deadline, "connecting")?;
        match TcpStream::connect_timeout(&addr, wait) {
            // On wasip2 a refused connect may show only at the first use:
            // peek with a zero-length write to say so here.
            Ok(mut stream) => match stream.write(&[]) {
                Ok(_) => return Ok(stream),
                Err(e) => last = format!("cannot connect to {addr} (refused or unreachable): {e}"),
            },
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// One request; the answer's status and body (de-chunked), or why there
/// is none.
pub fn request(
    device: &Device,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    let deadline = Instant::now() + Duration::from_millis(device.timeout_ms);
    let mut stream = connect(device, deadline)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
         User-Agent: warden-fence-redfish\r\nConnection: close\r\n",
        device.address
    );
    if !device.username.is_empty() {
        let credentials = format!("{}:{}", device.username, device.password);
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(credentials.as_bytes())
        ));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let _ = stream.set_write_timeout(Some(left(deadline, "sending the request")?));
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    read_answer(&mut stream, deadline)
}

/// Read the answer: the head (at most `MAX_HEAD`), then the body by its
/// length, by chunks, or to the end of the stream, at most `MAX_BODY`.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> Result<Answer, String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(format!(
                "the answer's head is longer than {MAX_HEAD} bytes; cut off"
            ));
        }
        let n = read_some(stream, &mut chunk, deadline, "the answer's head")?;
        if n == 0 {
            return Err(if buffer.is_empty() {
                "the BMC closed the connection without answering".to_string()
            } else {
                "the BMC closed the connection in the middle of the answer's head".to_string()
            });
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "the answer is not HTTP (it starts {:?})",
                status_line.chars().take(60).collect::<String>()
            )
        })?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let length = match header("content-length") {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| format!("the answer's Content-Length {text:?} is not a number"))?,
        ),
        None => None,
    };
    if length.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(format!(
            "the answer's body would be {} bytes, more than the {MAX_BODY} allowed; not read",
            length.unwrap_or_default()
        ));
    }
    let chunked = header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    // Within MAX_BODY from here on.
    let length = length.map(|n| n as usize);
    let mut body = buffer.split_off(head_end + 4);
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    loop {
        if no_body || length.is_some_and(|n| body.len() >= n) {
            break;
        }
        if chunked && find(&body, b"0\r\n\r\n").is_some() {
            break;
        }
        if body.len() > MAX_BODY * 2 {
            return Err(format!(
                "the answer's body is longer than {MAX_BODY} bytes; cut off"
            ));
        }
        let n = read_some(stream, &mut chunk, deadline, "the answer's body")?;
        if n == 0 {
            if let Some(n) = length {
                return Err(format!(
                    "the BMC closed the connection after {} of {n} bytes of the body",
                    body.len()
                ));
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if no_body {
        body.clear();
    }
    if let Some(n) = length {
        body.truncate(n);
    }
    if chunked {
        body = dechunk(&body)?;
    }
    if body.len() > MAX_BODY {
        return Err(format!(
            "the answer's body is longer than {MAX_BODY} bytes; cut off"
        ));
    }
    Ok(Answer { status, body })
}

fn read_some(
    stream: &mut TcpStream,
    into: &mut [u8],
    deadline: Instant,
    what: &str,
) -> Result<usize, String> {
    let wait = left(deadline, &format!("waiting for {what}"))?;
    let _ = stream.set_read_timeout(Some(wait));
    match stream.read(into) {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("timed out waiting for {what}"))
        }
        Err(e) => Err(format!("reading {what}: {e}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body of a chunked answer.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n")
            .ok_or_else(|| "a chunk of the answer has no size line".to_string())?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("a chunk's size {size_text:?} is not hexadecimal"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size > MAX_BODY || raw.len() < size {
            return Err("a chunk of the answer is cut short or too large".to_string());
        }
        body.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

/// Standard base64 (RFC 4648), for basic authentication.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b"admin:password"), "YWRtaW46cGFzc3dvcmQ=");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
