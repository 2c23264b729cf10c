//! `warden agent --dev --example exchange`: the Exchange virtual server
//! `evs1` on this node, over the example mail services, so that a newcomer
//! sees in one command what Warden is for and can send a mail through it.
//!
//! Every service is the warden binary itself (`warden mail-service NAME`,
//! the code of examples/mail-services), so the demo needs nothing but the
//! binary `cargo install --path host` installs.
//!
//! The group follows the dependency tree of Exchange 2003's virtual server
//! (docs/exchange-demo.md): the System Attendant is its root, and the
//! Store, the MTA, SMTP, HTTP and MS Search depend on it. SMTP, HTTP and MS
//! Search also depend on the Store, because these services write and read
//! through it: they come online after it and go offline before it. There
//! is no IP address or network name resource on one node; the services
//! listen on loopback.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::free_port;
use crate::config::AgentConfig;

/// The virtual server's (and its group's) name.
pub(crate) const SERVER: &str = "evs1";

/// One resource of the virtual server: its name, its type, what it depends
/// on, the scheme a client reaches it by, the `mail-service` it runs and
/// that service's arguments (a template over the resource's properties, as
/// the type's default `args` is; `{server}` and `{watch}`, the attendant's
/// virtual server and the services it watches, are filled in here).
struct Part {
    name: &'static str,
    type_name: &'static str,
    depends_on: &'static [&'static str],
    scheme: &'static str,
    service: &'static str,
    args: &'static str,
}

/// In the order the group comes online.
const PARTS: &[Part] = &[
    Part {
        name: "system-attendant",
        type_name: "process",
        depends_on: &[],
        scheme: "http",
        service: "attendant",
        args: "--server {server} --listen {address} --watch {watch}",
    },
    Part {
        name: "store",
        type_name: "store",
        depends_on: &["system-attendant"],
        scheme: "tcp",
        service: "store",
        args: "--data . --listen {address}",
    },
    Part {
        name: "mta",
        type_name: "mta",
        depends_on: &["system-attendant"],
        scheme: "smtp",
        service: "mta",
        args: "--listen {address} --store {store} --data .",
    },
    Part {
        name: "smtp",
        type_name: "smtp-instance",
        depends_on: &["system-attendant", "store"],
        scheme: "smtp",
        service: "smtp",
        args: "--listen {address} --store {store}",
    },
    Part {
        name: "http",
        type_name: "http-instance",
        depends_on: &["system-attendant", "store"],
        scheme: "http",
        service: "http",
        args: "--listen {address} --store {store}",
    },
    Part {
        name: "search",
        type_name: "ms-search",
        depends_on: &["system-attendant", "store"],
        scheme: "tcp",
        service: "indexer",
        args: "--store {store} --data . --listen {address} --poll-ms 200",
    },
];

/// The demo as the banner shows it: each resource's name and address.
pub(crate) struct Demo {
    pub services: Vec<(&'static str, &'static str, SocketAddr)>,
}

impl Demo {
    fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, addr)| *addr)
    }
}

