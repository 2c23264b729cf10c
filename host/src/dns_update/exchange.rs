//! One request, one answer, by a deadline: over UDP (sent again every
//! [`RESEND_AFTER`] while none comes), then over TCP when the UDP answer is
//! truncated. Every answer is bounded by [`MAX_ANSWER_BYTES`]; datagrams
//! that are not an answer to this request (another id, not a response, too
//! short to be one) are ignored, as a resolver ignores them, and named in
//! the error if nothing else arrives.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::{DnsError, MAX_ANSWER_BYTES};

/// How long to wait for a UDP answer before sending the request again.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// The DNS header's length, and where its flags are.
const HEADER_BYTES: usize = 12;
/// QR (a response) in the header's third byte.
const QR_BIT: u8 = 0x80;
/// TC (truncated) in the header's third byte.
const TC_BIT: u8 = 0x02;

/// The server and the request in hand, for errors.
pub(crate) struct Exchange<'a> {
    pub server: SocketAddr,
    pub operation: &'a str,
    pub deadline: Instant,
    pub started: Instant,
}

impl Exchange<'_> {
    /// The answer's bytes, whose id is `id` and which is a response.
    pub(crate) async fn run(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let answer = self.udp(request, id).await?;
        if answer[2] & TC_BIT != 0 {
            return self.tcp(request, id).await;
        }
        Ok(answer)
    }

    async fn udp(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| self.unreachable(format!("no UDP socket: {e}")))?;
        // Connected: the kernel drops datagrams from any other address, and
        // an ICMP port unreachable comes back as ECONNREFUSED.
        socket
            .connect(self.server)
            .await
            .map_err(|e| self.unreachable(format!("UDP: {e}")))?;
        let mut buffer = vec![0u8; MAX_ANSWER_BYTES + 1];
        let mut ignored = Ignored::default();
        loop {
            match timeout_at(self.deadline, socket.send(request)).await {
                Err(_) => return Err(self.no_answer(&ignored)),
                Ok(Err(e)) => return Err(self.udp_error(e)),
                Ok(Ok(_)) => {}
            }
            let resend_at = (Instant::now() + RESEND_AFTER).min(self.deadline);
            loop {
                let size = match timeout_at(resend_at, socket.recv(&mut buffer)).await {
                    Err(_) if resend_at >= self.deadline => {
                        return Err(self.no_answer(&ignored));
                    }
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.udp_error(e)),
                    Ok(Ok(size)) => size,
                };
                let datagram = &buffer[..size];
                if let Some(why) = not_an_answer(datagram, id) {
                    ignored.note(why);
                    continue;
                }
                if size > MAX_ANSWER_BYTES {
                    return Err(self.oversized(size));
                }
                return Ok(datagram.to_vec());
            }
        }
    }

    /// RFC 1035 4.2.2: each message preceded by its length in two bytes.
    async fn tcp(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let over_tcp = |what: String| format!("over TCP (the UDP answer was truncated): {what}");
        let mut stream = match timeout_at(self.deadline, TcpStream::connect(self.server)).await {
            Err(_) => return Err(self.no_answer(&Ignored::default())),
            Ok(Err(e)) => return Err(self.unreachable(over_tcp(e.to_string()))),
            Ok(Ok(stream)) => stream,
        };
        let length = u16::try_from(request.len()).map_err(|_| DnsError::Request {
            operation: self.operation.to_string(),
            reason: format!("{} bytes, more than a DNS message can have", request.len()),
        })?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(request);
        let exchange = async {
            stream.write_all(&framed).await?;
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await?;
            let size = usize::from(u16::from_be_bytes(prefix));
            if size > MAX_ANSWER_BYTES {
                return Ok(Err(size));
            }
            let mut answer = vec![0u8; size];
            stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(Ok(answer))
        };
        let answer = match timeout_at(self.deadline, exchange).await {
            Err(_) => return Err(self.no_answer(&Ignored::default())),
            Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err(self.malformed(over_tcp(
                    "the server closed the connection before a whole answer".to_string(),
                )));
            }
            Ok(Err(e)) => return Err(self.unreachable(over_tcp(e.to_string()))),
            Ok(Ok(Err(size))) => return Err(self.oversized(size)),
            Ok(Ok(Ok(answer))) => answer,
        };
        if let Some(why) = not_an_answer(&answer, id) {
            return Err(self.malformed(over_tcp(why)));
        }
        Ok(answer)
    }

    fn unreachable(&self, detail: String) -> DnsError {
        DnsError::Unreachable {
            server: self.server,
            operation: self.operation.to_string(),
            detail,
        }
    }

    fn udp_error(&self, error: std::io::Error) -> DnsError {
        let detail = if error.kind() == ErrorKind::ConnectionRefused {
            "nothing listens there (UDP port unreachable)".to_string()
        } else {
            format!("UDP: {error}")
        };
        self.unreachable(detail)
    }

    fn no_answer(&self, ignored: &Ignored) -> DnsError {
        DnsError::NoAnswer {
            server: self.server,
            operation: self.operation.to_string(),
            waited_ms: self.started.elapsed().as_millis(),
            ignored: ignored.summary(),
        }
    }

    fn oversized(&self, size: usize) -> DnsError {
        DnsError::Oversized {
            server: self.server,
            operation: self.operation.to_string(),
            size,
            limit: MAX_ANSWER_BYTES,
        }
    }

    pub(crate) fn malformed(&self, reason: String) -> DnsError {
        DnsError::Malformed {
            server: self.server,
            operation: self.operation.to_string(),
            reason,
        }
    }
}

/// Why `datagram` is no answer to request `id`, if it is not.
fn not_an_answer(datagram: &[u8], id: u16) -> Option<String> {
    if datagram.len() < HEADER_BYTES {
        return Some(format!(
            "{} bytes, shorter than a DNS header",
            datagram.len()
        ));
    }
    let their_id = u16::from_be_bytes([datagram[0], datagram[1]]);
    if their_id != id {
        return Some(format!(
            "a message with id {their_id}, not the request's {id}"
        ));
    }
    if datagram[2] & QR_BIT == 0 {
        return Some("a message that is not a response".to_string());
    }
    None
}

/// What arrived that was not an answer: how many, and the last one.
#[derive(Default)]
struct Ignored {
    count: usize,
    last: Option<String>,
}

impl Ignored {
    fn note(&mut self, why: String) {
        self.count += 1;
        self.last = Some(why);
    }

    fn summary(&self) -> String {
        match &self.last {
            None => String::new(),
            Some(last) => format!(
                " (ignored {} datagram{} that answered nothing; the last: {last})",
                self.count,
                if self.count == 1 { "" } else { "s" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_responses_with_the_request_id_are_answers() {
        let mut header = [0u8; 12];
        header[0..2].copy_from_slice(&7u16.to_be_bytes());
        assert!(not_an_answer(&header, 7).is_some(), "a query is no answer");
        header[2] |= QR_BIT;
        assert_eq!(not_an_answer(&header, 7), None);
        assert!(not_an_answer(&header, 8).unwrap().contains("id 7"));
        assert!(not_an_answer(&header[..5], 7).unwrap().contains("5 bytes"));
    }
}
