//! Reading one protocol line with a length limit.
//!
//! Why not `BufRead::read_line`: it grows its buffer without bound, so one
//! client that never sends a newline could make a service allocate until it
//! dies. Every line protocol here (store, indexer, SMTP, HTTP) reads through
//! [`read_line`], which stops keeping bytes after `max` and reports
//! [`ReadLine::TooLong`] once the line finally ends. CRLF and bare LF both end
//! a line; neither is included in the result.

use std::io::{self, BufRead};

#[derive(Debug, PartialEq, Eq)]
pub enum ReadLine {
    /// A complete line is in the buffer (terminator stripped).
    Line,
    /// The line was longer than `max`; it was read and thrown away.
    TooLong,
    /// The peer closed the connection (a partial last line is discarded).
    Eof,
}

/// Reads one line into `out` (cleared first).
pub fn read_line<R: BufRead + ?Sized>(
    r: &mut R,
    max: usize,
    out: &mut Vec<u8>,
) -> io::Result<ReadLine> {
    out.clear();
    let mut too_long = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(ReadLine::Eof);
        }
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            // `max + 1` leaves room for the CR of a CRLF.
            if out.len() + chunk.len() > max + 1 {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if done {
            break;
        }
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    if too_long || out.len() > max {
        out.clear();
        return Ok(ReadLine::TooLong);
    }
    Ok(ReadLine::Line)
}

/// Is this error a read or write timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`)?
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Is this the ordinary end of a connection (peer went away), not worth a log line?
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn lines(input: &[u8], max: usize) -> Vec<(ReadLine, Vec<u8>)> {
        // A tiny buffer makes lines straddle refills.
        let mut r = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut all = Vec::new();
        loop {
            let s = read_line(&mut r, max, &mut out).unwrap();
            let eof = s == ReadLine::Eof;
            all.push((s, out.clone()));
            if eof {
                return all;
            }
        }
    }

    #[test]
    fn crlf_and_lf_and_limits() {
        let got = lines(b"PING\r\nSEQ\nabcdefghij\nok\npartial", 5);
        assert_eq!(
            got,
            vec![
                (ReadLine::Line, b"PING".to_vec()),
                (ReadLine::Line, b"SEQ".to_vec()),
                (ReadLine::TooLong, vec![]),
                (ReadLine::Line, b"ok".to_vec()),
                (ReadLine::Eof, vec![]),
            ]
        );
        // Exactly max bytes plus CRLF is fine; max + 1 is not.
        assert_eq!(
            lines(b"12345\r\n", 5)[0],
            (ReadLine::Line, b"12345".to_vec())
        );
        assert_eq!(lines(b"123456\r\n", 5)[0].0, ReadLine::TooLong);
        assert_eq!(lines(b"\n", 5)[0], (ReadLine::Line, vec![]));
    }
}
