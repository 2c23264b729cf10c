//! A client for the store's line protocol (see README.md, "mail-store").
//!
//! Used by SMTP (PUT), HTTP (GET), the MTA (PUT) and the indexer (SEQ,
//! SINCE). Errors are split the way callers must react to them:
//! [`ClientError::Unavailable`] is temporary (retry later: SMTP says 451, the
//! MTA keeps the message queued, HTTP says 502), [`ClientError::Rejected`]
//! is the store refusing this request (permanent), and
//! [`ClientError::Protocol`] is a reply that makes no sense (treated as
//! temporary, since a restarted store may answer properly).

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::lineio::{self, ReadLine};
use crate::wal::MAX_BODY;

const MAX_REPLY_LINE: usize = 4096;

#[derive(Debug)]
pub enum ClientError {
    /// Could not connect, or the connection failed midway.
    Unavailable(String),
    /// The store answered `ERR <reason>`.
    Rejected(String),
    /// The store answered something this client does not understand.
    Protocol(String),
}

impl ClientError {
    pub fn is_temporary(&self) -> bool {
        !matches!(self, ClientError::Rejected(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            ClientError::Rejected(m) => write!(f, "store refused: {m}"),
            ClientError::Protocol(m) => write!(f, "store protocol error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Where the store is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct StoreClient {
    addr: SocketAddr,
    timeout: Duration,
}

/// A store message as returned by GET (mailbox = the one asked for) or SINCE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub seq: u64,
    pub mailbox: String,
    pub body: Vec<u8>,
}

/// The store's STATUS reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub clean: bool,
    pub records: u64,
    pub seq: u64,
}

impl StoreClient {
    /// `timeout` bounds the connect and every read and write.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        StoreClient { addr, timeout }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connect(&self) -> Result<Conn, ClientError> {
        let unavailable = |e: io::Error| ClientError::Unavailable(format!("{}: {e}", self.addr));
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(unavailable)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        let _ = stream.set_nodelay(true);
        let reader = stream.try_clone().map_err(unavailable)?;
        Ok(Conn {
            addr: self.addr,
            r: BufReader::new(reader),
            w: BufWriter::new(stream),
            line: Vec::new(),
        })
    }
}

/// One open connection; requests on it are answered in order.
pub struct Conn {
    addr: SocketAddr,
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    fn io(&self, e: io::Error) -> ClientError {
        ClientError::Unavailable(format!("{}: {e}", self.addr))
    }

    fn send(&mut self, head: &str, body: Option<&[u8]>) -> Result<(), ClientError> {
        let r = (|| {
            self.w.write_all(head.as_bytes())?;
            self.w.write_all(b"\n")?;
            if let Some(b) = body {
                self.w.write_all(b)?;
            }
            self.w.flush()
        })();
        r.map_err(|e| self.io(e))
    }

    /// Reads one reply line; `ERR ...` becomes [`ClientError::Rejected`],
    /// `UNAVAILABLE ...` [`ClientError::Unavailable`].
    fn reply(&mut self) -> Result<String, ClientError> {
        match lineio::read_line(&mut self.r, MAX_REPLY_LINE, &mut self.line) {
            Ok(ReadLine::Line) => {}
            Ok(ReadLine::TooLong) => {
                return Err(ClientError::Protocol("reply line too long".into()));
            }
            Ok(ReadLine::Eof) => {
                return Err(self.io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the reply",
                )));
            }
            Err(e) => return Err(self.io(e)),
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if let Some(rest) = text.strip_prefix("UNAVAILABLE") {
            // Not this copy, not now (a passive or deposed copy, a sync
            // write no passive confirmed in time): try again later.
            return Err(ClientError::Unavailable(format!(
                "{}: {}",
                self.addr,
                rest.trim()
            )));
        }
        match text.strip_prefix("ERR") {
            Some(rest) => Err(ClientError::Rejected(rest.trim().to_string())),
            None => Ok(text),
        }
    }

