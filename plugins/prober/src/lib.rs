//! `prober`: a test type for contract 0.4.0's `probe` import, through the
//! SDK's `warden_sdk::probe`. It manages nothing; it runs the probe it is
//! told to and reports what the host answered.
//!
//! A probe is written as tab-separated fields, the first naming it:
//! - `connect ADDR MS`
//! - `line ADDR MS SEND PREFIX` (an empty SEND sends nothing)
//! - `http ADDR MS PATH STATUS`
//!
//! `is-alive` (and looks-alive) runs the probe of the `check` property
//! (`none`: healthy). `control` runs one: the code names the probe and the
//! payload holds the rest of the fields (`connect`, `line`, `http`), or
//! `check` runs the `check` property's. An answer is `ok VALUE`; an error
//! is the SDK's text (`denied: ...`, `timed out: ...`).
//!
//! Its `address` properties are what the host grants; `decoy` is a
//! property of kind string that may hold an address and grants nothing.

use std::time::Duration;

use warden_sdk::probe;
use warden_sdk::types::{Health, PropertyError};
use warden_sdk::{Property, Props, ResourceType, unknown_control};

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
            "connect" | "line" | "http" => run(&format!("{code}\t{payload}")),
            "check" => run(&self.check),
            other => Err(unknown_control(
                other,
                &["connect", "line", "http", "check"],
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
        ["http", address, ms, path, status] => {
            let status: u16 = status
                .parse()
                .map_err(|_| format!("status {status:?} is not a number"))?;
            let got = probe::http_get(address, path, status, timeout(Some(ms))?)?;
            Ok(format!("ok {got}"))
        }
        _ => Err(format!(
            "{spec:?} is not connect|line|http with its fields, tab-separated"
        )),
    }
}

warden_sdk::export_type!(Prober);
