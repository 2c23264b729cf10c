//! `prober`: a test type for the `probe` import (0.4.0, and 0.5.0's
//! `http-check`), through the
//! SDK's `warden_sdk::probe`. It manages nothing; it runs the probe it is
//! told to and reports what the host answered.
//!
//! A probe is written as tab-separated fields, the first naming it:
//! - `connect ADDR MS`
//! - `line ADDR MS SEND PREFIX` (an empty SEND sends nothing)
//! - `http ADDR MS PATH STATUS`
//! - `http-check ADDR MS PATH EXPECT HOST REUSE`: EXPECT a status (`200`)
//!   or a class (`2xx`), HOST the host header or `-` for none, REUSE
//!   `reuse` or `fresh`
//! - `net-line ADDR MS SEND PREFIX`: the same exchange as `line` through
//!   the plugin's own WASI socket (`warden_sdk::net`), for comparison
//!   (`host/benches/probe.rs`)
//!
//! `is-alive` (and looks-alive) runs the probe of the `check` property
//! (`none`: healthy). `control` runs one: the code names the probe and the
//! payload holds the rest of the fields (`connect`, `line`, `http`,
//! `net-line`), or
//! `check` runs the `check` property's. An answer is `ok VALUE`; an error
//! is the SDK's text (`denied: ...`, `timed out: ...`).
//!
//! Its `address` properties are what the host grants; `decoy` is a
//! property of kind string that may hold an address and grants nothing.

use std::time::Duration;

use warden_sdk::types::{Health, PropertyError};
use warden_sdk::{Property, Props, ResourceType, unknown_control};
use warden_sdk::{net, probe};

/// One open resource: the probe is-alive runs.
struct Prober {
    check: String,
}

impl ResourceType for Prober {
    const NAME: &'static str = "prober";
    const DESCRIPTION: &'static str =
        "Runs the host's probes it is told to (a test type for the probe import).";

    fn properties() -> Vec<Property> {
        vec![
            Property::address("address", "A granted address").default(""),
            Property::address("address-2", "Another granted address").default(""),
            Property::string("decoy", "Text that may hold an address; grants nothing").default(""),
            Property::string("check", "The probe is-alive runs (tab-separated), or none")
                .default("none"),
        ]
    }

    fn open(_name: &str, props: &Props) -> Result<Self, PropertyError> {
        Ok(Prober {
            check: props.string("check")?,
        })
    }

    fn online(&self) -> Result<(), String> {
        Ok(())
    }

    fn is_alive(&self) -> Health {
        if self.check == "none" {
            return Health::Healthy;
        }
        Health::from(run(&self.check).map(drop))
    }

    fn control(&self, code: &str, payload: &str) -> Result<String, String> {
        match code {
            "connect" | "line" | "http" | "http-check" | "net-line" => {
                run(&format!("{code}\t{payload}"))
            }
            "check" => run(&self.check),
            other => Err(unknown_control(
                other,
                &["connect", "line", "http", "http-check", "net-line", "check"],
            )),
        }
    }
}

/// Run the probe `spec` names; `ok VALUE` or the SDK's error text.
fn run(spec: &str) -> Result<String, String> {
    let fields: Vec<&str> = spec.split('\t').collect();
    let timeout = |field: Option<&&str>| -> Result<Duration, String> {
        let text = field.ok_or("no timeout given")?;
        text.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("timeout {text:?} is not a number of milliseconds"))
    };
    match fields.as_slice() {
        ["connect", address, rest @ ..] => {
            let took = probe::connect(address, timeout(rest.first())?)?;
            Ok(format!("ok {}", took.as_millis()))
        }
        ["line", address, ms, send, prefix] => {
            let send = (!send.is_empty()).then_some(*send);
            let line = probe::exchange_line(address, send, prefix, timeout(Some(ms))?)?;
            Ok(format!("ok {line}"))
        }
        ["net-line", address, ms, send, prefix] => {
            let deadline = net::Deadline::after(timeout(Some(ms))?);
            let line = net::ask_once(address, send, prefix, deadline)?;
            Ok(format!("ok {line}"))
        }
        ["http", address, ms, path, status] => {
            let status: u16 = status
                .parse()
                .map_err(|_| format!("status {status:?} is not a number"))?;
            let got = probe::http_get(address, path, status, timeout(Some(ms))?)?;
            Ok(format!("ok {got}"))
        }
        ["http-check", address, ms, path, expect, host, reuse] => {
            let expect = match expect.strip_suffix("xx") {
                Some(class) => probe::StatusMatch::Class(
                    class
                        .parse()
                        .map_err(|_| format!("class {expect:?} is not Nxx"))?,
                ),
                None => probe::StatusMatch::Exact(
                    expect
                        .parse()
                        .map_err(|_| format!("status {expect:?} is not a number"))?,
                ),
            };
            let mut check = probe::HttpCheck::new(address, path)
                .expect(expect)
                .reuse_connection(*reuse == "reuse");
            if *host != "-" {
                check = check.host_header(host);
            }
            let got = probe::http_check(&check, timeout(Some(ms))?)?;
            Ok(format!("ok {got}"))
        }
        _ => Err(format!(
            "{spec:?} is not connect|line|http with its fields, tab-separated"
        )),
    }
}

warden_sdk::export_type!(Prober);
