//! Clients of the mail services and of the servers the mail types run
//! (examples/mail-services, aiosmtpd, nginx): an SMTP delivery, an HTTP
//! GET, a one-line request. Shared by the mail, Exchange and demo tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A whole SMTP dialogue delivering `text` to `mailbox`.
pub fn smtp_send(address: &str, mailbox: &str, text: &str) {
    if let Err(why) = try_smtp_send(address, mailbox, text) {
        panic!("sending to {mailbox} over {address}: {why}");
    }
}

/// One SMTP reply (`250-...` lines, then `250 ...`) with the code `code`.
pub fn smtp_reply(reader: &mut impl BufRead, code: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(format!("closed while waiting for {code}")),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the {code} reply: {e}")),
        }
        if !line.starts_with(code) {
            return Err(format!("wanted {code}, got {line:?}"));
        }
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.trim_end().to_string());
        if !more {
            return Ok(lines);
        }
    }
}

/// Like [`smtp_send`], but a refusal or a broken connection is an error:
/// `Ok` means the server acknowledged the message (250 after the data).
pub fn try_smtp_send(address: &str, mailbox: &str, text: &str) -> Result<(), String> {
    let stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    smtp_reply(&mut reader, "220")?;
    for (line, code) in [
        ("EHLO test".to_string(), "250"),
        ("MAIL FROM:<test@example.com>".to_string(), "250"),
        (format!("RCPT TO:<{mailbox}@example.com>"), "250"),
        ("DATA".to_string(), "354"),
        (format!("Subject: test\r\n\r\n{text}\r\n."), "250"),
    ] {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("sending {line:?}: {e}"))?;
        smtp_reply(&mut reader, code)?;
    }
    // Acknowledged; how the connection ends does not change that.
    let _ = writer.write_all(b"QUIT\r\n");
    let _ = smtp_reply(&mut reader, "221");
    Ok(())
}

/// The greeting part of an SMTP dialogue: the 220 banner, the reply to
/// EHLO (its lines), and QUIT answered 221.
pub fn smtp_ehlo(address: &str) -> Result<Vec<String>, String> {
    let stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    smtp_reply(&mut reader, "220")?;
    writer
        .write_all(b"EHLO test\r\n")
        .map_err(|e| e.to_string())?;
    let ehlo = smtp_reply(&mut reader, "250")?;
    writer.write_all(b"QUIT\r\n").map_err(|e| e.to_string())?;
    smtp_reply(&mut reader, "221")?;
    Ok(ehlo)
}

/// GET `path`; the whole response, or None if nothing answered.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    let addr = address.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// One request line, one reply line.
pub fn ask(address: &str, request: &str) -> String {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writeln!(writer, "{request}").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}
