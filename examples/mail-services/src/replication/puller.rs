//! The passive copy's side: connect to the active copy, say where its own
//! durable log ends, then write what arrives durably, acknowledge it and
//! replay it. When the active is away it retries with a backoff (100 ms
//! doubling to 5 s); when the logs disagree it stops, diverged, until
//! RESEED.
//!
//! Everything the active sends is checked before it touches the log: the
//! generation in `WELCOME` (an older one than this copy knows is refused),
//! each line's length, each record's claimed length (before allocating),
//! its CRC and its seq (the next one, nothing else). A peer that stalls is
//! dropped after [`super::Config::peer_timeout`].

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process;
use std::time::{Duration, Instant};

use super::wire::{self, Ack, Answer, Frame, Hello};
use super::{Health, Node};
use crate::lineio::{self, ReadLine};
use crate::wal::{self, Record};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Copied bytes written with one fsync at most (more arrive: next batch).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How a session with the active ended without an error.
enum Ended {
    /// ACTIVATE or RESEED asked the puller to stop.
    Stopped,
    /// The active says the logs disagree.
    Diverged(String),
}

/// Why a session with the active ended in error.
enum Broken {
    /// The active could not be reached, or the connection to it was lost
    /// (refused, reset, closed, silent past the peer timeout): the copy
    /// still holds what it copied and can be activated on it; it is only
    /// not following. Reported healthy, with the reason in the log.
    Lost(String),
    /// Something about this copy or what the active sent is wrong (its
    /// disk, a refused generation, a bad record): its data cannot be
    /// trusted to follow. Reported failed.
    Failed(String),
}

impl From<String> for Broken {
    fn from(why: String) -> Self {
        Broken::Failed(why)
    }
}

