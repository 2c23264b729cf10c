//! `http-instance`: the HTTP service of a virtual server, or any HTTP
//! server (nginx, ...).
//!
//! Online starts the program, if one is given (by default `mail-http
//! --listen {address} --store {store}`; for nginx e.g. `args = -c
//! /etc/warden/nginx.conf -g "daemon off;"`), and waits until a GET of
//! `path` answers 2xx. Looks-alive and is-alive are that GET, which must
//! answer 2xx within `answer-timeout-ms`. Without `program` the type only
//! watches a server started elsewhere.

use std::time::Duration;

use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{Managed, ServiceDefaults, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Property, Props, refuse};

struct Http {
    address: String,
    path: String,
    host: String,
    answer: Duration,
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
        })
    }

    fn check(&self) -> Result<(), String> {
        let answer = net::http_get(
            &self.address,
            &self.host,
            &self.path,
            Deadline::after(self.answer),
        )?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("GET {} answered {}", self.path, answer.status))
        }
    }
}

warden_sdk::export_type!(Managed<Http>);
