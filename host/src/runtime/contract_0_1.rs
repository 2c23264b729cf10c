//! The imports of contract 0.1.0, answered by the current ones.
//!
//! A plugin built against `warden:resource@0.1.0` imports `host`,
//! `process` and `checkpoint` under their 0.1.0 names. Those interfaces did
//! not change in 0.2.0 (it only added `network`), so every call here is the
//! current implementation's, with the values converted between the two
//! versions' generated types. Nothing a 0.1.0 plugin does can reach
//! anything a 0.2.0 plugin could not.

use wasmtime::component::{HasSelf, Linker};

use super::host_state::HostState;
use crate::contract::bindings::current::warden::resource as current;
use crate::contract::bindings::v0_1::warden::resource as v0_1;

/// Link the 0.1.0 names of the host's interfaces. `types` carries no
/// functions, but a plugin imports it, so its instance must exist.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.instance("warden:resource/types@0.1.0")?;
    v0_1::host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    v0_1::process::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    v0_1::checkpoint::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl v0_1::host::Host for HostState {
    async fn log(&mut self, level: v0_1::host::Level, message: String) -> wasmtime::Result<()> {
        use v0_1::host::Level;
        let level = match level {
            Level::Trace => current::host::Level::Trace,
            Level::Debug => current::host::Level::Debug,
            Level::Info => current::host::Level::Info,
            Level::Warn => current::host::Level::Warn,
            Level::Error => current::host::Level::Error,
        };
        current::host::Host::log(self, level, message).await
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        current::host::Host::now_ms(self).await
    }

    async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        current::host::Host::sleep_ms(self, ms).await
    }

    async fn report_progress(&mut self, message: String) -> wasmtime::Result<u64> {
        current::host::Host::report_progress(self, message).await
    }
}

impl v0_1::process::Host for HostState {
    async fn spawn(
        &mut self,
        spec: v0_1::process::SpawnSpec,
    ) -> wasmtime::Result<Result<u32, String>> {
        let spec = current::process::SpawnSpec {
            program: spec.program,
            args: spec.args,
            env: spec.env,
            cwd: spec.cwd,
        };
        current::process::Host::spawn(self, spec).await
    }

    async fn stop(
        &mut self,
        grace_ms: u64,
    ) -> wasmtime::Result<Result<v0_1::process::ProcessState, String>> {
        let stopped = current::process::Host::stop(self, grace_ms).await?;
        Ok(stopped.map(process_state))
    }

    async fn state(&mut self) -> wasmtime::Result<v0_1::process::ProcessState> {
        Ok(process_state(current::process::Host::state(self).await?))
    }
}

/// A process state in 0.1.0's type.
fn process_state(state: current::process::ProcessState) -> v0_1::process::ProcessState {
    use current::process::ProcessState as Now;
    use v0_1::process::ProcessState as Then;
    match state {
        Now::Running(pid) => Then::Running(pid),
        Now::Exited(code) => Then::Exited(code),
        Now::KilledBySignal(signal) => Then::KilledBySignal(signal),
        Now::NotStarted => Then::NotStarted,
    }
}

impl v0_1::checkpoint::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        current::checkpoint::Host::get(self, key).await
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        current::checkpoint::Host::set(self, key, value).await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        current::checkpoint::Host::delete(self, key).await
    }

    async fn list(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, String>> {
        current::checkpoint::Host::list(self).await
    }
}
