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

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::net::{Deadline, Dialogue};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{DATA_DIR, checkpoint, number, required, spec};

struct StoreType;

struct StoreInstance {
    service: Service,
    address: String,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<StoreInstance, PropertyError> {
    Ok(StoreInstance {
        service: Service::from_properties(properties)?,
        address: required(properties, "address", "the host:port the store listens on")?.to_string(),
        answer_ms: number(properties, "answer-timeout-ms", 3000)?,
    })
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

impl StoreInstance {
    fn ask(&self, request: &str, prefix: &str) -> Result<String, String> {
        Dialogue::connect(&self.address, Deadline::after_ms(self.answer_ms))?.ask(request, prefix)
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

    fn check(&self, request: &str, prefix: &str) -> Health {
        match self
            .service
            .running()
            .and_then(|()| self.ask(request, prefix))
        {
            Ok(_) => Health::Healthy,
            Err(why) => Health::Failed(why),
        }
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

impl Guest for StoreType {
    type Instance = StoreInstance;

    fn describe() -> TypeInfo {
        let mut properties = service::properties("--data . --listen {address}", false, "0");
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                None,
                "Where the store listens (host:port)",
            ),
            spec(
                "answer-timeout-ms",
                PropertyKind::DurationMs,
                Some("3000"),
                "How long a check waits for answers",
            ),
        ]);
        TypeInfo {
            name: "store".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "The mail store: mounts, recovers from its log, dismounts cleanly."
                .to_string(),
            properties,
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 5_000,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: 5_000,
            },
            flags: TypeFlags::ONLINE_NO_PENDING_TIMEOUT,
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        parse(&properties).map(drop)
    }
}

impl GuestInstance for StoreInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        let state = verify();
        host::log(Level::Info, &format!("store files: {state}"));
        if state.starts_with("dirty") {
            host::report_progress("recovering: the store replays its log");
        }
        self.service.start(|| self.ask("PING", "PONG").map(drop))?;
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

    fn offline(&self) -> Result<(), String> {
        self.remember_seq();
        self.service.stop()?;
        if exists("CLEAN") {
            Ok(())
        } else {
            Err("the store stopped without writing CLEAN: the next online recovers".to_string())
        }
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        self.check("PING", "PONG")
    }

    fn is_alive(&self) -> Health {
        let health = self.check("STATUS", "STATUS ");
        if matches!(health, Health::Healthy) {
            self.remember_seq();
        }
        health
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "verify" => Ok(verify()),
            "status" => self.ask("STATUS", "STATUS "),
            "pid" => self.service.pid(),
            other => Err(format!(
                "unknown control code {other:?}; known: verify, status, pid"
            )),
        }
    }
}

warden_sdk::export_plugin!(StoreType);
