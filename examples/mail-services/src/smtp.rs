//! The SMTP server side shared by `mail-smtp` and `mail-mta` (an RFC 5321
//! subset).
//!
//! The two differ only in what "accepting" a message means, so the session
//! takes a [`Deliver`]: `mail-smtp` writes through to the store (one PUT per
//! recipient) and `mail-mta` fsyncs the message into its queue. Either way
//! the client gets `250` only once the message is durable somewhere, and
//! `451` (try again later) if it is not: SMTP's retry does the rest.
//!
//! Supported: EHLO, HELO, MAIL FROM (with SIZE= and BODY= parameters),
//! RCPT TO, DATA (with dot-unstuffing), RSET, NOOP, VRFY (252), HELP, QUIT.
//! Not supported (502): EXPN, STARTTLS, AUTH, BDAT and anything else known
//! to SMTP. Unknown commands get 500. A session that makes too many errors
//! is closed with 421, as is one idle past its timeout.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::lineio::{self, ReadLine};
use crate::mailbox;
use crate::server;

/// Longest command line accepted (RFC 5321 says 512; be lenient).
const MAX_COMMAND_LINE: usize = 4096;
/// Longest text line inside DATA before the message is refused as too big.
const MAX_DATA_LINE: usize = 1024 * 1024;

/// What the server says and enforces.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shown in the banner and the EHLO reply.
    pub hostname: String,
    /// The banner's product word: `warden-mail` or `warden-mta`.
    pub product: &'static str,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub idle_timeout: Duration,
    /// Errors (5xx replies) tolerated before the session is closed.
    pub max_errors: usize,
}

impl Config {
    pub fn new(hostname: String, product: &'static str) -> Self {
        Config {
            hostname,
            product,
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 100,
            idle_timeout: Duration::from_secs(300),
            max_errors: 20,
        }
    }
}

/// An accepted message: envelope sender, recipient mailboxes (deduplicated,
/// lowercase) and the body in wire form (CRLF line ends, unstuffed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub mailboxes: Vec<String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// 451: the client should try again later.
    Temporary(String),
    /// 554: the message will never be accepted as it is.
    Permanent(String),
}

/// Makes an accepted message durable. Returns the id for `250 OK queued as <id>`.
pub trait Deliver: Send + Sync {
    fn deliver(&self, envelope: &Envelope) -> Result<String, DeliveryError>;
}

/// Serves SMTP on `listener` forever.
pub fn serve(listener: TcpListener, config: Config, deliver: Arc<dyn Deliver>) -> ! {
    let config = Arc::new(config);
    server::serve(
        listener,
        b"421 4.3.2 too many connections, try again later\r\n",
        move |stream, peer| {
            let _ = stream.set_read_timeout(Some(config.idle_timeout));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
            let reader = match stream.try_clone() {
                Ok(r) => BufReader::new(r),
                Err(e) => {
                    log!("smtp {peer}: {e}");
                    return;
                }
            };
            let result = session(
                reader,
                BufWriter::new(stream),
                &config,
                &*deliver,
                &peer.to_string(),
            );
            if let Err(e) = result
                && !lineio::is_disconnect(&e)
            {
                log!("smtp {peer}: session ended: {e}");
            }
        },
    )
}

/// A reply: code and one or more text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

fn reply(code: u16, text: impl Into<String>) -> Reply {
    Reply {
        code,
        lines: vec![text.into()],
    }
}

fn write_reply<W: Write>(w: &mut W, r: &Reply) -> io::Result<()> {
    for (i, line) in r.lines.iter().enumerate() {
        let sep = if i + 1 == r.lines.len() { ' ' } else { '-' };
        write!(w, "{}{sep}{line}\r\n", r.code)?;
    }
    w.flush()
}

enum Step {
    Reply(Reply),
    Data,
    Quit,
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    mailboxes: Vec<String>,
}

