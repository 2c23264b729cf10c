//! mail-store: the Store. Messages in a write-ahead log, served over a line
//! protocol; clean dismount on SIGTERM or DISMOUNT, recovery after a crash.
//! The protocol and file formats are in README.md.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::process;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::lineio::{self, ReadLine};
use crate::store::{self, Engine, OpenError};
use crate::{log, mailbox, server, signals, wal};

const USAGE: &str = "\
usage: mail-store --data DIR --listen ADDR
       mail-store --data DIR --verify

Serves the mail store in DIR on ADDR (HOST:PORT), or with --verify checks
DIR without serving: exit 0 clean, 3 recovery needed, 4 corrupt.
";

const SPEC: Spec = Spec {
    program: "mail-store",
    usage: USAGE,
    flags: &[("--data", true), ("--listen", true), ("--verify", false)],
};

/// Exit status when the log is corrupt beyond a torn tail.
const EXIT_CORRUPT: i32 = 4;
const MAX_LINE: usize = 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

type Shared = Arc<Mutex<Engine>>;

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-store");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let data = args.need_path("--data");
    if args.switch("--verify") {
        if args.value("--listen").is_some() {
            args.fail("--verify checks and exits; it takes no --listen");
        }
        let verdict = store::verify(&data);
        println!("{}", verdict.line());
        process::exit(verdict.exit_code());
    }
    let listen = args.need_addr("--listen");

    let (engine, report) = match Engine::open(&data) {
        Ok(x) => x,
        Err(e @ OpenError::Corrupt { .. }) => {
            log!(
                "refusing to mount: {e}; restore the data directory or cut the log at the damaged offset by hand"
            );
            process::exit(EXIT_CORRUPT);
        }
        Err(e) => {
            log!("cannot mount the store in {}: {e}", data.display());
            process::exit(1);
        }
    };
    if report.created {
        log!("created a new store in {}", data.display());
    } else if report.clean {
        log!(
            "mounted cleanly: {} records, seq {}",
            report.records,
            report.last_seq
        );
    } else {
        if report.marker_but_torn {
            log!(
                "CLEAN marker present but the log had a torn tail: treating the last dismount as unclean"
            );
        }
        log!(
            "recovered {} records, dropped a torn tail of {} bytes{}",
            report.records,
            report.dropped_tail,
            report
                .tail_reason
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }

    let listener = super::listen_or_exit(listen);
    let shared: Shared = Arc::new(Mutex::new(engine));
    let on_signal = Arc::clone(&shared);
    if let Err(e) = signals::on_terminate(move |sig| dismount_and_exit(&on_signal, sig, || Ok(())))
    {
        log!("cannot install signal handlers: {e}");
        process::exit(1);
    }
    match listener.local_addr() {
        Ok(a) => log!("listening on {a}"),
        Err(_) => log!("listening on {listen}"),
    }
    server::serve(
        listener,
        b"ERR busy: too many connections\n",
        move |stream, peer| {
            if let Err(e) = handle(stream, &shared)
                && !lineio::is_disconnect(&e)
                && !lineio::is_timeout(&e)
            {
                log!("connection {peer}: {e}");
            }
        },
    )
}

/// Locks the engine. A poisoned lock means a thread panicked mid-append:
/// the in-memory view may disagree with the log, so stop without CLEAN and
/// let the next mount recover from the log.
fn lock(shared: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    shared.lock().unwrap_or_else(|_| {
        log!("a request thread panicked while holding the store; exiting without CLEAN");
        process::exit(1)
    })
}

/// Clean dismount, then exit 0. `ack` runs after CLEAN is durable and
/// before the exit (DISMOUNT's `OK`). The lock is held to the end, so no
/// append can slip in after the marker.
fn dismount_and_exit(shared: &Mutex<Engine>, why: &str, ack: impl FnOnce() -> io::Result<()>) -> ! {
    let mut engine = lock(shared);
    match engine.dismount() {
        Ok(()) => {
            log!(
                "clean dismount ({why}): {} records, seq {}",
                engine.len(),
                engine.last_seq()
            );
            let _ = ack();
            process::exit(0)
        }
        Err(e) => {
            log!("dismount failed ({why}): {e}; exiting without CLEAN, the next start recovers");
            process::exit(1)
        }
    }
}

/// Whether to keep the connection after a request.
enum Flow {
    Continue,
    Close,
}

