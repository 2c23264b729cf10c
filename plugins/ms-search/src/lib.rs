//! `ms-search`: content indexing of a virtual server's store. Depends on
//! the Store (a dependency in the group configuration).
//!
//! Online starts the indexer (by default `mail-indexer --store {store}
//! --data . --listen {address}`) and waits for `PING` -> `PONG`;
//! looks-alive is that PING; is-alive also asks `LAG` and fails when the
//! index is `max-lag` or more messages behind the store. `LAG unknown`
//! (the store cannot be reached) is logged, not a failure of the indexer:
//! the Store's own checks report the Store.

use std::time::Duration;

use warden_sdk::host::{self, Level};
use warden_sdk::net::{Deadline, Dialogue};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props, unknown_control};

struct Search {
    address: String,
    max_lag: u64,
    answer: Duration,
}

impl Search {
    /// A dialogue with the indexer, which has answered `PING`.
    fn dialogue(&self) -> Result<Dialogue, String> {
        let mut indexer = Dialogue::connect(&self.address, Deadline::after(self.answer))?;
        indexer.ask("PING", "PONG")?;
        Ok(indexer)
    }
}

impl ServiceType for Search {
    const NAME: &'static str = "ms-search";
    const DESCRIPTION: &'static str =
        "Content indexing of the store; fails when the index lags too far.";
    const SERVICE: ServiceDefaults =
        ServiceDefaults::new("--store {store} --data . --listen {address}");
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the indexer listens (host:port)"),
        Property::string("store", "The store's address, for the args template").default(""),
        Property::integer(
            "max-lag",
            "Fail when the index is this many messages behind",
        )
        .default("1000"),
        Property::duration_ms("answer-timeout-ms", "How long a check waits for answers")
            .default("3000"),
    ];
    const CONTROLS: &'static [&'static str] = &["lag"];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(Search {
            address: props.address("address")?,
            max_lag: props.u64("max-lag")?,
            answer: props.duration("answer-timeout-ms")?,
        })
    }

    /// `PING`, then `LAG` below `max-lag`; a lag the indexer cannot
    /// measure (the store is down) is the Store's failure, not this one's.
    fn check(&self) -> Result<(), String> {
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

    fn quick_check(&self) -> Result<(), String> {
        self.dialogue().map(drop)
    }

    fn ready(&self) -> Result<(), String> {
        self.quick_check()
    }

    fn control(&self, code: &str, _payload: &str) -> Result<String, String> {
        match code {
            "lag" => self.dialogue()?.ask("LAG", "LAG "),
            other => Err(unknown_control(other, Self::CONTROLS)),
        }
    }
}

warden_sdk::export_type!(Managed<Search>);