/// Runs one SMTP session to its end. `Err` only for I/O failures.
pub fn session<R: BufRead, W: Write>(
    mut r: R,
    mut w: W,
    config: &Config,
    deliver: &dyn Deliver,
    peer: &str,
) -> io::Result<()> {
    write_reply(
        &mut w,
        &reply(220, format!("{} ESMTP {}", config.hostname, config.product)),
    )?;
    let mut greeted = false;
    let mut tx = Transaction::default();
    let mut errors = 0usize;
    let mut line = Vec::new();
    loop {
        let read = match lineio::read_line(&mut r, MAX_COMMAND_LINE, &mut line) {
            Ok(s) => s,
            Err(e) if lineio::is_timeout(&e) => {
                let bye = reply(
                    421,
                    format!("4.4.2 {} idle timeout, closing", config.hostname),
                );
                return write_reply(&mut w, &bye);
            }
            Err(e) => return Err(e),
        };
        let step = match read {
            ReadLine::Eof => return Ok(()),
            ReadLine::TooLong => Step::Reply(reply(500, "5.5.6 line too long")),
            ReadLine::Line => match std::str::from_utf8(&line) {
                Ok(text) => command(text, config, &mut greeted, &mut tx),
                Err(_) => Step::Reply(reply(500, "5.5.2 command is not ASCII")),
            },
        };
        let out = match step {
            Step::Quit => {
                return write_reply(
                    &mut w,
                    &reply(221, format!("2.0.0 {} closing", config.hostname)),
                );
            }
            Step::Reply(rep) => rep,
            Step::Data => {
                write_reply(
                    &mut w,
                    &reply(354, "start mail input; end with <CRLF>.<CRLF>"),
                )?;
                let data = match read_data(&mut r, config.max_message_bytes) {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok(()), // client went away mid-message: nothing accepted
                    Err(e) if lineio::is_timeout(&e) => {
                        let bye = reply(
                            421,
                            format!("4.4.2 {} timeout in DATA, closing", config.hostname),
                        );
                        return write_reply(&mut w, &bye);
                    }
                    Err(e) => return Err(e),
                };
                let tx = std::mem::take(&mut tx);
                finish_data(data, tx, deliver, peer)
            }
        };
        if out.code >= 500 {
            errors += 1;
        }
        write_reply(&mut w, &out)?;
        if errors >= config.max_errors {
            let bye = reply(
                421,
                format!("4.7.0 {} too many errors, closing", config.hostname),
            );
            return write_reply(&mut w, &bye);
        }
    }
}

fn finish_data(data: Data, tx: Transaction, deliver: &dyn Deliver, peer: &str) -> Reply {
    let body = match data {
        Data::TooBig => return reply(552, "5.3.4 message exceeds the maximum size"),
        Data::Body(b) => b,
    };
    let envelope = Envelope {
        from: tx.from.unwrap_or_default(),
        mailboxes: tx.mailboxes,
        body,
    };
    match deliver.deliver(&envelope) {
        Ok(id) => {
            log!(
                "accepted from <{}> via {peer} for {} ({} bytes) as {id}",
                envelope.from,
                envelope.mailboxes.join(","),
                envelope.body.len()
            );
            reply(250, format!("OK queued as {id}"))
        }
        Err(DeliveryError::Temporary(why)) => {
            log!(
                "deferred a message from <{}> via {peer}: {why}",
                envelope.from
            );
            reply(451, format!("4.3.0 {why}"))
        }
        Err(DeliveryError::Permanent(why)) => {
            log!(
                "rejected a message from <{}> via {peer}: {why}",
                envelope.from
            );
            reply(554, format!("5.3.0 {why}"))
        }
    }
}

fn command(line: &str, config: &Config, greeted: &mut bool, tx: &mut Transaction) -> Step {
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_arg = |ok: Reply| {
        if arg.is_empty() {
            Step::Reply(ok)
        } else {
            Step::Reply(reply(501, format!("5.5.4 {verb} takes no arguments")))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                return Step::Reply(reply(501, format!("5.5.4 syntax: {verb} <your domain>")));
            }
            *greeted = true;
            *tx = Transaction::default();
            if verb == "HELO" {
                return Step::Reply(reply(250, config.hostname.clone()));
            }
            Step::Reply(Reply {
                code: 250,
                lines: vec![
                    config.hostname.clone(),
                    format!("SIZE {}", config.max_message_bytes),
                    "8BITMIME".into(),
                ],
            })
        }
        "MAIL" => Step::Reply(mail_from(arg, config, *greeted, tx)),
        "RCPT" => Step::Reply(rcpt_to(arg, config, tx)),
        "DATA" => {
            if !arg.is_empty() {
                Step::Reply(reply(501, "5.5.4 DATA takes no arguments"))
            } else if tx.from.is_none() {
                Step::Reply(reply(503, "5.5.1 need MAIL before DATA"))
            } else if tx.mailboxes.is_empty() {
                Step::Reply(reply(503, "5.5.1 need RCPT before DATA"))
            } else {
                Step::Data
            }
        }
        "RSET" => {
            let r = no_arg(reply(250, "2.0.0 OK"));
            if matches!(r, Step::Reply(Reply { code: 250, .. })) {
                *tx = Transaction::default();
            }
            r
        }
        "NOOP" => Step::Reply(reply(250, "2.0.0 OK")),
        "QUIT" => match no_arg(reply(221, "")) {
            Step::Reply(Reply { code: 221, .. }) => Step::Quit,
            other => other,
        },
        "VRFY" => Step::Reply(reply(252, "2.1.5 cannot verify, but will accept and try")),
        "HELP" => Step::Reply(reply(
            214,
            "2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
        )),
        "EXPN" | "STARTTLS" | "AUTH" | "BDAT" | "TURN" | "ETRN" | "SEND" | "SOML" | "SAML" => {
            Step::Reply(reply(502, format!("5.5.1 {verb} not implemented")))
        }
        "" => Step::Reply(reply(500, "5.5.2 empty command")),
        _ => Step::Reply(reply(500, "5.5.2 command not recognized")),
    }
}

