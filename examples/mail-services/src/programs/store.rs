//! mail-store: the Store. Messages in a write-ahead log, served over a line
//! protocol; clean dismount on SIGTERM or DISMOUNT, recovery after a crash;
//! optionally one copy of several, active or passive, shipping or pulling
//! the log ([`crate::replication`]). The protocol and file formats are in
//! README.md.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::process;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::lineio::{self, ReadLine};
use crate::replication::{self, Node, Role, SyncMode, WriteError};
use crate::store::{self, Engine, OpenError};
use crate::{log, mailbox, server, signals, wal};

const USAGE: &str = "\
usage: mail-store --data DIR --listen ADDR [COPY OPTIONS]
       mail-store --data DIR --verify

Serves the mail store in DIR on ADDR (HOST:PORT), or with --verify checks
DIR without serving: exit 0 clean, 3 recovery needed, 4 corrupt.

Copy options (README.md, \"Copies\"):
  --role active|passive        default active
  --generation N               this copy's generation (default 0)
  --replication-listen ADDR    serve the log to passive copies (when active)
  --replicate-from ADDR        the active copy to follow (passive only)
  --sync-mode sync|async       with --replication-listen; default sync
  --sync-timeout-ms N          sync: how long a write waits for a copy (default 5000)
  --max-async-lag N            async: refuse writes past N uncopied records
  --replication-timeout-ms N   drop a silent replication peer (default 10000)
";

const SPEC: Spec = Spec {
    program: "mail-store",
    usage: USAGE,
    flags: &[
        ("--data", true),
        ("--listen", true),
        ("--verify", false),
        ("--role", true),
        ("--generation", true),
        ("--replication-listen", true),
        ("--replicate-from", true),
        ("--sync-mode", true),
        ("--sync-timeout-ms", true),
        ("--max-async-lag", true),
        ("--replication-timeout-ms", true),
    ],
};

/// Exit status when the log is corrupt beyond a torn tail.
const EXIT_CORRUPT: i32 = 4;
const MAX_LINE: usize = 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

type Shared = Arc<Node>;

/// The role and replication settings from the command line, or exit 2
/// naming the flag that does not fit.
fn copy_options(args: &Args) -> (Role, u64, replication::Config) {
    let role = match args.value("--role") {
        None | Some("active") => Role::Active,
        Some("passive") => Role::Passive,
        Some(other) => args.fail(&format!("`--role {other}`: expected active or passive")),
    };
    let generation = args.number_or("--generation", 0, 0);
    let listen = args
        .addr("--replication-listen")
        .unwrap_or_else(|e| args.fail(&e.to_string()));
    let source = args
        .addr("--replicate-from")
        .unwrap_or_else(|e| args.fail(&e.to_string()));
    match (role, source) {
        (Role::Passive, None) => args.fail("`--role passive` needs `--replicate-from ADDR`"),
        (Role::Active, Some(_)) => args.fail("`--replicate-from` is for `--role passive`"),
        _ => {}
    }
    let mode = match args.value("--sync-mode") {
        None | Some("sync") => SyncMode::Sync,
        Some("async") => SyncMode::Async,
        Some(other) => args.fail(&format!("`--sync-mode {other}`: expected sync or async")),
    };
    let tuned = ["--sync-mode", "--sync-timeout-ms", "--max-async-lag"]
        .into_iter()
        .find(|f| args.value(f).is_some());
    if let (None, Some(flag)) = (listen, tuned) {
        args.fail(&format!(
            "`{flag}` needs `--replication-listen`: without it no copy follows this one"
        ));
    }
    if mode == SyncMode::Sync && args.value("--max-async-lag").is_some() {
        args.fail("`--max-async-lag` is for `--sync-mode async`");
    }
    let config = replication::Config {
        listen,
        source,
        mode,
        sync_timeout: Duration::from_millis(args.number_or("--sync-timeout-ms", 5000, 1)),
        max_async_lag: args
            .value("--max-async-lag")
            .map(|_| args.number_or("--max-async-lag", 0, 1)),
        peer_timeout: Duration::from_millis(args.number_or(
            "--replication-timeout-ms",
            10_000,
            100,
        )),
    };
    (role, generation, config)
}

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
    let (role, generation, config) = copy_options(&args);

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
    let repl_listener = config.listen.map(super::listen_or_exit);
    let (node, note) = Node::new(engine, role, generation, config).unwrap_or_else(|e| {
        log!(
            "cannot read or record the generation in {}: {e}",
            data.display()
        );
        process::exit(1)
    });
    log!("{note}");
    let on_signal = Arc::clone(&node);
    if let Err(e) = signals::on_terminate(move |sig| dismount_and_exit(&on_signal, sig, || Ok(())))
    {
        log!("cannot install signal handlers: {e}");
        process::exit(1);
    }
    if let Some(repl) = repl_listener {
        match repl.local_addr() {
            Ok(a) => log!("replication on {a}"),
            Err(e) => log!("replication listener: {e}"),
        }
        let node = Arc::clone(&node);
        let spawned = thread::Builder::new()
            .name("replication".into())
            .spawn(move || {
                server::serve(
                    repl,
                    b"REFUSED busy: too many connections\n",
                    move |stream, peer| {
                        if let Err(why) = replication::shipper::serve(&node, stream, peer) {
                            log!("replication peer {peer}: {why}");
                        }
                    },
                )
            });
        if let Err(e) = spawned {
            log!("cannot start the replication listener: {e}");
            process::exit(1);
        }
    }
    if role == Role::Passive {
        node.start_puller();
    }
    match listener.local_addr() {
        Ok(a) => log!("listening on {a}"),
        Err(_) => log!("listening on {listen}"),
    }
    server::serve(
        listener,
        b"ERR busy: too many connections\n",
        move |stream, peer| {
            if let Err(e) = handle(stream, &node)
                && !lineio::is_disconnect(&e)
                && !lineio::is_timeout(&e)
            {
                log!("connection {peer}: {e}");
            }
        },
    )
}

