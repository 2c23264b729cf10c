//! The six services' `main`s, one module each. Each binary in `src/bin`
//! calls its own; `warden mail-service NAME ...` calls them by name, so the
//! agent's Exchange demo needs no binary but `warden` (see [`run`]).

pub mod attendant;
pub mod http;
pub mod indexer;
pub mod mta;
pub mod smtp;
pub mod store;

use std::net::{SocketAddr, TcpListener};
use std::process;

use crate::signals;

/// Listen on `listen`, or exit 1 saying why: every service binds before it
/// serves, so a port taken is its first and plainest failure.
fn listen_or_exit(listen: SocketAddr) -> TcpListener {
    TcpListener::bind(listen).unwrap_or_else(|e| {
        log!("cannot listen on {listen}: {e}");
        process::exit(1)
    })
}

/// Exit 0 on SIGTERM or SIGINT, saying so: for the services that keep
/// nothing of their own in memory (whatever they acknowledged is durable
/// elsewhere). Exits 1 if the handlers cannot be installed.
fn exit_on_terminate() {
    if let Err(e) = signals::on_terminate(|sig| {
        log!("stopping ({sig})");
        process::exit(0)
    }) {
        log!("cannot install signal handlers: {e}");
        process::exit(1);
    }
}

/// The program names [`run`] knows, as `mail-NAME` is each binary's.
pub const NAMES: &[&str] = &["store", "smtp", "http", "mta", "indexer", "attendant"];

/// Run the service `name` with `argv` (its arguments, without its name).
/// Returns only when the service's `main` does (after `--help`, or when it
/// ends without exiting); an unknown name is an error naming the known ones.
pub fn run(name: &str, argv: Vec<String>) -> Result<(), String> {
    match name {
        "store" => store::main(argv),
        "smtp" => smtp::main(argv),
        "http" => http::main(argv),
        "mta" => mta::main(argv),
        "indexer" => indexer::main(argv),
        "attendant" => attendant::main(argv),
        other => {
            return Err(format!(
                "no mail service {other:?} (known: {})",
                NAMES.join(", ")
            ));
        }
    }
    Ok(())
}