fn mail_from(arg: &str, config: &Config, greeted: bool, tx: &mut Transaction) -> Reply {
    if !greeted {
        return reply(503, "5.5.1 send EHLO or HELO first");
    }
    if tx.from.is_some() {
        return reply(503, "5.5.1 nested MAIL command");
    }
    let Some((addr, params)) = parse_path(arg, "FROM:") else {
        return reply(501, "5.5.4 syntax: MAIL FROM:<address>");
    };
    if !addr.is_empty() && !valid_address(addr) {
        return reply(501, "5.1.7 bad sender address syntax");
    }
    for p in params.split_ascii_whitespace() {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => match value.parse::<u64>() {
                Ok(n) if n > config.max_message_bytes as u64 => {
                    return reply(552, "5.3.4 message size exceeds the maximum");
                }
                Ok(_) => {}
                Err(_) => return reply(501, "5.5.4 bad SIZE parameter"),
            },
            "BODY"
                if value.eq_ignore_ascii_case("7BIT") || value.eq_ignore_ascii_case("8BITMIME") => {
            }
            _ => return reply(555, format!("5.5.4 unsupported parameter {p}")),
        }
    }
    tx.from = Some(addr.to_string());
    tx.mailboxes.clear();
    reply(250, "2.1.0 OK")
}

fn rcpt_to(arg: &str, config: &Config, tx: &mut Transaction) -> Reply {
    if tx.from.is_none() {
        return reply(503, "5.5.1 need MAIL before RCPT");
    }
    let Some((addr, params)) = parse_path(arg, "TO:") else {
        return reply(501, "5.5.4 syntax: RCPT TO:<local@domain>");
    };
    if !params.is_empty() {
        return reply(555, "5.5.4 RCPT parameters are not supported");
    }
    let local = if addr.eq_ignore_ascii_case("postmaster") {
        "postmaster"
    } else if valid_address(addr) {
        match addr.rsplit_once('@') {
            Some((local, _)) => local,
            None => return reply(501, "5.1.3 bad recipient address syntax"),
        }
    } else {
        return reply(501, "5.1.3 bad recipient address syntax");
    };
    let Some(mbox) = mailbox::from_local_part(local) else {
        return reply(553, "5.1.3 mailbox name not allowed (use a-z 0-9 . _ + -)");
    };
    if !tx.mailboxes.contains(&mbox) {
        if tx.mailboxes.len() >= config.max_recipients {
            return reply(452, "4.5.3 too many recipients");
        }
        tx.mailboxes.push(mbox);
    }
    reply(250, "2.1.5 OK")
}

/// Splits `FROM:<addr> PARAMS` into `addr` and `PARAMS`. The keyword is
/// case-insensitive and a space after the colon is tolerated.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start().strip_prefix('<')?;
    let end = rest.find('>')?;
    let (addr, params) = (&rest[..end], &rest[end + 1..]);
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    Some((addr, params.trim()))
}

/// `local@domain` with a dot-atom local part and a domain name or address
/// literal. Quoted local parts and source routes are refused.
fn valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|a| !a.is_empty() && a.chars().all(atom_char))
    };
    let domain_ok = if let Some(lit) = domain.strip_prefix('[') {
        lit.strip_suffix(']').is_some_and(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".:".contains(c))
        })
    } else {
        !domain.is_empty()
            && domain.len() <= 255
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    local.len() <= 64 && dot_atom(local) && domain_ok
}

enum Data {
    Body(Vec<u8>),
    TooBig,
}

