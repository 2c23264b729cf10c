//! mail-indexer: MS Search. Follows the store (SEQ / SINCE), keeps an
//! inverted index on disk, and answers SEARCH, LAG and INDEXED.

use std::io::{self, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::fsutil;
use crate::index::{self, Index};
use crate::lineio::{self, ReadLine};
use crate::store_client::{ClientError, StoreClient};
use crate::{log, server, signals};

const USAGE: &str = "\
usage: mail-indexer --store ADDR --data DIR --listen ADDR [--poll-ms N]

Indexes the mail store at --store into DIR, polling every N ms (default
1000), and answers PING, SEARCH <word>, LAG and INDEXED on ADDR.
";

const SPEC: Spec = Spec {
    program: "mail-indexer",
    usage: USAGE,
    flags: &[
        ("--store", true),
        ("--data", true),
        ("--listen", true),
        ("--poll-ms", true),
    ],
};

/// Messages fetched per SINCE, so one poll never holds a huge batch.
const BATCH: usize = 500;
const MAX_LINE: usize = 1024;

struct State {
    index: RwLock<Index>,
    dir: PathBuf,
    /// Serializes file writes (poller vs. shutdown).
    save: Mutex<()>,
}

impl State {
    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self) -> io::Result<()> {
        let _g = self.save.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = self.read().encode();
        index::save(&self.dir, &bytes)
    }
}

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-indexer");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let store = args.need_addr("--store");
    let dir = args.need_path("--data");
    let listen = args.need_addr("--listen");
    let poll = Duration::from_millis(args.number_or("--poll-ms", 1000, 10));

    let lock = prepare(&dir).unwrap_or_else(|e| {
        log!("cannot use {}: {e}", dir.display());
        process::exit(1)
    });
    let index = match index::load(&dir) {
        Ok(Some(ix)) => {
            log!(
                "loaded the index: {} words, indexed up to seq {}",
                ix.words(),
                ix.indexed_seq()
            );
            ix
        }
        Ok(None) => {
            log!("no index yet in {}: indexing from seq 0", dir.display());
            Index::default()
        }
        Err(why) => {
            log!("the index file is damaged ({why}): rebuilding from seq 0");
            Index::default()
        }
    };
    let listener = super::listen_or_exit(listen);
    let state = Arc::new(State {
        index: RwLock::new(index),
        dir,
        save: Mutex::new(()),
    });
    let on_signal = Arc::clone(&state);
    if let Err(e) = signals::on_terminate(move |sig| {
        match on_signal.persist() {
            Ok(()) => log!(
                "stopping ({sig}), index saved at seq {}",
                on_signal.read().indexed_seq()
            ),
            Err(e) => log!("stopping ({sig}); could not save the index: {e}"),
        }
        drop(lock);
        process::exit(0)
    }) {
        log!("cannot install signal handlers: {e}");
        process::exit(1);
    }
    let client = StoreClient::new(store, Duration::from_secs(2));
    let (s, c) = (Arc::clone(&state), client.clone());
    thread::Builder::new()
        .name("poller".into())
        .spawn(move || poll_forever(&s, &c, poll))
        .unwrap_or_else(|e| {
            log!("cannot start the poller: {e}");
            process::exit(1)
        });
    let local = listener.local_addr().map_or(listen, |a| a);
    log!(
        "listening on {local}, following {store} every {} ms",
        poll.as_millis()
    );
    server::serve(
        listener,
        b"ERR busy: too many connections\n",
        move |stream, peer| {
            if let Err(e) = handle(stream, &state, &client)
                && !lineio::is_disconnect(&e)
                && !lineio::is_timeout(&e)
            {
                log!("connection {peer}: {e}");
            }
        },
    )
}

fn prepare(dir: &Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    fsutil::lock_dir(dir)
}

fn poll_forever(state: &State, client: &StoreClient, poll: Duration) -> ! {
    let mut store_down = false;
    loop {
        match poll_once(state, client) {
            Ok(n) => {
                if store_down {
                    log!("store {} reachable again", client.addr());
                    store_down = false;
                }
                if n == BATCH {
                    continue; // more waiting: don't sleep
                }
            }
            Err(e) => {
                if !store_down {
                    log!("{e}; retrying every {} ms", poll.as_millis());
                    store_down = true;
                }
            }
        }
        thread::sleep(poll);
    }
}

/// Indexes what the store has beyond our seq; returns how many messages.
fn poll_once(state: &State, client: &StoreClient) -> Result<usize, ClientError> {
    let mut conn = client.connect()?;
    let store_seq = conn.seq()?;
    let indexed = state.read().indexed_seq();
    if store_seq < indexed {
        // A store's seq never goes back (it only ever drops records it
        // never acknowledged, which SINCE never showed us), so this is a
        // different store: the index describes messages that are gone.
        log!(
            "the store's seq {store_seq} is behind the index ({indexed}): the store was replaced; rebuilding the index from seq 0"
        );
        *state.write() = Index::default();
        if let Err(e) = state.persist() {
            log!("saving the emptied index failed: {e}");
        }
        return Ok(0);
    }
    if store_seq == indexed {
        return Ok(0);
    }
    let msgs = conn.since(indexed, Some(BATCH))?;
    if msgs.is_empty() {
        return Ok(0);
    }
    {
        let mut ix = state.write();
        for m in &msgs {
            if m.seq > ix.indexed_seq() {
                ix.add(m.seq, &m.mailbox, &m.body);
            }
        }
    }
    let seq = state.read().indexed_seq();
    match state.persist() {
        Ok(()) => log!("indexed {} messages, up to seq {seq}", msgs.len()),
        // The index in memory is still right; the next batch saves again.
        Err(e) => log!(
            "indexed {} messages, up to seq {seq}, but saving failed: {e}",
            msgs.len()
        ),
    }
    Ok(msgs.len())
}

fn handle(stream: TcpStream, state: &State, client: &StoreClient) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
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
            continue;
        };
        let args = &words[1..];
        match (cmd.to_ascii_uppercase().as_str(), args) {
            ("PING", []) => writeln!(w, "PONG")?,
            ("INDEXED", []) => writeln!(w, "INDEXED {}", state.read().indexed_seq())?,
            ("LAG", []) => {
                // Ask the store now, so LAG is true even between polls.
                let store_seq = client.connect().and_then(|mut c| c.seq());
                let indexed = state.read().indexed_seq();
                match store_seq {
                    Ok(s) => writeln!(w, "LAG {}", s.saturating_sub(indexed))?,
                    Err(_) => writeln!(w, "LAG unknown")?,
                }
            }
            ("SEARCH", [word]) => {
                let ix = state.read();
                match ix.search(word) {
                    Ok(hits) => {
                        let mut out = format!("HITS {}\n", hits.len());
                        for h in hits {
                            out.push_str(&format!("{} {}\n", h.mailbox, h.seq));
                        }
                        drop(ix);
                        w.write_all(out.as_bytes())?;
                    }
                    Err(why) => writeln!(w, "ERR {why}")?,
                }
            }
            ("SEARCH", _) => writeln!(w, "ERR usage: SEARCH <word>")?,
            ("PING" | "INDEXED" | "LAG", _) => writeln!(w, "ERR {cmd} takes no arguments")?,
            _ => writeln!(w, "ERR unknown command (PING SEARCH LAG INDEXED)")?,
        }
        w.flush()?;
    }
}
