//! `ms-search`: content indexing of a virtual server's store. Depends on
//! the Store (a dependency in the group configuration).
//!
//! Online starts the indexer (by default `mail-indexer --store {store}
//! --data . --listen {address}`) and waits for `PING` -> `PONG`;
//! looks-alive is that PING; is-alive also asks `LAG` and fails when the
//! index is `max-lag` or more messages behind the store. `LAG unknown`
//! (the store cannot be reached) is logged, not a failure of the indexer:
//! the Store's own checks report the Store.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::host::{self, Level};
use warden_sdk::net::{Deadline, Dialogue};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{number, required, spec};

struct SearchType;

struct SearchInstance {
    service: Service,
    address: String,
    max_lag: u64,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<SearchInstance, PropertyError> {
    Ok(SearchInstance {
        service: Service::from_properties(properties)?,
        address: required(
            properties,
            "address",
            "the host:port the indexer listens on",
        )?
        .to_string(),
        max_lag: number(properties, "max-lag", 1000)?,
        answer_ms: number(properties, "answer-timeout-ms", 3000)?,
    })
}

impl SearchInstance {
    fn dialogue(&self) -> Result<Dialogue, String> {
        let mut indexer = Dialogue::connect(&self.address, Deadline::after_ms(self.answer_ms))?;
        indexer.ask("PING", "PONG")?;
        Ok(indexer)
    }

    fn lag(&self) -> Result<(), String> {
        let answer = self.dialogue()?.ask("LAG", "LAG ")?;
        match answer["LAG ".len()..].parse::<u64>() {
            Ok(lag) if lag >= self.max_lag => Err(format!(
                "the index lags the store by {lag} messages (bound: {})",
                self.max_lag
            )),
            Ok(_) => Ok(()),
            Err(_) => {
                host::log(
                    Level::Warn,
                    &format!("indexer cannot measure its lag: {answer:?}"),
                );
                Ok(())
            }
        }
    }

    fn check(&self, thorough: bool) -> Health {
        let result = self.service.running().and_then(|()| match thorough {
            true => self.lag(),
            false => self.dialogue().map(drop),
        });
        result.map_or_else(Health::Failed, |()| Health::Healthy)
    }
}

impl Guest for SearchType {
    type Instance = SearchInstance;

    fn describe() -> TypeInfo {
        let mut properties = service::properties(
            "--store {store} --data . --listen {address}",
            false,
            "30000",
        );
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                None,
                "Where the indexer listens (host:port)",
            ),
            spec(
                "store",
                PropertyKind::String,
                Some(""),
                "The store's address, for the args template",
            ),
            spec(
                "max-lag",
                PropertyKind::Integer,
                Some("1000"),
                "Fail when the index is this many messages behind",
            ),
            spec(
                "answer-timeout-ms",
                PropertyKind::DurationMs,
                Some("3000"),
                "How long a check waits for answers",
            ),
        ]);
        TypeInfo {
            name: "ms-search".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Content indexing of the store; fails when the index lags too far."
                .to_string(),
            properties,
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 5_000,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: 5_000,
            },
            flags: TypeFlags::empty(),
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        parse(&properties).map(drop)
    }
}

impl GuestInstance for SearchInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        self.service.start(|| self.dialogue().map(drop))
    }

    fn offline(&self) -> Result<(), String> {
        self.service.stop().map(drop)
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        self.check(false)
    }

    fn is_alive(&self) -> Health {
        self.check(true)
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "lag" => self.dialogue()?.ask("LAG", "LAG "),
            "pid" => self.service.pid(),
            other => Err(format!("unknown control code {other:?}; known: lag, pid")),
        }
    }
}

warden_sdk::export_plugin!(SearchType);