/// Clean dismount, then exit 0. `ack` runs after CLEAN is durable and
/// before the exit (DISMOUNT's `OK`). The lock is held to the end, so no
/// append can slip in after the marker.
fn dismount_and_exit(shared: &Node, why: &str, ack: impl FnOnce() -> io::Result<()>) -> ! {
    let mut copy = shared.lock_copy();
    match copy.engine.dismount() {
        Ok(()) => {
            log!(
                "clean dismount ({why}): {} records, seq {}",
                copy.engine.len(),
                copy.engine.last_seq()
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

fn handle(stream: TcpStream, shared: &Shared) -> io::Result<()> {
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
                let seq = shared.lock_copy().engine.last_seq();
                reply(&mut w, &format!("SEQ {seq}"))
            }
            "STATUS" if args.is_empty() => {
                let copy = shared.lock_copy();
                let line = format!(
                    "STATUS clean={} records={} seq={}",
                    copy.engine.clean_start(),
                    copy.engine.len(),
                    copy.engine.last_seq()
                );
                drop(copy);
                reply(&mut w, &line)
            }
            "COPY-STATUS" if args.is_empty() => reply(&mut w, &shared.status_line()),
            "ACTIVATE" => control(&mut w, args, "ACTIVATE", |g| shared.activate(g)),
            "DEACTIVATE" => control(&mut w, args, "DEACTIVATE", |g| shared.deactivate(g)),
            "RESEED" if args.is_empty() => answer(&mut w, shared.reseed()),
            "DISMOUNT" if args.is_empty() => dismount_and_exit(shared, "DISMOUNT", || {
                w.write_all(b"OK\n")?;
                w.flush()
            }),
            "PING" | "SEQ" | "STATUS" | "DISMOUNT" | "COPY-STATUS" | "RESEED" => {
                reply(&mut w, &format!("ERR {cmd} takes no arguments"))
            }
            _ => reply(
                &mut w,
                "ERR unknown command (PING PUT GET SINCE SEQ STATUS DISMOUNT COPY-STATUS ACTIVATE DEACTIVATE RESEED)",
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

/// `ACTIVATE <generation>` / `DEACTIVATE <generation>`.
fn control<W: Write>(
    w: &mut W,
    args: &[&str],
    cmd: &str,
    run: impl FnOnce(u64) -> Result<String, String>,
) -> Flow {
    match args {
        [generation] => match generation.parse::<u64>() {
            Ok(g) => answer(w, run(g)),
            Err(_) => reply(
                w,
                &format!("ERR {cmd}: generation {generation:?} is not a number"),
            ),
        },
        _ => reply(w, &format!("ERR usage: {cmd} <generation>")),
    }
}

/// `OK ...` as the control returned it, or `ERR <reason>`.
fn answer<W: Write>(w: &mut W, result: Result<String, String>) -> Flow {
    match result {
        Ok(line) => reply(w, &line),
        Err(why) => reply(w, &format!("ERR {}", replication::wire::one_line(why))),
    }
}

fn close_with<W: Write>(w: &mut W, line: &str) -> Flow {
    reply(w, line);
    Flow::Close
}

fn put<R: Read, W: Write>(
    args: &[&str],
    r: &mut R,
    w: &mut W,
    shared: &Shared,
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
    Ok(match shared.write(name, &body) {
        Ok(seq) => reply(w, &format!("OK {seq}")),
        Err(WriteError::Fatal(e)) => {
            log!("write to the log failed: {e}; exiting without CLEAN, the next start recovers");
            process::exit(1);
        }
        Err(WriteError::Unavailable(why)) => {
            log!("PUT not acknowledged: {why}");
            reply(w, &format!("UNAVAILABLE {why}"))
        }
        Err(WriteError::Refused(why)) => {
            log!("PUT refused: {why}");
            reply(w, &format!("ERR {why}"))
        }
    })
}

fn get<W: Write>(args: &[&str], w: &mut W, shared: &Shared) -> io::Result<Flow> {
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
    let records = shared.lock_copy().engine.mailbox(name);
    writeln!(w, "MSGS {}", records.len())?;
    for rec in records {
        writeln!(w, "{} {}", rec.seq, rec.body.len())?;
        w.write_all(&rec.body)?;
        w.write_all(b"\n")?;
    }
    Ok(Flow::Continue)
}

fn since<W: Write>(args: &[&str], w: &mut W, shared: &Shared) -> io::Result<Flow> {
    let (seq, max) = match args {
        [seq] => (seq.parse::<u64>().ok(), Some(usize::MAX)),
        [seq, max] => (seq.parse::<u64>().ok(), max.parse::<usize>().ok()),
        _ => (None, None),
    };
    let (Some(seq), Some(max)) = (seq, max) else {
        return Ok(reply(w, "ERR usage: SINCE <seq> [<max>]"));
    };
    let records = shared.lock_copy().engine.since(seq, max);
    writeln!(w, "MSGS {}", records.len())?;
    for rec in records {
        writeln!(w, "{} {} {}", rec.seq, rec.mailbox, rec.body.len())?;
        w.write_all(&rec.body)?;
        w.write_all(b"\n")?;
    }
    Ok(Flow::Continue)
}
