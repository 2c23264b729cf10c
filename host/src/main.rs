//! The `warden` command: the agent, and tools around it. The command tree
//! and what each command does are in [`warden::cli`]; this file only sets
//! up the process (signals, logging, the async runtime).

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use warden::cli::signals::reset_stop_signals;
use warden::cli::{Cli, Command, LogFormat, run};

fn main() -> ExitCode {
    quiet_library_backtraces();
    reset_stop_signals();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = match cli.command {
        // Plain std: the guard must not depend on an async runtime.
        Command::FenceGuard {
            watchdog,
            watchdog_timeout_s,
        } => {
            let watchdog = watchdog.zip(watchdog_timeout_s).map(|(device, timeout_s)| {
                warden::fence_guard::guard::WatchdogSetup { device, timeout_s }
            });
            return warden::fence_guard::guard::run(watchdog);
        }
        // Plain std too, with signal handlers of its own.
        Command::MailService { name, args } => return mail_service(&name, args),
        command => command,
    };
    // Check timers and I/O every 8 polls rather than 61: a guest spinning
    // in wasm yields at every epoch tick and keeps its worker busy, and
    // health-check timers must not wait for it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(8)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Errors do not capture backtraces unless the operator asks for them
/// with `RUST_LIB_BACKTRACE`: with `RUST_BACKTRACE=1` in the agent's
/// environment (common in a shell), every `wasmtime::Error` captured one,
/// and wasmtime's WASI layer makes such an error each time a guest's socket
/// would block: 10-35 µs of CPU per health check over WASI sockets
/// (docs/benchmarks.md, "An HTTP is-alive in release"). Panics keep their
/// backtraces (`RUST_BACKTRACE` still governs them).
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first in `main`, before any other thread exists,
        // so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// `warden mail-service NAME ARGS...`: the example mail service NAME, as
/// its own binary would run (it exits by itself; a bad command line exits 2
/// as the binaries do).
fn mail_service(name: &str, args: Vec<String>) -> ExitCode {
    match warden_mail_services::programs::run(name, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
