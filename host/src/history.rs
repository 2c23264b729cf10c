//! The event history: `data_dir/events.jsonl`, one JSON event per line,
//! appended by one writer task and read by the admin API.
//!
//! An event's sequence number is its line number in the file, from 1. A
//! reader that has seen everything up to N asks for what came after N, so
//! `warden events --follow` resumes after a lost connection with nothing
//! missed and nothing twice. The writer announces the number of lines it
//! has written (a watch), which is what a follower waits on: no polling.
//!
//! The writer is fed by the monitor's record (`monitor/bus.rs`), a queue
//! that never drops an event: it takes everything queued at once and writes
//! it with one write and one flush, so it keeps up with thousands of events
//! a second (a resource start is several) where one write per event fell
//! behind.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures_util::Stream;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::monitor::{Event, Record};

/// At most this many events go into one write.
const BATCH: usize = 4096;

/// The file name of the history in the data directory.
pub const FILE: &str = "events.jsonl";

/// How many events a follower may have in flight before the reader waits
/// for it (a slow client slows its own reader, nobody else).
const FOLLOW_BUFFER: usize = 64;

/// The writer task, and how far it has taken the record.
pub struct Writer {
    task: JoinHandle<()>,
    queued: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
}

impl Writer {
    /// Waits until the writer has written (or failed to write) every event
    /// queued so far, at most `limit`, then stops it. Shutdown's last step:
    /// the events of the groups going offline are in the history.
    pub async fn finish(self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.taken.load(Ordering::SeqCst) < self.queued.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.task.abort();
    }

    /// Stops the writer now (the agent leaves its services running and
    /// exits at once).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// The history as readers see it: its file, and the writer's line count.
#[derive(Clone)]
pub struct History {
    path: PathBuf,
    written: watch::Receiver<u64>,
}

/// Which events an API call wants; every field that is set must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only events of this resource.
    pub resource: Option<String>,
    /// Only events of this kind (`state`, `check`, `policy`, ...).
    pub event: Option<String>,
    /// Only events at or after this instant (milliseconds since the epoch).
    pub since_ms: Option<u64>,
}

impl Filter {
    fn matches(&self, event: &Value) -> bool {
        self.resource
            .as_deref()
            .is_none_or(|r| event["resource"] == r)
            && self.event.as_deref().is_none_or(|k| event["event"] == k)
            && self
                .since_ms
                .is_none_or(|since| event["at_ms"].as_u64().unwrap_or(0) >= since)
    }
}

/// Where a follower starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The newest this many matching events of the history, then new ones.
    Last(usize),
    /// Every matching event after this sequence number. A number past the
    /// end of the history means the history is not the one the follower
    /// saw (a new agent with a fresh data directory): it gets all of it.
    After(u64),
}

/// Append every event of `record` (the non-routine ones) to
/// `dir/events.jsonl`, one JSON object per line; returns the writer and the
/// history for readers. The writer's end (shutdown stops it) ends every
/// follower's stream.
pub async fn spawn_writer(record: Record, dir: &Path) -> Result<(Writer, History)> {
    let path = dir.join(FILE);
    let (file, lines) = open_for_append(&path).await?;
    let (announce, written) = watch::channel(lines);
    let Record { events, queued } = record;
    let taken = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(write_batches(
        BatchWriter {
            file,
            path: path.clone(),
            lines,
            announce,
            taken: taken.clone(),
        },
        events,
    ));
    let writer = Writer {
        task,
        queued,
        taken,
    };
    Ok((writer, History { path, written }))
}

/// The history file at `path` opened to append, and how many lines it
/// holds. A line torn by a crash is ended, so the next event starts a line
/// of its own and line numbers stay sequence numbers.
async fn open_for_append(path: &Path) -> Result<(tokio::fs::File, u64)> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .await
        .with_context(|| format!("opening the event history {}", path.display()))?;
    let mut existing = Vec::new();
    file.read_to_end(&mut existing)
        .await
        .with_context(|| format!("reading the event history {}", path.display()))?;
    let mut lines = existing.iter().filter(|b| **b == b'\n').count() as u64;
    if existing.last().is_some_and(|b| *b != b'\n') {
        file.write_all(b"\n")
            .await
            .with_context(|| format!("ending a torn line of {}", path.display()))?;
        lines += 1;
    }
    Ok((file, lines))
}

/// The writer task's state: the file, its line count (announced to
/// readers after each batch lands) and how many events it has taken.
struct BatchWriter {
    file: tokio::fs::File,
    path: PathBuf,
    lines: u64,
    announce: watch::Sender<u64>,
    taken: Arc<AtomicU64>,
}

/// The writer task: the queued events in batches of up to [`BATCH`], each
/// batch one write, until the queue closes.
async fn write_batches(mut writer: BatchWriter, mut queue: mpsc::UnboundedReceiver<Event>) {
    let mut torn = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if queue.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let count = batch.len() as u64;
        let bytes = encode(batch.drain(..), torn);
        torn = !writer.append(&bytes, count).await;
        writer.taken.fetch_add(count, Ordering::SeqCst);
    }
}

