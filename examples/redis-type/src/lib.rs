//! `redis`: a Redis server (Debian's `redis-server`) as a Warden resource.
//!
//! Online starts `redis-server` on the resource's `address`, with its data
//! in the resource's data directory, and waits until it answers `PING`.
//! Is-alive (and looks-alive) is that `PING`, answered `+PONG`.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{number, required, spec};

/// `--dir .`: the managed process runs in the resource's data directory.
const ARGS: &str = "--port {address.port} --bind {address.host} --dir . --save \"\" \
                    --appendonly no --daemonize no";

struct RedisType;

struct Redis {
    service: Service,
    address: String,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<Redis, PropertyError> {
    Ok(Redis {
        service: Service::from_properties(properties)?,
        address: required(properties, "address", "the host:port Redis listens on")?.to_string(),
        answer_ms: number(properties, "answer-timeout-ms", 2000)?,
    })
}

impl Redis {
    fn ping(&self) -> Result<(), String> {
        net::ask_once(
            &self.address,
            "PING",
            "+PONG",
            Deadline::after_ms(self.answer_ms),
        )
        .map(drop)
    }
}

impl Guest for RedisType {
    type Instance = Redis;

    fn describe() -> TypeInfo {
        let mut properties =
            service::properties_with_program("/usr/bin/redis-server", ARGS, "30000");
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                Some("127.0.0.1:6379"),
                "Where Redis listens (ip:port)",
            ),
            spec(
                "answer-timeout-ms",
                PropertyKind::DurationMs,
                Some("2000"),
                "How long a PING may take",
            ),
        ]);
        TypeInfo {
            name: "redis".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A Redis server, checked by PING answered +PONG.".to_string(),
            properties,
            timing: Timing {
                pending_timeout_ms: 30_000,
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

impl GuestInstance for Redis {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        self.service.start(|| self.ping())
    }

    fn offline(&self) -> Result<(), String> {
        self.service.stop().map(drop)
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        self.service.health(|| self.ping())
    }

    fn is_alive(&self) -> Health {
        self.service.health(|| self.ping())
    }

    fn control(&self, code: String, payload: String) -> Result<String, String> {
        self.service.control(&code, &payload)
    }
}

warden_sdk::export_plugin!(RedisType);
