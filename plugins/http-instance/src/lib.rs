//! `http-instance`: the HTTP service of a virtual server, or any HTTP
//! server (nginx, ...).
//!
//! Online starts the program, if one is given (by default `mail-http
//! --listen {address} --store {store}`; for nginx e.g. `args = -c
//! /etc/warden/nginx.conf -g "daemon off;"`), and waits until a GET of
//! `path` answers 2xx. Looks-alive and is-alive are that GET, which must
//! answer 2xx within `answer-timeout-ms`. Without `program` the type only
//! watches a server started elsewhere.
//!
//! The GET is the agent's (contract 0.5.0's `probe.http-check`: one host
//! call, the socket in the host; the plugin opens no socket of its own),
//! any 2xx passing, the `host-header` sent when set.
//!
//! With `reuse-connection` (the default) the agent keeps the connection
//! between checks, as Envoy's health checker does: a check is then a
//! write and a read, about 6 µs of kernel CPU on loopback against 27-53 µs
//! for a new connection (docs/benchmarks.md). A kept connection does not
//! notice a listener that stopped accepting new ones (a full accept queue,
//! a closed listening socket while old connections are served), so every
//! [`FRESH_EVERY`]th check, and the first, opens a new connection anyway,
//! as HAProxy does for every check; `reuse-connection = false` makes them
//! all new.

use std::cell::Cell;

use warden_sdk::probe::{self, HttpCheck, StatusMatch};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props, refuse};

/// With `reuse-connection`, one check in this many opens a new connection,
/// so that a listener that stopped accepting is noticed within as many
/// check intervals.
const FRESH_EVERY: u32 = 10;

struct Http {
    /// The check every call makes, but for its connection's reuse.
    check: HttpCheck,
    answer: std::time::Duration,
    reuse: bool,
    /// Checks made, to open a new connection every [`FRESH_EVERY`]th.
    checks: Cell<u32>,
}

impl ServiceType for Http {
    const NAME: &'static str = "http-instance";
    const DESCRIPTION: &'static str = "An HTTP service, checked by a GET that must answer 2xx.";
    const SERVICE: ServiceDefaults =
        ServiceDefaults::new("--listen {address} --store {store}").program_optional();
    const PROPERTIES: &'static [Property] = &[
        Property::address("address", "Where the HTTP server listens (host:port)"),
        Property::string("path", "The path whose GET must answer 2xx").default("/health"),
        Property::string("host-header", "Host header (default: the address's host)").default(""),
        Property::string("store", "The store's address, for the args template").default(""),
        Property::duration_ms("answer-timeout-ms", "How long a GET may take").default("3000"),
        Property::boolean(
            "reuse-connection",
            "Keep the connection between checks (a new one every tenth check)",
        )
        .default("true"),
    ];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        let path = props.string("path")?;
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(
                "path",
                format!(
                    "{path:?} must start with / and be printable ASCII without spaces \
                     (percent-encode the rest)"
                ),
            ));
        }
        let host = props.string("host-header")?;
        if host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(refuse(
                "host-header",
                format!("{host:?} must be a host name or an IP address, with an optional :port"),
            ));
        }
        let mut check =
            HttpCheck::new(&props.address("address")?, &path).expect(StatusMatch::Class(2));
        if !host.is_empty() {
            check = check.host_header(&host);
        }
        Ok(Http {
            check,
            answer: props.duration("answer-timeout-ms")?,
            reuse: props.bool("reuse-connection")?,
            checks: Cell::new(0),
        })
    }

    fn check(&self) -> Result<(), String> {
        let made = self.checks.get();
        self.checks.set(made.wrapping_add(1));
        let reuse = self.reuse && !made.is_multiple_of(FRESH_EVERY);
        let check = self.check.clone().reuse_connection(reuse);
        probe::http_check(&check, self.answer).map(drop)
    }
}

warden_sdk::export_type!(Managed<Http>);
