//! `tcp-service`: any program that listens on a TCP port, as a Warden
//! resource. The template for a new resource type (see `README.md`).
//!
//! Online starts `program` with `args` (a template: `{address}`,
//! `{address.host}`, `{address.port}` and any other `{property}` are
//! replaced by their values) and waits until `address` accepts a TCP
//! connection. Is-alive and looks-alive: the program runs and `address`
//! accepts a connection within `connect-timeout-ms`. Offline sends SIGTERM
//! (SIGKILL after `stop-grace-ms`); terminate kills; control `pid` answers
//! the program's pid. All but the check is the SDK's `ServiceType`.

use std::time::Duration;

use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props};

/// One open resource: what `open` parsed from its properties.
struct TcpService {
    address: String,
    connect_timeout: Duration,
}

impl ServiceType for TcpService {
    /// What operators write as the resource's `type`.
    const NAME: &'static str = "tcp-service";
    const DESCRIPTION: &'static str =
        "A program listening on a TCP port, healthy while the port accepts connections.";
    /// `program` is required; `args` defaults to passing the address.
    const SERVICE: ServiceDefaults = ServiceDefaults::new("--listen {address}");
    /// The type's own properties, declared once: `describe()` lists them
    /// and `open` reads them. A property of kind address is also the only
    /// place the plugin may connect to.
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the program listens (host:port)"),
        Property::duration_ms("connect-timeout-ms", "How long a check may wait to connect")
            .default("2000"),
    ];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        Ok(TcpService {
            address: props.address("address")?,
            connect_timeout: props.duration("connect-timeout-ms")?,
        })
    }

    /// Healthy while the port accepts a connection (the SDK has already
    /// checked that the program runs).
    fn check(&self) -> Result<(), String> {
        net::connect(&self.address, Deadline::after(self.connect_timeout)).map(drop)
    }
}

warden_sdk::export_type!(Managed<TcpService>);
