//! `mta`: the message transfer agent of a virtual server. A cluster
//! singleton: at most one is online in the whole cluster.
//!
//! Online starts the program (by default `mail-mta --listen {address}
//! --store {store} --data .`, its queue in the resource's data directory)
//! and waits for its banner; looks-alive reads the 220 banner; is-alive is
//! the SMTP dialogue on its port. Offline stops it with SIGTERM (the queue
//! is always durable).

use std::time::Duration;

use warden_sdk::net::{self, Deadline, Dialogue};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::{PropertyError, TypeFlags};
use warden_sdk::{Property, Props};

struct Mta {
    address: String,
    answer: Duration,
}

impl ServiceType for Mta {
    const NAME: &'static str = "mta";
    const DESCRIPTION: &'static str = "The message transfer agent; one per cluster.";
    const SERVICE: ServiceDefaults =
        ServiceDefaults::new("--listen {address} --store {store} --data .");
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the MTA listens (host:port)"),
        Property::string("store", "The store's address, for the args template").default(""),
        Property::duration_ms("answer-timeout-ms", "How long a check waits for answers")
            .default("3000"),
    ];
    const FLAGS: TypeFlags = TypeFlags::CLUSTER_SINGLETON;

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(Mta {
            address: props.address("address")?,
            answer: props.duration("answer-timeout-ms")?,
        })
    }

    /// The whole SMTP dialogue.
    fn check(&self) -> Result<(), String> {
        net::smtp_check(&self.address, Deadline::after(self.answer))
    }

    /// The 220 banner alone.
    fn quick_check(&self) -> Result<(), String> {
        let mut smtp = Dialogue::connect(&self.address, Deadline::after(self.answer))?;
        smtp.expect_reply("220")
            .map(drop)
            .map_err(|e| format!("banner: {e}"))
    }

    fn ready(&self) -> Result<(), String> {
        self.quick_check()
    }
}

warden_sdk::export_type!(Managed<Mta>);