/// `events` as the history's lines. After a failed write the file may end
/// in part of a line (`torn`): a newline first ends it, so these are not
/// glued onto it (the torn line keeps its number and is skipped by
/// readers).
fn encode(events: impl ExactSizeIterator<Item = Event>, torn: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(events.len() * 160 + 1);
    if torn {
        bytes.push(b'\n');
    }
    for event in events {
        // An event is plain data: serializing it cannot fail, and a line
        // that did would still keep the numbering.
        let line = serde_json::to_vec(&event).unwrap_or_default();
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    bytes
}

impl BatchWriter {
    /// Write `bytes` (`count` events) and, once they are in the file,
    /// announce the new line count; whether they were written. A failed
    /// write is logged: the events are lost, the agent goes on.
    async fn append(&mut self, bytes: &[u8], count: u64) -> bool {
        let written = async {
            self.file.write_all(bytes).await?;
            self.file.flush().await
        };
        match written.await {
            Ok(()) => {
                self.lines += count;
                self.announce.send_replace(self.lines);
                true
            }
            Err(err) => {
                tracing::error!(
                    "writing {count} event(s) to the event history {}: {err}",
                    self.path.display()
                );
                false
            }
        }
    }
}

impl History {
    /// The history file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest `limit` events that match, oldest first. Only those are
    /// kept while the history is scanned.
    pub async fn matching(&self, filter: &Filter, limit: usize) -> Result<Vec<Value>> {
        let (lines, _) = self.read_from(0).await?;
        let mut newest = std::collections::VecDeque::with_capacity(limit.min(1024));
        for (_, event) in parse(&lines, 1, filter) {
            if newest.len() == limit {
                newest.pop_front();
            }
            if limit > 0 {
                newest.push_back(event);
            }
        }
        Ok(newest.into())
    }

    /// Matching events with their sequence numbers: first those of the
    /// history that `start` asks for, then each new one as it is written,
    /// until the writer stops (the agent shuts down) or the stream is
    /// dropped. An unreadable history is an error here, before anything
    /// is sent; one that becomes unreadable later ends the stream.
    pub async fn follow(
        &self,
        filter: Filter,
        start: Start,
    ) -> Result<impl Stream<Item = (u64, Value)> + Send + 'static> {
        let mut written = self.written.clone();
        // Seen before reading: a line written meanwhile wakes the loop
        // below, and reading on from the offset sends it exactly once.
        written.borrow_and_update();
        let (lines, mut offset) = self.read_from(0).await?;
        let total = lines.len() as u64;
        let backlog: Vec<(u64, Value)> = parse(&lines, 1, &filter).collect();
        let backlog = match start {
            Start::After(seen) if seen <= total => {
                backlog.into_iter().filter(|(seq, _)| *seq > seen).collect()
            }
            Start::After(_) => backlog,
            Start::Last(limit) => {
                let skip = backlog.len().saturating_sub(limit);
                backlog.into_iter().skip(skip).collect()
            }
        };
        let (send, receive) = mpsc::channel(FOLLOW_BUFFER);
        let history = self.clone();
        tokio::spawn(async move {
            for event in backlog {
                if send.send(event).await.is_err() {
                    return;
                }
            }
            let mut next = total + 1;
            loop {
                let writer_gone = tokio::select! {
                    changed = written.changed() => changed.is_err(),
                    () = send.closed() => return,
                };
                let (lines, read_to) = match history.read_from(offset).await {
                    Ok(read) => read,
                    Err(err) => {
                        tracing::warn!("following the event history: {err:#}");
                        return;
                    }
                };
                offset = read_to;
                let count = lines.len() as u64;
                for event in parse(&lines, next, &filter) {
                    if send.send(event).await.is_err() {
                        return;
                    }
                }
                next += count;
                if writer_gone {
                    return;
                }
            }
        });
        Ok(futures_util::stream::unfold(receive, |mut receive| async {
            receive.recv().await.map(|event| (event, receive))
        }))
    }

    /// The complete lines from byte `offset` on, and the offset after the
    /// last of them (a line still being written waits for the next read).
    async fn read_from(&self, offset: u64) -> Result<(Vec<String>, u64)> {
        let context = || format!("reading the event history {}", self.path.display());
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .with_context(context)?;
        file.seek(SeekFrom::Start(offset))
            .await
            .with_context(context)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await.with_context(context)?;
        let complete = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |end| end + 1);
        let lines = String::from_utf8_lossy(&bytes[..complete])
            .lines()
            .map(str::to_string)
            .collect();
        Ok((lines, offset + complete as u64))
    }
}

/// The events among `lines` that match, numbered from `first`; a line
/// that is not JSON keeps its number and is skipped.
fn parse<'a>(
    lines: &'a [String],
    first: u64,
    filter: &'a Filter,
) -> impl Iterator<Item = (u64, Value)> + 'a {
    lines.iter().zip(first..).filter_map(move |(line, seq)| {
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|event| filter.matches(event))
            .map(|event| (seq, event))
    })
}
