//! The active copy's side of a replication connection: the handshake
//! (fencing and divergence checks), then its log, record by record, and
//! the passive's acknowledgements, which sync writes wait for.
//!
//! Each connection runs on its own thread (plus one that reads the
//! acknowledgements), reads and writes with [`Config::peer_timeout`], and
//! holds the store's lock only to copy out a batch of records, so a peer
//! that sends garbage, stalls or vanishes costs its own threads and
//! nothing else.

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use super::wire::{self, Ack, Answer, Frame, Hello};
use super::{Node, Role};
use crate::lineio::{self, ReadLine};
use crate::wal;

/// Records copied out of the store per lock.
const BATCH: usize = 64;

/// Serves one passive copy until it goes away, the copy is deposed or the
/// connection fails. `Err` is the reason, for the log.
pub fn serve(node: &Arc<Node>, stream: TcpStream, peer: SocketAddr) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let timeout = node.config.peer_timeout;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| io("socket options", e))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| io("clone", e))?);
    let mut writer = BufWriter::new(stream.try_clone().map_err(|e| io("clone", e))?);

    let mut line = Vec::new();
    let hello = match lineio::read_line(&mut reader, wire::MAX_LINE, &mut line) {
        Ok(ReadLine::Line) => Hello::parse(&String::from_utf8_lossy(&line)),
        Ok(ReadLine::TooLong) => Err(format!("a hello line over {} bytes", wire::MAX_LINE)),
        Ok(ReadLine::Eof) => return Err("closed before its HELLO".into()),
        Err(e) if lineio::is_timeout(&e) => {
            return Err(format!(
                "sent no complete HELLO line within {} ms",
                timeout.as_millis()
            ));
        }
        Err(e) => return Err(io("reading HELLO", e)),
    };
    let hello = match hello {
        Ok(h) => h,
        Err(why) => {
            let _ = send(&mut writer, &Answer::Err(why.clone()).line());
            return Err(format!("refused: {why}"));
        }
    };
    let answer = handshake(node, &hello, peer);
    send(&mut writer, &answer.line()).map_err(|e| io("answering HELLO", e))?;
    let Answer::Welcome { .. } = answer else {
        return Err(format!("refused: {}", answer.line()));
    };
    log!(
        "passive copy {peer} follows from position {} (generation {})",
        hello.position,
        hello.generation
    );

    let connected = Connected::new(node, hello.position);
    let connection = connected.1;
    let shipped = Arc::new(AtomicU64::new(hello.position));
    let dead = Arc::new(AtomicBool::new(false));
    let acks = {
        let (node, shipped, dead) = (Arc::clone(node), Arc::clone(&shipped), Arc::clone(&dead));
        let stream = stream.try_clone().map_err(|e| io("clone", e))?;
        thread::Builder::new()
            .name(format!("acks-{peer}"))
            .spawn(move || {
                let result = read_acks(&node, reader, &shipped, connection);
                dead.store(true, Ordering::SeqCst);
                let _ = stream.shutdown(Shutdown::Both);
                // Under the lock, so the shipper cannot miss it between its
                // check and its wait.
                let _progress = node.lock_progress();
                node.changed.notify_all();
                result
            })
            .map_err(|e| io("starting the acknowledgement reader", e))?
    };
    let shipped_result = ship(node, &mut writer, hello.position, &shipped, &dead);
    let _ = stream.shutdown(Shutdown::Both);
    let acks_result = acks
        .join()
        .unwrap_or_else(|_| Err("the acknowledgement reader panicked".into()));
    shipped_result.and(acks_result)
}

/// Decides the answer to a HELLO, deposing this copy if the passive knows
/// a newer generation.
fn handshake(node: &Node, hello: &Hello, peer: SocketAddr) -> Answer {
    let mut copy = node.lock_copy();
    match copy.role {
        Role::Passive => return Answer::Refused("this is a passive copy".into()),
        Role::Deposed => {
            return Answer::Refused(format!(
                "this copy was deposed by generation {}",
                copy.newest
            ));
        }
        Role::Active => {}
    }
    if hello.generation > copy.generation {
        let why = format!(
            "your generation {} is newer than mine, {}",
            hello.generation, copy.generation
        );
        if let Err(e) = copy.learn(hello.generation) {
            log!("cannot record generation {}: {e}", hello.generation);
        }
        node.depose(
            &mut copy,
            &format!(
                "passive copy {peer} presented generation {}",
                hello.generation
            ),
        );
        return Answer::Deposed(why);
    }
    let position = copy.engine.position();
    if hello.position > position {
        return Answer::Diverged(format!(
            "your log ends at position {} but mine at {position}",
            hello.position
        ));
    }
    if hello.position > 0 {
        let mine = copy.engine.crc_at(hello.position).unwrap_or(0);
        if mine != hello.crc {
            return Answer::Diverged(format!(
                "your record {} has crc {:08x}, mine {mine:08x}",
                hello.position, hello.crc
            ));
        }
    }
    Answer::Welcome {
        generation: copy.generation,
        position,
    }
}