fn handle(stream: TcpStream, shared: &Mutex<Engine>) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = BufWriter::new(stream);
    let mut line = Vec::new();
    loop {
        match lineio::read_line(&mut r, MAX_LINE, &mut line)? {
            ReadLine::Eof => return Ok(()),
            ReadLine::TooLong => {
                w.write_all(b"ERR line too long\n")?;
                return w.flush();
            }
            ReadLine::Line => {}
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        let Some(cmd) = words.first() else {
            continue; // empty lines are ignored
        };
        let args = &words[1..];
        let flow = match cmd.to_ascii_uppercase().as_str() {
            "PING" if args.is_empty() => reply(&mut w, "PONG"),
            "PUT" => put(args, &mut r, &mut w, shared)?,
            "GET" => get(args, &mut w, shared)?,
            "SINCE" => since(args, &mut w, shared)?,
            "SEQ" if args.is_empty() => {
                let seq = lock(shared).last_seq();
                reply(&mut w, &format!("SEQ {seq}"))
            }
            "STATUS" if args.is_empty() => {
                let e = lock(shared);
                let line = format!(
                    "STATUS clean={} records={} seq={}",
                    e.clean_start(),
                    e.len(),
                    e.last_seq()
                );
                drop(e);
                reply(&mut w, &line)
            }
            "DISMOUNT" if args.is_empty() => dismount_and_exit(shared, "DISMOUNT", || {
                w.write_all(b"OK\n")?;
                w.flush()
            }),
            "PING" | "SEQ" | "STATUS" | "DISMOUNT" => {
                reply(&mut w, &format!("ERR {cmd} takes no arguments"))
            }
            _ => reply(
                &mut w,
                "ERR unknown command (PING PUT GET SINCE SEQ STATUS DISMOUNT)",
            ),
        };
        w.flush()?;
        if let Flow::Close = flow {
            return Ok(());
        }
    }
}

fn reply<W: Write>(w: &mut W, line: &str) -> Flow {
    // Write errors surface at the flush that follows.
    let _ = w
        .write_all(line.as_bytes())
        .and_then(|()| w.write_all(b"\n"));
    Flow::Continue
}

fn close_with<W: Write>(w: &mut W, line: &str) -> Flow {
    reply(w, line);
    Flow::Close
}

fn put<R: Read, W: Write>(
    args: &[&str],
    r: &mut R,
    w: &mut W,
    shared: &Mutex<Engine>,
) -> io::Result<Flow> {
    // Without a trustworthy length the body's end cannot be found, so the
    // connection is closed after the error.
    let [name, len] = args else {
        return Ok(close_with(
            w,
            "ERR usage: PUT <mailbox> <len>, then <len> bytes",
        ));
    };
    let Ok(len) = len.parse::<usize>() else {
        return Ok(close_with(w, "ERR bad length"));
    };
    if len > wal::MAX_BODY {
        return Ok(close_with(
            w,
            &format!("ERR body too large (at most {} bytes)", wal::MAX_BODY),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    if !mailbox::is_valid(name) {
        return Ok(reply(
            w,
            "ERR invalid mailbox name (1-64 of a-z 0-9 . _ + -)",
        ));
    }
    let result = lock(shared).append(name, &body);
    Ok(match result {
        Ok(seq) => reply(w, &format!("OK {seq}")),
        Err(e) if e.fatal => {
            log!("write to the log failed: {e}; exiting without CLEAN, the next start recovers");
            process::exit(1);
        }
        Err(e) => {
            log!("PUT refused: {e}");
            reply(w, &format!("ERR {e}"))
        }
    })
}

fn get<W: Write>(args: &[&str], w: &mut W, shared: &Mutex<Engine>) -> io::Result<Flow> {
    let [name] = args else {
        return Ok(reply(w, "ERR usage: GET <mailbox>"));
    };
    if !mailbox::is_valid(name) {
        return Ok(reply(
            w,
            "ERR invalid mailbox name (1-64 of a-z 0-9 . _ + -)",
        ));
    }
    // Copy the list (cheap Arcs) so the socket is written without the lock.
    let records = lock(shared).mailbox(name);
    writeln!(w, "MSGS {}", records.len())?;
    for rec in records {
        writeln!(w, "{} {}", rec.seq, rec.body.len())?;
        w.write_all(&rec.body)?;
        w.write_all(b"\n")?;
    }
    Ok(Flow::Continue)
}

fn since<W: Write>(args: &[&str], w: &mut W, shared: &Mutex<Engine>) -> io::Result<Flow> {
    let (seq, max) = match args {
        [seq] => (seq.parse::<u64>().ok(), Some(usize::MAX)),
        [seq, max] => (seq.parse::<u64>().ok(), max.parse::<usize>().ok()),
        _ => (None, None),
    };
    let (Some(seq), Some(max)) = (seq, max) else {
        return Ok(reply(w, "ERR usage: SINCE <seq> [<max>]"));
    };
    let records = lock(shared).since(seq, max);
    writeln!(w, "MSGS {}", records.len())?;
    for rec in records {
        writeln!(w, "{} {} {}", rec.seq, rec.mailbox, rec.body.len())?;
        w.write_all(&rec.body)?;
        w.write_all(b"\n")?;
    }
    Ok(Flow::Continue)
}
