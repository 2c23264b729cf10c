//! Continuous replication of the store: an active copy ships its
//! write-ahead log to passive copies, as Exchange 2007's CCR/SCR does.
//!
//! - The active copy serves client writes and ships its log on the
//!   replication port ([`shipper`]); each passive copy pulls from its own
//!   durable position, writes the records durably to its own log,
//!   acknowledges them, then replays them into its store ([`puller`]).
//! - [`SyncMode::Sync`]: a write is acknowledged to the client only once at
//!   least one passive copy has acknowledged it (durable on two disks);
//!   [`SyncMode::Async`]: after the local fsync, with the copies' lag
//!   bounded by `--max-async-lag` (past it, writes are refused).
//! - Fencing by generation ([`generation`]): every activation has a
//!   generation; a copy that learns of a newer one than its own stops being
//!   active for good (deposed), and a passive refuses log from an older one.
//!
//! [`Node`] is the state a store process shares between its client
//! connections, its shippers and its puller. Lock order: [`Node::copy`]
//! before the progress lock, never the other way round.

pub mod generation;
pub mod puller;
pub mod shipper;
pub mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::store::Engine;

/// What a copy does with client writes and with its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves writes and ships its log.
    Active,
    /// Follows an active copy; serves reads, refuses writes.
    Passive,
    /// Was active until it learned of a newer generation: refuses writes,
    /// ships nothing, pulls nothing. Restart it as a passive copy.
    Deposed,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
            Role::Deposed => "deposed",
        }
    }
}

/// When a client write is acknowledged on an active copy with replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// After at least one passive copy has it durably.
    Sync,
    /// After the local fsync; the copies' lag is bounded by `max_async_lag`.
    Async,
}

/// The replication settings of one store process (its command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where this copy serves its log (when active). `None`: no passive
    /// can follow it, and writes are acknowledged after the local fsync.
    pub listen: Option<SocketAddr>,
    /// The active copy a passive copy pulls from.
    pub source: Option<SocketAddr>,
    pub mode: SyncMode,
    /// How long a sync write waits for a passive copy's acknowledgement.
    pub sync_timeout: Duration,
    /// Async mode: refuse writes once this many records are not on any
    /// passive copy. `None`: unbounded (the lag is only reported).
    pub max_async_lag: Option<u64>,
    /// How long either side of a replication connection waits for the
    /// other (handshake, a frame, an acknowledgement, a write) before it
    /// drops the connection. The active sends a heartbeat four times as often.
    pub peer_timeout: Duration,
}

impl Config {
    /// The active's heartbeat interval: `POS` lines when there is nothing to ship.
    pub fn heartbeat(&self) -> Duration {
        self.peer_timeout / 4
    }
}

/// A passive copy's health as COPY-STATUS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Cannot follow the active now (unreachable, refused, a bad peer); it
    /// keeps retrying.
    Failed(String),
    /// Its log disagrees with the active's: it stops until `RESEED`.
    Diverged(String),
    /// The active copy only: it serves, its data is the newest there is,
    /// but it refuses writes for now (sync with no passive connected, async
    /// at its lag limit). Not a failure: it passes as soon as a passive
    /// copy connects or catches up.
    Refusing(String),
}

/// The store and the copy's role, under one lock so that a role change and
/// a write can never interleave: once DEACTIVATE returns, no write lands.
pub struct Copy {
    pub engine: Engine,
    pub role: Role,
    /// This copy's own generation (a passive's is the newest it accepted).
    pub generation: u64,
    /// The newest generation this copy knows (persisted, never decreases).
    pub newest: u64,
    /// A planned step-down (`DEACTIVATE` of its own generation) is under
    /// way: the role is `Deposed` (no write lands), but the shippers go on
    /// until the connected passives have the last position.
    pub draining: bool,
}

impl Copy {
    /// Records a generation heard of; persisted before this returns if it
    /// is newer, so that fencing survives a crash.
    fn learn(&mut self, generation: u64) -> io::Result<()> {
        if generation > self.newest {
            generation::store(self.engine.dir(), generation)?;
            self.newest = generation;
        }
        Ok(())
    }
}

