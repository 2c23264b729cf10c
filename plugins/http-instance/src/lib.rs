//! `http-instance`: the HTTP service of a virtual server, or any HTTP
//! server (nginx, ...).
//!
//! Online starts the program, if one is given (by default `mail-http
//! --listen {address} --store {store}`; for nginx e.g. `args = -c
//! /etc/warden/nginx.conf -g "daemon off;"`), and waits until a GET of
//! `path` answers 2xx. Looks-alive and is-alive are that GET, which must
//! answer 2xx within `answer-timeout-ms`. Without `program` the type only
//! watches a server started elsewhere.

use warden_sdk::bindings::exports::warden::resource::resource_type::{
    Guest, GuestInstance, Health, Instance, Properties, PropertyError, TypeInfo,
};
use warden_sdk::net::{self, Deadline};
use warden_sdk::service::{self, Service};
use warden_sdk::types::{PropertyKind, Timing, TypeFlags};
use warden_sdk::{number, property, required, spec};

struct HttpType;

struct HttpInstance {
    service: Service,
    address: String,
    path: String,
    host: String,
    answer_ms: u64,
}

fn parse(properties: &Properties) -> Result<HttpInstance, PropertyError> {
    let path = property(properties, "path").unwrap_or("/health");
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(PropertyError {
            property: "path".to_string(),
            reason: format!("{path:?} must start with / and contain no spaces"),
        });
    }
    Ok(HttpInstance {
        service: Service::from_properties(properties)?,
        address: required(
            properties,
            "address",
            "the host:port the HTTP server listens on",
        )?
        .to_string(),
        path: path.to_string(),
        host: property(properties, "host-header")
            .unwrap_or("")
            .to_string(),
        answer_ms: number(properties, "answer-timeout-ms", 3000)?,
    })
}

impl HttpInstance {
    fn get(&self) -> Result<(), String> {
        let answer = net::http_get(
            &self.address,
            &self.host,
            &self.path,
            Deadline::after_ms(self.answer_ms),
        )?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("GET {} answered {}", self.path, answer.status))
        }
    }

    fn check(&self) -> Health {
        match self.service.running().and_then(|()| self.get()) {
            Ok(()) => Health::Healthy,
            Err(why) => Health::Failed(why),
        }
    }
}

impl Guest for HttpType {
    type Instance = HttpInstance;

    fn describe() -> TypeInfo {
        let mut properties =
            service::properties("--listen {address} --store {store}", true, "30000");
        properties.extend([
            spec(
                "address",
                PropertyKind::Address,
                None,
                "Where the HTTP server listens (host:port)",
            ),
            spec(
                "path",
                PropertyKind::String,
                Some("/health"),
                "The path whose GET must answer 2xx",
            ),
            spec(
                "host-header",
                PropertyKind::String,
                Some(""),
                "Host header (default: the address's host)",
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
                "How long a GET may take",
            ),
        ]);
        TypeInfo {
            name: "http-instance".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "An HTTP service, checked by a GET that must answer 2xx.".to_string(),
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

impl GuestInstance for HttpInstance {
    fn open(_name: String, properties: Properties) -> Result<Instance, PropertyError> {
        Ok(Instance::new(parse(&properties)?))
    }

    fn online(&self) -> Result<(), String> {
        self.service.start(|| self.get())
    }

    fn offline(&self) -> Result<(), String> {
        self.service.stop().map(drop)
    }

    fn terminate(&self) {
        self.service.kill();
    }

    fn looks_alive(&self) -> Health {
        self.check()
    }

    fn is_alive(&self) -> Health {
        self.check()
    }

    fn control(&self, code: String, _payload: String) -> Result<String, String> {
        match code.as_str() {
            "pid" => self.service.pid(),
            other => Err(format!("unknown control code {other:?}; known: pid")),
        }
    }
}

warden_sdk::export_plugin!(HttpType);