/// The puller thread: sessions with the active until told to stop.
pub fn run(node: &Node) {
    let Some(source) = node.config.source else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    let mut last_failure = String::new();
    loop {
        match session(node, source, &mut backoff) {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Diverged(why)) => {
                log!("diverged from the active copy at {source}: {why}; waiting for RESEED");
                node.lock_progress().health = Health::Diverged(why);
                return;
            }
            Err(broken) => {
                let (why, health) = match broken {
                    Broken::Lost(why) => (why, Health::Healthy),
                    Broken::Failed(why) => (why.clone(), Health::Failed(why)),
                };
                // One line per change of reason, not one per retry.
                if why != last_failure {
                    log!("following {source}: {why}; retrying");
                    last_failure.clone_from(&why);
                }
                let mut p = node.lock_progress();
                p.health = health;
                let deadline = Instant::now() + backoff;
                while !p.stop_pulling {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    p = node
                        .changed
                        .wait_timeout(p, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                if p.stop_pulling {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn session(node: &Node, source: SocketAddr, backoff: &mut Duration) -> Result<Ended, Broken> {
    let timeout = node.config.peer_timeout;
    let stream = TcpStream::connect_timeout(&source, timeout)
        .map_err(|e| Broken::Lost(format!("cannot reach the active copy: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket options: {e}"))?;
    let _ = stream.set_nodelay(true);
    let clone = || {
        stream
            .try_clone()
            .map_err(|e| format!("clone the connection: {e}"))
    };
    {
        let mut p = node.lock_progress();
        if p.stop_pulling {
            return Ok(Ended::Stopped);
        }
        p.pull_stream = Some(clone()?);
    }
    let mut reader = BufReader::new(clone()?);
    let mut writer = BufWriter::new(stream);

    let hello = {
        let copy = node.lock_copy();
        let position = copy.engine.position();
        Hello {
            generation: copy.newest,
            position,
            crc: copy.engine.crc_at(position).unwrap_or(0),
        }
    };
    send(&mut writer, &hello.line()).map_err(|e| Broken::Lost(format!("sending HELLO: {e}")))?;
    let mut line = Vec::new();
    let answer = read_line(&mut reader, &mut line, node, "its answer to HELLO")?;
    let active_position = match Answer::parse(&answer)? {
        Answer::Welcome {
            generation,
            position,
        } => {
            let mut copy = node.lock_copy();
            if node.pulling_stopped() {
                return Ok(Ended::Stopped); // activated meanwhile: touch nothing
            }
            if generation < copy.newest {
                return Err(Broken::Failed(format!(
                    "the active copy has generation {generation}, older than {}: its log is refused",
                    copy.newest
                )));
            }
            copy.learn(generation)
                .map_err(|e| format!("cannot record generation {generation}: {e}"))?;
            copy.generation = copy.newest;
            position
        }
        Answer::Diverged(why) => return Ok(Ended::Diverged(why)),
        Answer::Deposed(why) | Answer::Refused(why) | Answer::Err(why) => {
            return Err(Broken::Failed(format!(
                "the copy there refused: {}",
                wire::shorten(&why)
            )));
        }
    };
    log!(
        "following the active copy at {source}: its position {active_position}, mine {}",
        hello.position
    );
    {
        let mut p = node.lock_progress();
        if p.stop_pulling {
            return Ok(Ended::Stopped);
        }
        p.source_position = Some(active_position);
        p.health = Health::Healthy;
    }
    *backoff = FIRST_BACKOFF;

    let mut position = hello.position;
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let text = read_line(&mut reader, &mut line, node, "a frame")?;
        match Frame::parse(&text)? {
            Frame::Position(p) => {
                node.lock_progress().source_position = Some(p);
                let wrote = !batch.is_empty();
                if wrote {
                    match write_batch(node, &mut batch, &mut position)? {
                        Some(ended) => return Ok(ended),
                        None => batch_bytes = 0,
                    }
                }
                // Also the heartbeat's answer, so the active can tell a
                // stalled passive from an idle one.
                send(&mut writer, &Ack(position).line())
                    .map_err(|e| Broken::Lost(format!("acknowledging: {e}")))?;
                if wrote {
                    node.lock_copy().engine.replay();
                }
            }
            Frame::Record { len } => {
                let mut bytes = vec![0; len];
                reader
                    .read_exact(&mut bytes)
                    .map_err(|e| Broken::Lost(format!("reading a record of {len} bytes: {e}")))?;
                let rec = wal::decode_one(&bytes).map_err(|why| format!("a bad record: {why}"))?;
                let expected = position + batch.len() as u64 + 1;
                if rec.seq != expected {
                    return Err(Broken::Failed(format!(
                        "the active sent seq {} where {expected} was expected",
                        rec.seq
                    )));
                }
                batch.push(rec);
                batch_bytes += len;
                // Group commit: one fsync for all that has already arrived.
                if reader.buffer().is_empty() || batch_bytes >= BATCH_BYTES {
                    match write_batch(node, &mut batch, &mut position)? {
                        Some(ended) => return Ok(ended),
                        None => batch_bytes = 0,
                    }
                    send(&mut writer, &Ack(position).line())
                        .map_err(|e| Broken::Lost(format!("acknowledging: {e}")))?;
                    node.lock_copy().engine.replay();
                }
            }
            Frame::Bye(why) => {
                return Err(Broken::Lost(format!(
                    "the active stopped shipping: {}",
                    wire::shorten(&why)
                )));
            }
        }
    }
}

/// Writes the batch durably (unless the puller is being stopped).
fn write_batch(
    node: &Node,
    batch: &mut Vec<Record>,
    position: &mut u64,
) -> Result<Option<Ended>, String> {
    let mut copy = node.lock_copy();
    if node.pulling_stopped() {
        return Ok(Some(Ended::Stopped));
    }
    match copy.engine.append_replicated(std::mem::take(batch)) {
        Ok(p) => {
            *position = p;
            Ok(None)
        }
        Err(e) if e.fatal => {
            log!(
                "writing copied records failed: {e}; exiting without CLEAN, the next start recovers"
            );
            process::exit(1);
        }
        Err(e) => Err(format!("writing copied records: {e}")),
    }
}

fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    node: &Node,
    what: &str,
) -> Result<String, Broken> {
    match lineio::read_line(reader, wire::MAX_LINE, line) {
        Ok(ReadLine::Line) => Ok(String::from_utf8_lossy(line).into_owned()),
        Ok(ReadLine::TooLong) => Err(Broken::Failed(format!(
            "the active sent a line over {} bytes",
            wire::MAX_LINE
        ))),
        Ok(ReadLine::Eof) => Err(Broken::Lost(format!("the connection closed before {what}"))),
        Err(e) if lineio::is_timeout(&e) => Err(Broken::Lost(format!(
            "the active sent no complete line within {} ms (waiting for {what})",
            node.config.peer_timeout.as_millis()
        ))),
        Err(e) => Err(Broken::Lost(format!("reading {what}: {e}"))),
    }
}

fn send(writer: &mut BufWriter<TcpStream>, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes())?;
    writer.write_all(b"\n")?;
    writer.flush()
}
