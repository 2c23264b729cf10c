//! `smtp-instance`: the SMTP service of a virtual server.
//!
//! Online starts the program (by default `mail-smtp --listen {address}
//! --store {store}`) and waits for its banner; looks-alive is a TCP
//! connect; is-alive is an SMTP dialogue (220 banner, EHLO answered 250,
//! QUIT); offline stops it with SIGTERM. Works against any SMTP server on
//! `address`.

use std::time::Duration;

use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props};

struct Smtp {
    address: String,
    answer: Duration,
}

impl ServiceType for Smtp {
    const NAME: &'static str = "smtp-instance";
    const DESCRIPTION: &'static str =
        "The SMTP service of a virtual server, checked by an SMTP dialogue.";
    const SERVICE: ServiceDefaults = ServiceDefaults::new("--listen {address} --store {store}");
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the SMTP service listens (host:port)"),
        Property::string("store", "The store's address, for the args template").default(""),
        Property::duration_ms("answer-timeout-ms", "How long a check waits for answers")
            .default("3000"),
    ];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(Smtp {
            address: props.address("address")?,
            answer: props.duration("answer-timeout-ms")?,
        })
    }

    fn check(&self) -> Result<(), String> {
        net::smtp_check(&self.address, Deadline::after(self.answer))
    }

    fn quick_check(&self) -> Result<(), String> {
        net::connect(&self.address, Deadline::after(self.answer)).map(drop)
    }
}

warden_sdk::export_type!(Managed<Smtp>);