/// A configuration for the demo node in `dir`, running `exe` as every
/// service, and the addresses it gives them.
pub(crate) fn config(dir: &Path, exe: &Path) -> Result<(AgentConfig, Demo)> {
    let token_file = dir.join("api-token");
    crate::config::write_token_file(&token_file, &super::random_token()?)?;
    let mut addrs = Vec::new();
    for part in PARTS {
        addrs.push((part.name, free_port()?));
    }
    let addr_of = |name: &str| addrs.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    let store = addr_of("store").context("the demo has a store")?;
    let watch: Vec<String> = addrs
        .iter()
        .filter(|(name, _)| *name != "system-attendant")
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    let exe_text = exe.display().to_string();
    let mut grants = String::new();
    let mut resources = String::new();
    for (part, (_, addr)) in PARTS.iter().zip(&addrs) {
        grants.push_str(&format!(
            "[plugins.{}]\nallow_programs = [{exe_text:?}]\n\n",
            part.type_name
        ));
        resources.push_str(&resource_entry(part, *addr, &exe_text, &watch, store));
    }
    let text = format!(
        r#"# The Exchange virtual server {SERVER} on one node: `warden agent --dev --example exchange`.
{node_and_api}
# Every service is this warden binary (`warden mail-service NAME`).
{grants}[[group]]
name = "{SERVER}"
{resources}"#,
        node_and_api = super::node_and_api(dir, &token_file)?,
    );
    std::fs::write(dir.join("warden.toml"), &text).context("writing the demo configuration")?;
    let config = AgentConfig::parse(&text).context("the Exchange demo's own configuration")?;
    let services = PARTS
        .iter()
        .zip(addrs)
        .map(|(part, (name, addr))| (name, part.scheme, addr))
        .collect();
    Ok((config, Demo { services }))
}

/// The `[[resource]]` entry of one part of the virtual server, at `addr`:
/// the warden binary `exe_text` running its mail service, which `watch`es
/// (the System Attendant) or uses the store at `store`.
fn resource_entry(
    part: &Part,
    addr: SocketAddr,
    exe_text: &str,
    watch: &[String],
    store: SocketAddr,
) -> String {
    let depends_on: Vec<String> = part.depends_on.iter().map(|d| format!("{d:?}")).collect();
    let args = format!(
        "mail-service {} {}",
        part.service,
        part.args
            .replace("{server}", SERVER)
            .replace("{watch}", &watch.join(","))
    );
    let properties = match part.type_name {
        // The process type has no address property and no template:
        // its `args` carries the address itself.
        "process" => format!(
            "program = {exe_text:?}, args = {:?}, stop-grace-ms = 2000",
            args.replace("{address}", &addr.to_string())
        ),
        // The store type has no `store` property: it is the store.
        "store" => format!("program = {exe_text:?}, args = {args:?}, address = \"{addr}\""),
        _ => format!(
            "program = {exe_text:?}, args = {args:?}, address = \"{addr}\", store = \"{store}\""
        ),
    };
    format!(
        r#"
[[resource]]
name = "{name}"
type = "{type_name}"
group = "{SERVER}"
depends_on = [{depends_on}]
looks_alive_interval_ms = 5000
is_alive_interval_ms = 10000
restart = {{ threshold = 3, period_s = 900, delay_ms = 500 }}
properties = {{ {properties} }}
"#,
        name = part.name,
        type_name = part.type_name,
        depends_on = depends_on.join(", "),
    )
}

/// What the demo's banner says after the lines common to every dev node:
/// each resource's address, how to send a mail and read it back. The
/// commands use curl (its SMTP client), as a fresh machine has it.
pub(crate) fn print_banner(demo: &Demo) {
    for (name, scheme, addr) in &demo.services {
        let slash = if *scheme == "http" { "/" } else { "" };
        println!("  resource {name}: {scheme}://{addr}{slash}");
    }
}

/// The lines that tell how to use the virtual server, printed last.
pub(crate) fn print_try(demo: &Demo) {
    let (Some(smtp), Some(http), Some(attendant)) = (
        demo.addr("smtp"),
        demo.addr("http"),
        demo.addr("system-attendant"),
    ) else {
        return;
    };
    println!("Send a mail through the SMTP instance, then read it back through the HTTP instance:");
    println!(
        "  printf 'Subject: hello\\r\\n\\r\\nHello from Warden\\r\\n' | curl -sS smtp://{smtp} --mail-from me@example.org --mail-rcpt alice@example.org -T -"
    );
    println!("  curl http://{http}/mailbox/alice");
    println!(
        "Try: curl http://{attendant}/ (the System Attendant's view of {SERVER}); kill -9 the store and watch it recover; Ctrl-C stops the node."
    );
}
