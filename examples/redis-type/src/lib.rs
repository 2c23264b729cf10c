//! `redis`: a Redis server (Debian's `redis-server`) as a Warden resource.
//!
//! Online starts `redis-server` on the resource's `address`, with its data
//! in the resource's data directory, and waits until it answers `PING`.
//! Is-alive (and looks-alive) is that `PING`, answered `+PONG`. Everything
//! else (the `program`, `args`, `startup-timeout-ms` and `stop-grace-ms`
//! properties, starting, stopping, killing, the `pid` control code) is the
//! SDK's `ServiceType`.

use std::time::Duration;

use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::{PropertyError, Timing};
use warden_sdk::{DEFAULT_TIMING, Property, Props};

/// One Redis resource: where it listens and how long a `PING` may take.
struct Redis {
    address: String,
    answer: Duration,
}

impl ServiceType for Redis {
    const NAME: &'static str = "redis";
    const DESCRIPTION: &'static str = "A Redis server, checked by PING answered +PONG.";
    /// `--dir .`: the managed process runs in the resource's data directory.
    const SERVICE: ServiceDefaults = ServiceDefaults::new(
        "--port {address.port} --bind {address.host} --dir . --save \"\" \
         --appendonly no --daemonize no",
    )
    .program("/usr/bin/redis-server");
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where Redis listens (ip:port)").default("127.0.0.1:6379"),
        Property::duration_ms("answer-timeout-ms", "How long a PING may take").default("2000"),
    ];
    /// Redis starts in well under 30 s.
    const TIMING: Timing = Timing {
        pending_timeout_ms: 30_000,
        ..DEFAULT_TIMING
    };

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(Redis {
            address: props.address("address")?,
            answer: props.duration("answer-timeout-ms")?,
        })
    }

    fn check(&self) -> Result<(), String> {
        net::ask_once(&self.address, "PING", "+PONG", Deadline::after(self.answer)).map(drop)
    }
}

warden_sdk::export_type!(Managed<Redis>);
