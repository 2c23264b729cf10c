//! Just enough HTTP/1.1 for `mail-http`: read one request head, write one
//! response, close (`Connection: close`).
//!
//! Why hand-written: the front end answers two GET routes for tests and
//! health checks. Keeping the parser small keeps its limits obvious: a
//! request head is at most 64 KiB and 100 header lines, lines at most 8 KiB.
//! Request bodies are never read (no route takes one).

use std::io::{self, BufRead, Write};

use crate::lineio::{self, ReadLine};

const MAX_LINE: usize = 8192;
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent, e.g. `/mailbox/alice?x=1`.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The target's path, without the query string.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

#[derive(Debug)]
pub enum RequestError {
    /// The client closed before sending a request line.
    Eof,
    /// 431 / 414: too long.
    TooLarge,
    /// 400.
    Malformed(&'static str),
    Io(io::Error),
}

impl From<io::Error> for RequestError {
    fn from(e: io::Error) -> Self {
        RequestError::Io(e)
    }
}

/// Reads a request line and headers.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, RequestError> {
    let mut line = Vec::new();
    let mut total = 0usize;
    // RFC 9112 2.2: ignore at least one empty line before the request line.
    let request_line = loop {
        match lineio::read_line(r, MAX_LINE, &mut line)? {
            ReadLine::Eof => return Err(RequestError::Eof),
            ReadLine::TooLong => return Err(RequestError::TooLarge),
            ReadLine::Line if line.is_empty() && total < 4 => total += 1,
            ReadLine::Line => {
                break String::from_utf8(line.clone())
                    .map_err(|_| RequestError::Malformed("request line is not UTF-8"))?;
            }
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(RequestError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("target must start with /"));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(RequestError::Malformed("only HTTP/1.x is spoken here"));
    }
    let mut headers = Vec::new();
    total = request_line.len();
    loop {
        match lineio::read_line(r, MAX_LINE, &mut line)? {
            ReadLine::Eof => {
                return Err(RequestError::Malformed("connection closed inside the head"));
            }
            ReadLine::TooLong => return Err(RequestError::TooLarge),
            ReadLine::Line if line.is_empty() => break,
            ReadLine::Line => {}
        }
        total += line.len();
        if headers.len() >= MAX_HEADERS || total > MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(RequestError::Malformed("header without a colon"));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(RequestError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A `text/plain` response; a newline is added to the body.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: format!("{body}\n").into_bytes(),
        }
    }

    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes the response; `with_body` false for HEAD.
pub fn write_response<W: Write>(w: &mut W, resp: &Response, with_body: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if with_body {
        w.write_all(&resp.body)?;
    }
    w.flush()
}

/// Appends `s` as a JSON string literal (with quotes) to `out`.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result
/// is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request() {
        let raw = b"\r\nGET /mailbox/alice?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  b \r\n\r\n";
        let req = read_request(&mut &raw[..]).unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/mailbox/alice");
        assert_eq!(
            req.headers,
            [("host".into(), "h".into()), ("x-a".into(), "b".into())]
        );
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / SPDY/3\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
        ] {
            assert!(
                matches!(read_request(&mut &bad[..]), Err(RequestError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            read_request(&mut &b""[..]),
            Err(RequestError::Eof)
        ));
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        json_string("a\"b\\c\r\n\t\u{1}é\u{2028}", &mut s);
        assert_eq!(s, r#""a\"b\\c\r\n\t\u0001é\u2028""#);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