/// Reads message text up to the lone `.`; `None` if the client hung up.
fn read_data<R: BufRead>(r: &mut R, max: usize) -> io::Result<Option<Data>> {
    let mut body = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        match lineio::read_line(r, MAX_DATA_LINE, &mut line)? {
            ReadLine::Eof => return Ok(None),
            ReadLine::TooLong => {
                too_big = true;
                continue;
            }
            ReadLine::Line => {}
        }
        if line == b"." {
            break;
        }
        let text = line.strip_prefix(b".").unwrap_or(&line);
        if !too_big {
            if body.len() + text.len() + 2 > max {
                too_big = true;
                body = Vec::new();
            } else {
                body.extend_from_slice(text);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    Ok(Some(if too_big {
        Data::TooBig
    } else {
        Data::Body(body)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<Envelope>>, Option<DeliveryError>);

    impl Deliver for Recorder {
        fn deliver(&self, e: &Envelope) -> Result<String, DeliveryError> {
            if let Some(err) = &self.1 {
                return Err(err.clone());
            }
            let mut v = self.0.lock().unwrap();
            v.push(e.clone());
            Ok(v.len().to_string())
        }
    }

    fn run(input: &str, fail: Option<DeliveryError>) -> (Vec<String>, Vec<Envelope>) {
        let rec = Recorder(Mutex::new(Vec::new()), fail);
        let mut out = Vec::new();
        let config = Config::new("mx.test".into(), "warden-mail");
        session(input.as_bytes(), &mut out, &config, &rec, "test").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines = text
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        (lines, rec.0.into_inner().unwrap())
    }

    #[test]
    fn a_whole_dialogue() {
        let (replies, got) = run(
            "EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\n\
             RCPT TO:<Alice@example.test>\r\nRCPT TO:<alice@other.test>\r\nRCPT TO:<postmaster>\r\n\
             DATA\r\nSubject: hi\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n",
            None,
        );
        assert_eq!(
            replies,
            [
                "220 mx.test ESMTP warden-mail",
                "250-mx.test",
                "250-SIZE 10485760",
                "250 8BITMIME",
                "250 2.1.0 OK",
                "250 2.1.5 OK",
                "250 2.1.5 OK",
                "250 2.1.5 OK",
                "354 start mail input; end with <CRLF>.<CRLF>",
                "250 OK queued as 1",
                "221 2.0.0 mx.test closing",
            ]
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].from, "a@b.test");
        assert_eq!(got[0].mailboxes, ["alice", "postmaster"]);
        assert_eq!(got[0].body, b"Subject: hi\r\n\r\n.leading dot\r\n");
    }

    #[test]
    fn bad_commands_get_5xx() {
        let (replies, got) = run(
            "MAIL FROM:<a@b.test>\r\nHELO\r\nHELO c.test\r\nRCPT TO:<x@y.test>\r\nDATA\r\n\
             MAIL FROM:a@b.test\r\nMAIL FROM:<not an address>\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n\
             RCPT TO:<no-domain>\r\nRCPT TO:<a@>\r\nRCPT TO:<o'brien@x.test>\r\nRCPT TO:<a@b.test> NOTIFY=NEVER\r\n\
             DATA\r\nFROB\r\nEXPN list\r\nRSET now\r\n\r\n",
            None,
        );
        let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
        assert_eq!(
            codes,
            [
                "220", "503", "501", "250", "503", "503", "501", "501", "250", "503", "501", "501",
                "553", "555", "503", "500", "502", "501", "500"
            ],
            "{replies:#?}"
        );
        assert!(got.is_empty());
    }

    #[test]
    fn delivery_failures_map_to_451_and_554() {
        let input = "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@x.test>\r\nDATA\r\nhi\r\n.\r\n";
        let (r, _) = run(
            input,
            Some(DeliveryError::Temporary("store unavailable".into())),
        );
        assert_eq!(r.last().unwrap(), "451 4.3.0 store unavailable");
        let (r, _) = run(input, Some(DeliveryError::Permanent("no".into())));
        assert!(r.last().unwrap().starts_with("554 "));
    }

    #[test]
    fn too_many_errors_closes_the_session() {
        let (r, _) = run(&"FROB\r\n".repeat(30), None);
        assert_eq!(r.len(), 1 + 20 + 1);
        assert!(r.last().unwrap().starts_with("421 "));
    }

    #[test]
    fn oversize_messages_are_refused_after_the_dot() {
        let rec = Recorder(Mutex::new(Vec::new()), None);
        let mut config = Config::new("h".into(), "warden-mail");
        config.max_message_bytes = 10;
        let mut out = Vec::new();
        let input = "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@x.test>\r\nDATA\r\n0123456789abc\r\n.\r\nNOOP\r\n";
        session(input.as_bytes(), &mut out, &config, &rec, "t").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("552 5.3.4"), "{text}");
        assert!(text.ends_with("250 2.0.0 OK\r\n"), "{text}");
        assert!(rec.0.lock().unwrap().is_empty());
    }
}
