//! `smtp-instance`: the SMTP service of a virtual server.
//!
//! Online starts the program (by default `mail-smtp --listen {address}
//! --store {store}`) and waits for its banner; looks-alive is a TCP
//! connect; is-alive is an SMTP dialogue (220 banner, EHLO answered 250,
//! QUIT); offline stops it with SIGTERM. Works against any SMTP server on
//! `address`.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{number, required, spec};

struct SmtpType;

struct SmtpInstance {
    service: Service,
    address: String,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<SmtpInstance, PropertyError> {
    Ok(SmtpInstance {
        service: Service::from_properties(properties)?,
        address: required(
            properties,
            "address",
            "the host:port the SMTP service listens on",
        )?
        .to_string(),
        answer_ms: number(properties, "answer-timeout-ms", 3000)?,
    })
}

fn health(result: Result<(), String>) -> Health {
    result.map_or_else(Health::Failed, |()| Health::Healthy)
}

impl Guest for SmtpType {
    type Instance = SmtpInstance;

    fn describe() -> TypeInfo {
        let mut properties =
            service::properties("--listen {address} --store {store}", false, "30000");
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                None,
                "Where the SMTP service listens (host:port)",
            ),
            spec(
                "store",
                PropertyKind::String,
                Some(""),
                "The store's address, for the args template",
            ),
            spec(
                "answer-timeout-ms",
                PropertyKind::DurationMs,
                Some("3000"),
                "How long a check waits for answers",
            ),
        ]);
        TypeInfo {
            name: "smtp-instance".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "The SMTP service of a virtual server, checked by an SMTP dialogue."
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

impl GuestInstance for SmtpInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        self.service
            .start(|| net::smtp_check(&self.address, Deadline::after_ms(self.answer_ms)))
    }

    fn offline(&self) -> Result<(), String> {
        self.service.stop().map(drop)
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        health(self.service.running().and_then(|()| {
            net::connect(&self.address, Deadline::after_ms(self.answer_ms)).map(drop)
        }))
    }

    fn is_alive(&self) -> Health {
        health(
            self.service
                .running()
                .and_then(|()| net::smtp_check(&self.address, Deadline::after_ms(self.answer_ms))),
        )
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "pid" => self.service.pid(),
            other => Err(format!("unknown control code {other:?}; known: pid")),
        }
    }
}

warden_sdk::export_plugin!(SmtpType);
