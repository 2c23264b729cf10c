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
//! The GET is the agent's (contract 0.4.0's `probe` import: one host call,
//! the socket in the host) unless `host-header` is set, which the probe
//! does not send; then, and whenever the probe's answer is not the status
//! it was asked for (the probe requires one status, the type takes any
//! 2xx), the plugin makes the GET through its own WASI socket, within what
//! is left of the same timeout. A 2xx other than 200 seen that way is what
//! the probe asks for next, so a server answering 204 costs one GET a
//! check too. The agent's GET costs about a quarter less CPU than the
//! plugin's, and 40 % less with `RUST_BACKTRACE` set (docs/benchmarks.md,
//! "An HTTP is-alive in release").

use std::cell::Cell;
use std::time::Duration;

use warden_sdk::net::{self, Deadline};
use warden_sdk::probe::{self, ProbeError};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props, refuse};

struct Http {
    address: String,
    path: String,
    host: String,
    answer: Duration,
    /// The 2xx status the agent's GET asks for: 200 until the server is
    /// seen answering another 2xx.
    expect: Cell<u16>,
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
    ];

    fn open(props: &Props) -> Result<Self, PropertyError> {
        let path = props.string("path")?;
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(refuse(
                "path",
                format!("{path:?} must start with / and contain no spaces"),
            ));
        }
        Ok(Http {
            address: props.address("address")?,
            path,
            host: props.string("host-header")?,
            answer: props.duration("answer-timeout-ms")?,
            expect: Cell::new(200),
        })
    }

    fn check(&self) -> Result<(), String> {
        let deadline = Deadline::after(self.answer);
        if self.host.is_empty() {
            match probe::http_get_typed(&self.address, &self.path, self.expect.get(), self.answer) {
                Ok(_) => return Ok(()),
                // Another status, or a path the probe does not send (it
                // takes printable ASCII only): ask the plugin's own GET.
                Err(ProbeError::Unexpected(_) | ProbeError::Invalid(_)) => {}
                Err(failed) => return Err(probe::text(failed)),
            }
        }
        let answer = net::http_get(&self.address, &self.host, &self.path, deadline)?;
        if (200..300).contains(&answer.status) {
            self.expect.set(answer.status);
            Ok(())
        } else {
            Err(format!("GET {} answered {}", self.path, answer.status))
        }
    }
}

warden_sdk::export_type!(Managed<Http>);