/// Counts a connected passive copy for as long as it lives, under a
/// number of its own; its starting position counts as copied (it is
/// durable there).
struct Connected<'a>(&'a Node, u64);

impl<'a> Connected<'a> {
    fn new(node: &'a Node, position: u64) -> Self {
        let mut p = node.lock_progress();
        p.passives += 1;
        p.best_copied = p.best_copied.max(position);
        let id = p.next_connection;
        p.next_connection += 1;
        p.acked.insert(id, position);
        node.changed.notify_all();
        Connected(node, id)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        let mut p = self.0.lock_progress();
        p.passives = p.passives.saturating_sub(1);
        p.acked.remove(&self.1);
        self.0.changed.notify_all();
    }
}

/// Sends records from `from` on, and a `POS` heartbeat when idle.
fn ship(
    node: &Node,
    writer: &mut BufWriter<TcpStream>,
    from: u64,
    shipped: &AtomicU64,
    dead: &AtomicBool,
) -> Result<(), String> {
    let mut next = from;
    let heartbeat = node.config.heartbeat();
    loop {
        {
            let deadline = Instant::now() + heartbeat;
            let mut p = node.lock_progress();
            while p.written <= next && !p.fenced && !dead.load(Ordering::SeqCst) {
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
        }
        if dead.load(Ordering::SeqCst) {
            return Ok(()); // the reader says why
        }
        let (records, position) = {
            let copy = node.lock_copy();
            // A planned step-down ships the rest of the log before it
            // deposes the copy.
            if copy.role != Role::Active && !copy.draining {
                let why = format!("deposed by generation {}", copy.newest);
                drop(copy);
                let _ = send(writer, &Frame::Bye(why.clone()).line());
                return Err(format!("stopped shipping: {why}"));
            }
            (copy.engine.since(next, BATCH), copy.engine.position())
        };
        // Raised before the bytes go out: a quick passive's ACK may be read
        // before this thread returns from the write.
        if let Some(last) = records.last() {
            shipped.store(last.seq, Ordering::SeqCst);
        }
        let write = |writer: &mut BufWriter<TcpStream>| -> std::io::Result<()> {
            for rec in &records {
                let bytes = wal::encode(rec.seq, &rec.mailbox, &rec.body);
                writer.write_all(Frame::Record { len: bytes.len() }.line().as_bytes())?;
                writer.write_all(b"\n")?;
                writer.write_all(&bytes)?;
            }
            writer.write_all(Frame::Position(position).line().as_bytes())?;
            writer.write_all(b"\n")?;
            writer.flush()
        };
        if let Err(e) = write(writer) {
            return Err(if lineio::is_timeout(&e) {
                format!(
                    "took nothing for {} ms: dropped",
                    node.config.peer_timeout.as_millis()
                )
            } else {
                format!("shipping: {e}")
            });
        }
        if let Some(last) = records.last() {
            next = last.seq;
        }
    }
}

/// Reads `ACK` lines; each raises the copied position sync writes wait for.
/// An acknowledgement of more than was shipped is a lie and ends the
/// connection (it would let a sync write through that no copy has).
fn read_acks(
    node: &Node,
    mut reader: BufReader<TcpStream>,
    shipped: &AtomicU64,
    connection: u64,
) -> Result<(), String> {
    let mut line = Vec::new();
    loop {
        match lineio::read_line(&mut reader, wire::MAX_LINE, &mut line) {
            Ok(ReadLine::Line) => {}
            Ok(ReadLine::TooLong) => {
                return Err(format!("sent a line over {} bytes", wire::MAX_LINE));
            }
            Ok(ReadLine::Eof) => return Ok(()),
            Err(e) if lineio::is_timeout(&e) => {
                return Err(format!(
                    "sent no complete acknowledgement within {} ms: dropped",
                    node.config.peer_timeout.as_millis()
                ));
            }
            Err(e) if lineio::is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(format!("reading acknowledgements: {e}")),
        }
        let Ack(position) = Ack::parse(&String::from_utf8_lossy(&line))?;
        let sent = shipped.load(Ordering::SeqCst);
        if position > sent {
            return Err(format!(
                "acknowledged position {position}, beyond the {sent} shipped to it"
            ));
        }
        let mut p = node.lock_progress();
        if let Some(acked) = p.acked.get_mut(&connection) {
            *acked = (*acked).max(position);
        }
        if position > p.best_copied {
            p.best_copied = position;
        }
        node.changed.notify_all();
    }
}

fn send(writer: &mut BufWriter<TcpStream>, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes())?;
    writer.write_all(b"\n")?;
    writer.flush()
}
