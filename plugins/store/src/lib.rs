//! `store`: the mail store of a virtual server, kept in the resource's data
//! directory (`/data` in the sandbox; the service runs with `--data .` in
//! it). Its online has no pending timeout: mounting takes as long as
//! reading the log does (an operator can still cancel it).
//!
//! - Online reads the store's files through WASI: without the `CLEAN`
//!   marker the last dismount was not clean, and the service replays its
//!   write-ahead log when it starts (recovery). Online then waits, reporting
//!   progress, until the store answers `PING`. The last acknowledged `seq`
//!   is kept in the resource's checkpoint: a store that comes back behind
//!   it has lost acknowledged messages, and online fails saying so.
//! - Offline is a clean dismount: SIGTERM makes the store flush and write
//!   `CLEAN` before it exits (as `DISMOUNT` does, but without a window in
//!   which the exit could be taken for a crash); offline checks the marker.
//! - Terminate kills the service without the clean mark; the next online
//!   recovers.
//! - With `replication-listen` and `replicate-from` set, the store has
//!   copies on several nodes, active and passive (`copies.rs`): the type
//!   is replicated (contract 0.3.0), and the agent starts, activates and
//!   deactivates copies through it.

mod copies;

use std::time::Duration;

use warden_sdk::host::{self, Level};
use warden_sdk::net::{Deadline, Dialogue};
use warden_sdk::service::{Managed, Service, ServiceDefaults, ServiceType};
use warden_sdk::types::{PropertyError, TypeFlags};
use warden_sdk::{DATA_DIR, Property, Props, checkpoint, unknown_control};

use copies::CopySettings;

struct Store {
    address: String,
    answer: Duration,
    copies: CopySettings,
}

fn exists(file: &str) -> bool {
    std::fs::metadata(format!("{DATA_DIR}/{file}")).is_ok()
}

/// What the files say about the next mount, without changing anything.
fn verify() -> String {
    match (exists("wal.log"), exists("CLEAN")) {
        (false, false) => "new: no store yet, one is created".to_string(),
        (true, true) => "clean: the last dismount was clean".to_string(),
        (true, false) => "dirty: the last run did not dismount; the log is replayed".to_string(),
        (false, true) => {
            "corrupt: CLEAN without wal.log; the store will refuse to mount".to_string()
        }
    }
}

impl Store {
    fn ask(&self, request: &str, prefix: &str) -> Result<String, String> {
        self.ask_within(request, prefix, self.answer)
    }

    /// As [`Store::ask`], waiting up to `within` for the answer.
    fn ask_within(&self, request: &str, prefix: &str, within: Duration) -> Result<String, String> {
        Dialogue::connect(&self.address, Deadline::after(within))?.ask(request, prefix)
    }

    /// `seq` from the store's `STATUS` line.
    fn seq(&self) -> Result<u64, String> {
        let status = self.ask("STATUS", "STATUS ")?;
        status
            .split_whitespace()
            .find_map(|field| field.strip_prefix("seq="))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("STATUS without a seq: {status:?}"))
    }

    fn remember_seq(&self) {
        match self
            .seq()
            .and_then(|seq| checkpoint::set("seq", &seq.to_string()))
        {
            Ok(()) => {}
            Err(why) => host::log(Level::Warn, &format!("could not checkpoint the seq: {why}")),
        }
    }
}

impl ServiceType for Store {
    const NAME: &'static str = "store";
    const DESCRIPTION: &'static str =
        "The mail store: mounts, recovers from its log, dismounts cleanly.";
    const SERVICE: ServiceDefaults =
        ServiceDefaults::new("--data . --listen {address}").startup_timeout_ms("0");
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the store listens (host:port)"),
        Property::duration_ms("answer-timeout-ms", "How long a check waits for answers")
            .default("3000"),
        Property::string(
            "replication-listen",
            "Copies only: where this copy serves its log to passive copies once active \
             (host:port); empty: no copies",
        )
        .default(""),
        Property::string(
            "replicate-from",
            "Copies only: where a passive copy pulls the log from (host:port of the active \
             copy, e.g. the group's virtual address)",
        )
        .default(""),
        Property::string(
            "sync-mode",
            "Copies only: sync (a write is acknowledged once a passive copy has it) or async",
        )
        .default("sync"),
        Property::string(
            "max-async-lag",
            "Copies only, async: refuse writes while this many records are on no passive copy",
        )
        .default(""),
    ];
    const FLAGS: TypeFlags = TypeFlags::ONLINE_NO_PENDING_TIMEOUT;
    const CONTROLS: &'static [&'static str] = &["verify", "status"];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(Store {
            address: props.address("address")?,
            answer: props.duration("answer-timeout-ms")?,
            copies: CopySettings::from_props(props)?,
        })
    }

    /// `STATUS`; a healthy store's seq goes into the checkpoint.
    fn check(&self) -> Result<(), String> {
        self.ask("STATUS", "STATUS ")?;
        self.remember_seq();
        Ok(())
    }

    fn quick_check(&self) -> Result<(), String> {
        self.ask("PING", "PONG").map(drop)
    }

    fn ready(&self) -> Result<(), String> {
        self.quick_check()
    }

    fn online(&self, service: &Service) -> Result<(), String> {
        // Online is idempotent (a hot swap takes the new version through it
        // on the running store): the files of a running store say nothing
        // about its last dismount.
        let running = service.spawn.is_some() && service.running().is_ok();
        if !running {
            let state = verify();
            host::log(Level::Info, &format!("store files: {state}"));
            if state.starts_with("dirty") {
                host::report_progress("recovering: the store replays its log");
            }
        }
        service.start(|| self.ready())?;
        let seq = self.seq()?;
        let kept = checkpoint::get("seq")?.and_then(|s| s.parse::<u64>().ok());
        if let Some(kept) = kept
            && seq < kept
        {
            return Err(format!(
                "the store came back at seq {seq}, behind the {kept} it had acknowledged: \
                 acknowledged messages are lost"
            ));
        }
        checkpoint::set("seq", &seq.to_string())
    }

    fn offline(&self, service: &Service) -> Result<(), String> {
        self.remember_seq();
        service.stop()?;
        if exists("CLEAN") {
            Ok(())
        } else {
            Err("the store stopped without writing CLEAN: the next online recovers".to_string())
        }
    }

    fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "verify" => Ok(verify()),
            "status" => self.ask("STATUS", "STATUS "),
            other => Err(unknown_control(other, Self::CONTROLS)),
        }
    }
}

warden_sdk_replication::export_replicated_type!(Managed<Store>);
