//! The replication protocol between an active copy and a passive copy: a
//! handshake, then the active's log records one by one, and the passive's
//! acknowledgements (README.md, "Replication protocol").
//!
//! Why lines plus length-prefixed records: every control message is one
//! short line, read with [`crate::lineio::read_line`] and so bounded; a
//! record's length is checked against [`wal::MAX_RECORD`] before a byte of
//! it is allocated, and the record itself is the exact `wal.log` encoding,
//! CRC included, so what the passive writes is what the active wrote.
//! Parsing is here, apart from the sockets, so it can be tested alone.

use std::fmt;

use crate::wal;

/// Longest control line either side sends or accepts.
pub const MAX_LINE: usize = 512;

/// The passive's opening line: who it follows and where its log ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The newest generation the passive knows.
    pub generation: u64,
    /// Its log position (seq of its last durable record, 0 if none).
    pub position: u64,
    /// CRC of its record at `position` (0 when `position` is 0), for the
    /// active to check that the two logs agree there.
    pub crc: u32,
}

impl Hello {
    pub fn line(&self) -> String {
        format!(
            "HELLO {} {} {:08x}",
            self.generation, self.position, self.crc
        )
    }

    pub fn parse(line: &str) -> Result<Hello, String> {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let ["HELLO", generation, position, crc] = words.as_slice() else {
            return Err(format!(
                "expected `HELLO <generation> <position> <crc>`, got {:?}",
                shorten(line)
            ));
        };
        Ok(Hello {
            generation: number(generation, "generation")?,
            position: number(position, "position")?,
            crc: u32::from_str_radix(crc, 16)
                .ok()
                .filter(|_| crc.len() == 8)
                .ok_or_else(|| format!("crc {:?} is not 8 hex digits", shorten(crc)))?,
        })
    }
}

/// The active's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Records follow, from the passive's position on.
    Welcome { generation: u64, position: u64 },
    /// The logs disagree: the passive must be reseeded.
    Diverged(String),
    /// The passive's generation is newer: this active has stepped down.
    Deposed(String),
    /// Not serving now (not active, or already deposed): try again later.
    Refused(String),
    /// The hello was malformed.
    Err(String),
}

impl Answer {
    pub fn line(&self) -> String {
        match self {
            Answer::Welcome {
                generation,
                position,
            } => format!("WELCOME {generation} {position}"),
            Answer::Diverged(why) => format!("DIVERGED {why}"),
            Answer::Deposed(why) => format!("DEPOSED {why}"),
            Answer::Refused(why) => format!("REFUSED {why}"),
            Answer::Err(why) => format!("ERR {why}"),
        }
    }

    pub fn parse(line: &str) -> Result<Answer, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim().to_string();
        match word {
            "WELCOME" => {
                let words: Vec<&str> = rest.split_ascii_whitespace().collect();
                let [generation, position] = words.as_slice() else {
                    return Err(format!(
                        "expected `WELCOME <generation> <position>`, got {:?}",
                        shorten(line)
                    ));
                };
                Ok(Answer::Welcome {
                    generation: number(generation, "generation")?,
                    position: number(position, "position")?,
                })
            }
            "DIVERGED" => Ok(Answer::Diverged(rest)),
            "DEPOSED" => Ok(Answer::Deposed(rest)),
            "REFUSED" => Ok(Answer::Refused(rest)),
            "ERR" => Ok(Answer::Err(rest)),
            _ => Err(format!("not a replication answer: {:?}", shorten(line))),
        }
    }
}

/// What the active sends after `WELCOME`: one control line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The active's log position now (also the heartbeat).
    Position(u64),
    /// One record of `len` bytes follows the line.
    Record { len: usize },
    /// The active stops shipping (deposed, or stopping); the passive retries.
    Bye(String),
}

impl Frame {
    pub fn line(&self) -> String {
        match self {
            Frame::Position(p) => format!("POS {p}"),
            Frame::Record { len } => format!("REC {len}"),
            Frame::Bye(why) => format!("BYE {why}"),
        }
    }

    /// Parses a frame line; a record length over [`wal::MAX_RECORD`] is
    /// refused here, before anything is allocated for it.
    pub fn parse(line: &str) -> Result<Frame, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "POS" => Ok(Frame::Position(number(rest.trim(), "position")?)),
            "REC" => {
                let len = number(rest.trim(), "record length")?;
                match usize::try_from(len) {
                    Ok(len) if len > 0 && len <= wal::MAX_RECORD => Ok(Frame::Record { len }),
                    _ => Err(format!(
                        "record length {len} is outside 1..={}",
                        wal::MAX_RECORD
                    )),
                }
            }
            "BYE" => Ok(Frame::Bye(rest.trim().to_string())),
            _ => Err(format!("not a replication frame: {:?}", shorten(line))),
        }
    }
}

/// The passive's acknowledgement: its log is durable up to `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack(pub u64);

impl Ack {
    pub fn line(&self) -> String {
        format!("ACK {}", self.0)
    }

    pub fn parse(line: &str) -> Result<Ack, String> {
        match line.split_once(' ') {
            Some(("ACK", n)) => Ok(Ack(number(n.trim(), "position")?)),
            _ => Err(format!(
                "expected `ACK <position>`, got {:?}",
                shorten(line)
            )),
        }
    }
}

fn number(word: &str, what: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("{what} {:?} is not a number", shorten(word)))
}

/// At most 80 characters of peer text, for error messages and the log.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// A reason as it goes on one line: control characters become spaces.
pub fn one_line(reason: impl fmt::Display) -> String {
    reason
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let h = Hello {
            generation: 3,
            position: 42,
            crc: 0xdead_beef,
        };
        assert_eq!(h.line(), "HELLO 3 42 deadbeef");
        assert_eq!(Hello::parse(&h.line()), Ok(h));
        for a in [
            Answer::Welcome {
                generation: 4,
                position: 9,
            },
            Answer::Diverged("your position 9 is beyond mine 3".into()),
            Answer::Deposed("x".into()),
            Answer::Refused("not active".into()),
            Answer::Err("bad".into()),
        ] {
            assert_eq!(Answer::parse(&a.line()), Ok(a));
        }
        for f in [
            Frame::Position(7),
            Frame::Record { len: 30 },
            Frame::Bye("deposed".into()),
        ] {
            assert_eq!(Frame::parse(&f.line()), Ok(f));
        }
        assert_eq!(Ack::parse("ACK 5"), Ok(Ack(5)));
    }

    #[test]
    fn malformed_and_huge_claims_are_refused() {
        for bad in [
            "",
            "HELLO",
            "HELLO 1 2",
            "HELLO -1 2 00000000",
            "HELLO 1 2 xyz",
            "HELLO 1 2 0",
            "HELLO 1 2 00000000 extra",
            "hello 1 2 00000000",
        ] {
            assert!(Hello::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            Frame::parse("REC 4294967296")
                .unwrap_err()
                .contains("outside")
        );
        assert!(Frame::parse("REC 0").is_err());
        assert!(Frame::parse("REC 99999999999999999999999").is_err());
        assert!(Frame::parse("\u{0}\u{1}garbage").is_err());
        assert!(Answer::parse("WELCOME 1").is_err());
        assert!(Answer::parse("HTTP/1.1 200 OK").is_err());
        assert!(Ack::parse("ACK x").is_err());
        let long = "x".repeat(500);
        assert!(Frame::parse(&long).unwrap_err().len() < 120);
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