/// What the shippers, the puller and COPY-STATUS share besides the store.
struct Progress {
    /// Active: its log position, for shippers to wait on.
    written: u64,
    /// Active: the highest position any passive copy acknowledged (durable
    /// there) since this copy became active.
    best_copied: u64,
    /// Active: passive copies connected now.
    passives: usize,
    /// Active: what each connected passive copy has acknowledged, by
    /// connection (its position at the handshake to begin with).
    acked: HashMap<u64, u64>,
    /// Active: the number the next passive connection is known by.
    next_connection: u64,
    /// Not active any more: shippers say BYE, sync writes stop waiting.
    fenced: bool,
    /// Passive: the active's position as last heard.
    source_position: Option<u64>,
    /// Passive: how following the active goes.
    health: Health,
    /// Passive: the puller must stop (ACTIVATE, RESEED).
    stop_pulling: bool,
    /// Passive: the puller's connection, shut down to stop it at once.
    pull_stream: Option<TcpStream>,
}

/// Why a write was not acknowledged.
#[derive(Debug)]
pub enum WriteError {
    /// Temporary (`UNAVAILABLE` on the wire): not the active copy, not
    /// confirmed by a passive copy in time, the lag limit reached.
    Unavailable(String),
    /// The request itself is wrong (`ERR`).
    Refused(String),
    /// The log's state on disk is unknown: the process must stop.
    Fatal(String),
}

/// One store process: its copy of the store and its replication state.
pub struct Node {
    pub copy: Mutex<Copy>,
    progress: Mutex<Progress>,
    changed: Condvar,
    pub config: Config,
    puller: Mutex<Option<JoinHandle<()>>>,
    /// Held through a whole RESEED, so two never interleave (two pullers
    /// would write the same log).
    reseeding: Mutex<()>,
}

impl Node {
    /// Wraps a mounted store. `role` is `Active` or `Passive` from the
    /// command line; an active started with a generation older than the one
    /// kept on disk comes up deposed. Returns the node and a line for the
    /// log about its role.
    pub fn new(
        engine: Engine,
        role: Role,
        generation: u64,
        config: Config,
    ) -> io::Result<(Arc<Node>, String)> {
        let newest = generation::load(engine.dir())?;
        let mut copy = Copy {
            engine,
            role,
            generation,
            newest,
            draining: false,
        };
        let note = match role {
            Role::Active if generation < newest => {
                copy.role = Role::Deposed;
                format!(
                    "started as the active copy with generation {generation}, but generation {newest} is known: deposed, refusing writes"
                )
            }
            Role::Active => {
                copy.learn(generation)?;
                format!("active copy, generation {generation}")
            }
            Role::Passive | Role::Deposed => {
                copy.learn(generation)?;
                copy.generation = copy.newest;
                format!("passive copy, generation {}", copy.generation)
            }
        };
        let progress = Progress {
            written: copy.engine.position(),
            best_copied: 0,
            passives: 0,
            acked: HashMap::new(),
            next_connection: 0,
            fenced: copy.role != Role::Active,
            source_position: None,
            health: Health::Failed("not connected to the active copy yet".into()),
            stop_pulling: false,
            pull_stream: None,
        };
        let node = Arc::new(Node {
            copy: Mutex::new(copy),
            progress: Mutex::new(progress),
            changed: Condvar::new(),
            config,
            puller: Mutex::new(None),
            reseeding: Mutex::new(()),
        });
        Ok((node, note))
    }

