//! `mta`: the message transfer agent of a virtual server. A cluster
//! singleton: at most one is online in the whole cluster.
//!
//! Online starts the program (by default `mail-mta --listen {address}
//! --store {store} --data .`, its queue in the resource's data directory)
//! and waits for its banner; looks-alive reads the 220 banner; is-alive is
//! the SMTP dialogue on its port. Offline stops it with SIGTERM (the queue
//! is always durable).

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::net::{self, Deadline, Dialogue};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{number, required, spec};

struct MtaType;

struct MtaInstance {
    service: Service,
    address: String,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<MtaInstance, PropertyError> {
    Ok(MtaInstance {
        service: Service::from_properties(properties)?,
        address: required(properties, "address", "the host:port the MTA listens on")?.to_string(),
        answer_ms: number(properties, "answer-timeout-ms", 3000)?,
    })
}

impl MtaInstance {
    fn banner(&self) -> Result<(), String> {
        let mut smtp = Dialogue::connect(&self.address, Deadline::after_ms(self.answer_ms))?;
        smtp.expect_reply("220")
            .map(drop)
            .map_err(|e| format!("banner: {e}"))
    }

    fn check(&self, thorough: bool) -> Health {
        let result = self.service.running().and_then(|()| match thorough {
            true => net::smtp_check(&self.address, Deadline::after_ms(self.answer_ms)),
            false => self.banner(),
        });
        result.map_or_else(Health::Failed, |()| Health::Healthy)
    }
}

impl Guest for MtaType {
    type Instance = MtaInstance;

    fn describe() -> TypeInfo {
        let mut properties = service::properties(
            "--listen {address} --store {store} --data .",
            false,
            "30000",
        );
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                None,
                "Where the MTA listens (host:port)",
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
            name: "mta".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "The message transfer agent; one per cluster.".to_string(),
            properties,
            timing: Timing {
                pending_timeout_ms: 180_000,
                looks_alive_interval_ms: 5_000,
                is_alive_interval_ms: 10_000,
                check_timeout_ms: 5_000,
            },
            flags: TypeFlags::CLUSTER_SINGLETON,
        }
    }

    fn validate(properties: Properties) -> Result<(), PropertyError> {
        parse(&properties).map(drop)
    }
}

impl GuestInstance for MtaInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        self.service.start(|| self.banner())
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
            "pid" => self.service.pid(),
            other => Err(format!("unknown control code {other:?}; known: pid")),
        }
    }
}

warden_sdk::export_plugin!(MtaType);