    fn expect(&mut self, word: &str) -> Result<Vec<String>, ClientError> {
        let line = self.reply()?;
        let mut parts = line.split_ascii_whitespace();
        if parts.next() != Some(word) {
            return Err(ClientError::Protocol(format!(
                "expected {word}, got {line:?}"
            )));
        }
        Ok(parts.map(str::to_string).collect())
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.send("PING", None)?;
        self.expect("PONG").map(|_| ())
    }

    /// Stores one message; returns its seq once the store has fsync'ed it.
    pub fn put(&mut self, mailbox: &str, body: &[u8]) -> Result<u64, ClientError> {
        self.send(&format!("PUT {mailbox} {}", body.len()), Some(body))?;
        let words = self.expect("OK")?;
        one_number(&words, "OK")
    }

    pub fn seq(&mut self) -> Result<u64, ClientError> {
        self.send("SEQ", None)?;
        let words = self.expect("SEQ")?;
        one_number(&words, "SEQ")
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        self.send("STATUS", None)?;
        let words = self.expect("STATUS")?;
        let field = |name: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| ClientError::Protocol(format!("STATUS without {name}")))
        };
        let num = |name: &str| {
            field(name)?
                .parse::<u64>()
                .map_err(|_| ClientError::Protocol(format!("STATUS {name} is not a number")))
        };
        Ok(Status {
            clean: field("clean")? == "true",
            records: num("records")?,
            seq: num("seq")?,
        })
    }

    /// All messages of `mailbox`, oldest first.
    pub fn get(&mut self, mailbox: &str) -> Result<Vec<Message>, ClientError> {
        self.send(&format!("GET {mailbox}"), None)?;
        self.messages(Some(mailbox))
    }

    /// Messages with seq > `seq`, oldest first, at most `max` if given.
    pub fn since(&mut self, seq: u64, max: Option<usize>) -> Result<Vec<Message>, ClientError> {
        let cmd = match max {
            Some(m) => format!("SINCE {seq} {m}"),
            None => format!("SINCE {seq}"),
        };
        self.send(&cmd, None)?;
        self.messages(None)
    }

    /// Reads `MSGS n` and n messages. With `mailbox` given the headers are
    /// `<seq> <len>` (GET), otherwise `<seq> <mailbox> <len>` (SINCE).
    fn messages(&mut self, mailbox: Option<&str>) -> Result<Vec<Message>, ClientError> {
        let words = self.expect("MSGS")?;
        let n = one_number(&words, "MSGS")?;
        let mut out = Vec::new();
        for _ in 0..n {
            let head = self.reply()?;
            let parts: Vec<&str> = head.split_ascii_whitespace().collect();
            let (seq, name, len) = match (mailbox, parts.as_slice()) {
                (Some(m), [seq, len]) => (*seq, m, *len),
                (None, [seq, m, len]) => (*seq, *m, *len),
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "bad message header {head:?}"
                    )));
                }
            };
            let bad = || ClientError::Protocol(format!("bad message header {head:?}"));
            let seq: u64 = seq.parse().map_err(|_| bad())?;
            let len: usize = len.parse().map_err(|_| bad())?;
            if len > MAX_BODY {
                return Err(bad());
            }
            let mut body = vec![0; len + 1];
            self.r.read_exact(&mut body).map_err(|e| self.io(e))?;
            if body.pop() != Some(b'\n') {
                return Err(ClientError::Protocol(
                    "message body not followed by a newline".into(),
                ));
            }
            out.push(Message {
                seq,
                mailbox: name.to_string(),
                body,
            });
        }
        Ok(out)
    }
}

fn one_number(words: &[String], what: &str) -> Result<u64, ClientError> {
    match words {
        [n] => n
            .parse()
            .map_err(|_| ClientError::Protocol(format!("{what} {n}: not a number"))),
        _ => Err(ClientError::Protocol(format!(
            "{what} expects one number, got {words:?}"
        ))),
    }
}