    /// Locks the copy. A poisoned lock means a thread panicked mid-append:
    /// the in-memory view may disagree with the log, so stop without CLEAN
    /// and let the next mount recover from the log.
    pub fn lock_copy(&self) -> MutexGuard<'_, Copy> {
        self.copy.lock().unwrap_or_else(|_| {
            log!("a thread panicked while holding the store; exiting without CLEAN");
            process::exit(1)
        })
    }

    /// Progress is bookkeeping only: after a panic its last values are as
    /// good as any, so a poisoned lock is taken over.
    fn lock_progress(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replicating(&self) -> bool {
        self.config.listen.is_some()
    }

    /// A client write (PUT): appended durably, then, in sync mode, held
    /// until a passive copy has it. Returns the message's seq.
    pub fn write(&self, mailbox: &str, body: &[u8]) -> Result<u64, WriteError> {
        let seq = {
            let mut copy = self.lock_copy();
            match copy.role {
                Role::Active => {}
                Role::Passive => {
                    return Err(WriteError::Unavailable(format!(
                        "this is a passive copy (generation {}): writes go to the active copy",
                        copy.generation
                    )));
                }
                Role::Deposed if copy.newest == copy.generation => {
                    return Err(WriteError::Unavailable(format!(
                        "this copy stepped down (generation {}): writes go to the active copy",
                        copy.generation
                    )));
                }
                Role::Deposed => {
                    return Err(WriteError::Unavailable(format!(
                        "this copy was deposed (generation {} is newer than its {}): writes go to the active copy",
                        copy.newest, copy.generation
                    )));
                }
            }
            if let (true, SyncMode::Async, Some(max)) = (
                self.replicating(),
                self.config.mode,
                self.config.max_async_lag,
            ) {
                let lag = copy
                    .engine
                    .position()
                    .saturating_sub(self.lock_progress().best_copied);
                if lag >= max {
                    return Err(WriteError::Unavailable(format!(
                        "{lag} records are on no passive copy, the --max-async-lag of {max}: writes wait until a passive copy catches up"
                    )));
                }
            }
            match copy.engine.append(mailbox, body) {
                Ok(seq) => seq,
                Err(e) if e.fatal => return Err(WriteError::Fatal(e.to_string())),
                Err(e) => return Err(WriteError::Refused(e.to_string())),
            }
        };
        {
            let mut p = self.lock_progress();
            p.written = p.written.max(seq);
            self.changed.notify_all();
        }
        if self.replicating() && self.config.mode == SyncMode::Sync {
            self.wait_copied(seq)?;
        }
        Ok(seq)
    }

    /// Waits until a passive copy has acknowledged `seq`, the copy is
    /// deposed, or the sync timeout passes.
    fn wait_copied(&self, seq: u64) -> Result<(), WriteError> {
        let deadline = Instant::now() + self.config.sync_timeout;
        let mut p = self.lock_progress();
        loop {
            if p.best_copied >= seq {
                return Ok(());
            }
            if p.fenced {
                return Err(WriteError::Unavailable(format!(
                    "deposed before a passive copy confirmed message {seq}; it may not survive"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WriteError::Unavailable(format!(
                    "no passive copy confirmed message {seq} within {} ms ({} connected): it is in this copy's log only",
                    self.config.sync_timeout.as_millis(),
                    p.passives
                )));
            }
            p = self
                .changed
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The COPY-STATUS reply (README.md, "Copies: control and status").
    pub fn status_line(&self) -> String {
        let copy = self.lock_copy();
        let p = self.lock_progress();
        let position = copy.engine.position();
        let replayed = copy.engine.last_seq();
        let mode = match (self.replicating(), self.config.mode) {
            (false, _) => "none",
            (true, SyncMode::Sync) => "sync",
            (true, SyncMode::Async) => "async",
        };
        let (copied, lag, health) = match copy.role {
            Role::Active => {
                let lag = position.saturating_sub(p.best_copied);
                let health = match (self.replicating(), self.config.mode) {
                    (true, SyncMode::Sync) if p.passives == 0 => {
                        Health::Refusing("no passive copy connected: writes refused".into())
                    }
                    (true, SyncMode::Async)
                        if self.config.max_async_lag.is_some_and(|max| lag >= max) =>
                    {
                        Health::Refusing(format!(
                            "lag {lag} has reached --max-async-lag: writes refused"
                        ))
                    }
                    _ => Health::Healthy,
                };
                (p.best_copied, Some(lag), health)
            }
            Role::Deposed => (
                p.best_copied,
                Some(position.saturating_sub(p.best_copied)),
                Health::Failed(if copy.newest == copy.generation {
                    format!("stepped down from generation {}", copy.generation)
                } else {
                    format!(
                        "deposed: generation {} is newer than this copy's {}",
                        copy.newest, copy.generation
                    )
                }),
            ),
            Role::Passive => (
                position,
                p.source_position.map(|s| s.saturating_sub(position)),
                p.health.clone(),
            ),
        };
        let lag_text = lag.map_or_else(|| "unknown".to_string(), |l| l.to_string());
        let health_text = match &health {
            Health::Healthy => "healthy".to_string(),
            Health::Failed(why) => format!("failed reason={}", wire::one_line(why)),
            Health::Diverged(why) => format!("diverged reason={}", wire::one_line(why)),
            Health::Refusing(why) => format!("refusing reason={}", wire::one_line(why)),
        };
        format!(
            "COPY-STATUS role={} generation={} written={position} copied={copied} replayed={replayed} lag={lag_text} copy_queue={lag_text} replay_queue={} passives={} mode={mode} health={health_text}",
            copy.role.name(),
            copy.generation,
            copy.engine.replay_queue(),
            p.passives,
        )
    }

    /// ACTIVATE: a passive (or deposed) copy becomes the active one with
    /// `generation`, which must be newer than any it knows. It stops
    /// pulling, replays what it has, then serves writes (and its log, with
    /// `--replication-listen`).
    pub fn activate(&self, generation: u64) -> Result<String, String> {
        let mut copy = self.lock_copy();
        if copy.role == Role::Active {
            return Err(format!(
                "already the active copy, generation {}",
                copy.generation
            ));
        }
        if generation <= copy.newest {
            return Err(format!(
                "generation {generation} is not newer than {}, the newest this copy knows",
                copy.newest
            ));
        }
        copy.learn(generation)
            .map_err(|e| format!("cannot record generation {generation}: {e}"))?;
        // Stopped under the copy lock, which the puller holds to write a
        // batch and checks the stop under: a batch it is writing came
        // before, nothing it receives after is written. Its thread is not
        // waited for: it may be inside a connect to an active that is gone.
        self.signal_puller_stop();
        // Dropping the handle detaches the thread; it ends on its own.
        drop(self.puller.lock().ok().and_then(|mut slot| slot.take()));
        let replayed = copy.engine.replay();
        copy.role = Role::Active;
        copy.draining = false;
        copy.generation = generation;
        let position = copy.engine.position();
        let mut p = self.lock_progress();
        *p = Progress {
            written: position,
            best_copied: 0,
            passives: p.passives,
            acked: std::mem::take(&mut p.acked),
            next_connection: p.next_connection,
            fenced: false,
            source_position: None,
            health: Health::Healthy,
            stop_pulling: true,
            pull_stream: None,
        };
        self.changed.notify_all();
        log!(
            "activated: generation {generation}, position {position} ({replayed} copied records replayed)"
        );
        Ok(format!(
            "OK active generation={generation} position={position}"
        ))
    }

    /// DEACTIVATE: the active copy steps down because `generation`, newer
    /// than its own, exists (or is about to). Idempotent on a deposed copy.
    pub fn deactivate(&self, generation: u64) -> Result<String, String> {
        let mut copy = self.lock_copy();
        match copy.role {
            Role::Passive => {
                return Err("this is a passive copy: there is nothing to deactivate".into());
            }
            Role::Active if generation < copy.generation => {
                return Err(format!(
                    "generation {generation} is older than this copy's {}",
                    copy.generation
                ));
            }
            // Its own generation is a planned step-down (the group goes
            // offline, or moves and the next activation takes a newer one).
            Role::Active if generation == copy.generation => {
                return Ok(self.step_down(copy));
            }
            Role::Active | Role::Deposed => {}
        }
        copy.learn(generation)
            .map_err(|e| format!("cannot record generation {generation}: {e}"))?;
        self.depose(&mut copy, &format!("DEACTIVATE {generation}"));
        Ok(format!(
            "OK deposed generation={} newest={} position={}",
            copy.generation,
            copy.newest,
            copy.engine.position()
        ))
    }

    /// A planned step-down, as Exchange's switchover: no write lands from
    /// here on, then the connected passive copies get the rest of the log,
    /// each up to this copy's last position (for at most
    /// `--sync-timeout-ms`), and only then is the copy deposed (its
    /// shippers say BYE). A passive activated next loses nothing. The
    /// answer says how many of the connected passives had it all.
    fn step_down(&self, mut copy: MutexGuard<'_, Copy>) -> String {
        copy.role = Role::Deposed;
        copy.draining = true;
        let (generation, position) = (copy.generation, copy.engine.position());
        drop(copy);
        let (caught_up, connected) = self.wait_passives_at(position);
        let mut copy = self.lock_copy();
        if copy.draining {
            copy.draining = false;
            self.depose(
                &mut copy,
                &format!(
                    "DEACTIVATE {generation}, a planned step-down: {caught_up} of {connected} passive copies have position {position}"
                ),
            );
        }
        format!(
            "OK deposed generation={generation} newest={} position={position} caught_up={caught_up}/{connected}",
            copy.newest
        )
    }

    /// Waits until every connected passive copy has acknowledged
    /// `position`, the copy is deposed, or `--sync-timeout-ms` passes;
    /// how many had it, of how many connected.
    fn wait_passives_at(&self, position: u64) -> (usize, usize) {
        let deadline = Instant::now() + self.config.sync_timeout;
        let mut p = self.lock_progress();
        loop {
            let connected = p.acked.len();
            let caught_up = p.acked.values().filter(|&&at| at >= position).count();
            let now = Instant::now();
            if caught_up == connected || p.fenced || now >= deadline {
                return (caught_up, connected);
            }
            p = self
                .changed
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Marks the copy deposed (the caller holds the copy lock and has
    /// recorded the newer generation): shippers say BYE, waiting sync
    /// writes fail, no write is accepted from here on.
    fn depose(&self, copy: &mut Copy, why: &str) {
        if copy.role != Role::Deposed {
            log!(
                "deposed ({why}): the newest generation is {}, this copy's {}; refusing writes, shipping nothing",
                copy.newest,
                copy.generation
            );
        }
        copy.role = Role::Deposed;
        copy.draining = false;
        let mut p = self.lock_progress();
        p.fenced = true;
        self.changed.notify_all();
    }

    /// RESEED: a passive copy drops its log and its store and pulls
    /// everything from the active again (after it was found diverged).
    pub fn reseed(self: &Arc<Self>) -> Result<String, String> {
        let Some(source) = self.config.source else {
            return Err("RESEED needs a passive copy started with --replicate-from".into());
        };
        let _one_at_a_time = self
            .reseeding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.lock_copy().role != Role::Passive {
            return Err("only a passive copy can be reseeded".into());
        }
        // Two pullers must never write at once: wait for this one to end.
        self.stop_puller();
        let mut copy = self.lock_copy();
        if copy.role != Role::Passive {
            return Err("activated meanwhile: not reseeded".into());
        }
        let dropped = copy.engine.position();
        copy.engine
            .reset()
            .map_err(|e| format!("cannot drop the log: {e}"))?;
        drop(copy);
        log!("reseeding from {source}: dropped {dropped} records, pulling the whole log");
        {
            let mut p = self.lock_progress();
            p.health = Health::Failed("reseeding: not connected to the active copy yet".into());
            p.source_position = None;
        }
        self.start_puller();
        Ok(format!("OK reseeding from={source} dropped={dropped}"))
    }

    /// Starts following `config.source` (a passive copy at start, and after RESEED).
    pub fn start_puller(self: &Arc<Self>) {
        self.lock_progress().stop_pulling = false;
        let node = Arc::clone(self);
        match thread::Builder::new()
            .name("puller".into())
            .spawn(move || puller::run(&node))
        {
            Ok(handle) => {
                if let Ok(mut slot) = self.puller.lock() {
                    *slot = Some(handle);
                }
            }
            Err(e) => {
                log!("cannot start the replication puller: {e}");
                process::exit(1);
            }
        }
    }

    /// Stops the puller and waits until its thread has ended: after this
    /// no copied record is written until [`Node::start_puller`]. The caller
    /// must not hold the copy lock (the puller may need it to finish).
    fn stop_puller(&self) {
        self.signal_puller_stop();
        let handle = self.puller.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            log!("the replication puller had panicked");
        }
    }

    /// Tells the puller to stop and cuts its connection, without waiting.
    fn signal_puller_stop(&self) {
        let mut p = self.lock_progress();
        p.stop_pulling = true;
        if let Some(stream) = p.pull_stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
    }

    /// Whether the puller must stop (checked by the puller under the copy
    /// lock before it changes anything).
    fn pulling_stopped(&self) -> bool {
        self.lock_progress().stop_pulling
    }
}
