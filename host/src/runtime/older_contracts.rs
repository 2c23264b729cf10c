//! The imports of every older contract version, answered by the current code.
//!
//! A plugin built against `warden:resource@0.1.0`, `@0.2.0`, `@0.3.0` or
//! `@0.4.0` imports the host's interfaces under those versions' names. None
//! of them changed shape since (0.2.0 added `network`, 0.3.0 the
//! `replication` export, 0.4.0 `probe`, 0.5.0 `probe.http-check`), so every
//! call here is the current
//! implementation's, with the values moved between the versions' generated
//! types. Nothing an older plugin does can reach anything a current plugin
//! could not.
//!
//! [`older_contract!`] writes the forwarding for the interfaces every
//! version has (`host`, `process`, `checkpoint`), [`older_network!`] that of
//! `network` for the versions that have it (0.2.0 to 0.4.0), and
//! `v0_4_probe` that of 0.4.0's `probe`.

use wasmtime::component::Linker;

use super::host_state::HostState;

/// Link the older versions' names of the host's interfaces.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)?;
    v0_2_network::add_to_linker(linker)?;
    v0_3::add_to_linker(linker)?;
    v0_3_network::add_to_linker(linker)?;
    v0_4::add_to_linker(linker)?;
    v0_4_network::add_to_linker(linker)?;
    v0_4_probe::add_to_linker(linker)
}

/// The forwarding of `host`, `process` and `checkpoint` from the bindings
/// module `$version` (in `crate::contract::bindings`) to the current ones,
/// as a module of the same name with an `add_to_linker`. `$types` is the
/// versioned name of its `types` interface, which carries no functions but
/// is imported, so its instance must exist.
macro_rules! older_contract {
    ($version:ident, $types:literal) => {
        pub(super) mod $version {
            use wasmtime::component::{HasSelf, Linker};

            use crate::contract::bindings::current::warden::resource as now;
            use crate::contract::bindings::$version::warden::resource as then;
            use crate::runtime::host_state::HostState;

            /// Link this version's names of `types`, `host`, `process` and
            /// `checkpoint`.
            pub(in crate::runtime) fn add_to_linker(
                linker: &mut Linker<HostState>,
            ) -> wasmtime::Result<()> {
                linker.instance($types)?;
                then::host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
                then::process::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
                then::checkpoint::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
                Ok(())
            }

            impl then::host::Host for HostState {
                async fn log(
                    &mut self,
                    level: then::host::Level,
                    message: String,
                ) -> wasmtime::Result<()> {
                    use then::host::Level;
                    let level = match level {
                        Level::Trace => now::host::Level::Trace,
                        Level::Debug => now::host::Level::Debug,
                        Level::Info => now::host::Level::Info,
                        Level::Warn => now::host::Level::Warn,
                        Level::Error => now::host::Level::Error,
                    };
                    now::host::Host::log(self, level, message).await
                }

                async fn now_ms(&mut self) -> wasmtime::Result<u64> {
                    now::host::Host::now_ms(self).await
                }

                async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
                    now::host::Host::sleep_ms(self, ms).await
                }

                async fn report_progress(&mut self, message: String) -> wasmtime::Result<u64> {
                    now::host::Host::report_progress(self, message).await
                }
            }

            impl then::process::Host for HostState {
                async fn spawn(
                    &mut self,
                    spec: then::process::SpawnSpec,
                ) -> wasmtime::Result<Result<u32, String>> {
                    let spec = now::process::SpawnSpec {
                        program: spec.program,
                        args: spec.args,
                        env: spec.env,
                        cwd: spec.cwd,
                    };
                    now::process::Host::spawn(self, spec).await
                }

                async fn stop(
                    &mut self,
                    grace_ms: u64,
                ) -> wasmtime::Result<Result<then::process::ProcessState, String>> {
                    let stopped = now::process::Host::stop(self, grace_ms).await?;
                    Ok(stopped.map(process_state))
                }

                async fn state(&mut self) -> wasmtime::Result<then::process::ProcessState> {
                    Ok(process_state(now::process::Host::state(self).await?))
                }
            }

            /// A process state in this version's type.
            fn process_state(state: now::process::ProcessState) -> then::process::ProcessState {
                use now::process::ProcessState as Now;
                use then::process::ProcessState as Then;
                match state {
                    Now::Running(pid) => Then::Running(pid),
                    Now::Exited(code) => Then::Exited(code),
                    Now::KilledBySignal(signal) => Then::KilledBySignal(signal),
                    Now::NotStarted => Then::NotStarted,
                }
            }

            impl then::checkpoint::Host for HostState {
                async fn get(
                    &mut self,
                    key: String,
                ) -> wasmtime::Result<Result<Option<String>, String>> {
                    now::checkpoint::Host::get(self, key).await
                }

                async fn set(
                    &mut self,
                    key: String,
                    value: String,
                ) -> wasmtime::Result<Result<(), String>> {
                    now::checkpoint::Host::set(self, key, value).await
                }

                async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
                    now::checkpoint::Host::delete(self, key).await
                }

                async fn list(
                    &mut self,
                ) -> wasmtime::Result<Result<Vec<(String, String)>, String>> {
                    now::checkpoint::Host::list(self).await
                }
            }
        }
    };
}

older_contract!(v0_1, "warden:resource/types@0.1.0");
older_contract!(v0_2, "warden:resource/types@0.2.0");
older_contract!(v0_3, "warden:resource/types@0.3.0");
older_contract!(v0_4, "warden:resource/types@0.4.0");

/// The forwarding of `network` (new in 0.2.0) from the bindings module
/// `$version` to the current one, as a module `$module` with an
/// `add_to_linker`.
macro_rules! older_network {
    ($module:ident, $version:ident) => {
        mod $module {
            use wasmtime::component::{HasSelf, Linker};

            use crate::contract::bindings::current::warden::resource::network as now;
            use crate::contract::bindings::$version::warden::resource::network as then;
            use crate::runtime::host_state::HostState;

            /// What a call into the network import answers.
            type Answer<T> = wasmtime::Result<Result<T, String>>;

            /// Link this version's name of `network`.
            pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
                then::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
            }

            fn spec(spec: then::AddressSpec) -> now::AddressSpec {
                now::AddressSpec {
                    address: spec.address,
                    prefix_length: spec.prefix_length,
                    interface: spec.interface,
                }
            }

            impl then::Host for HostState {
                async fn probe_address(
                    &mut self,
                    s: then::AddressSpec,
                    wait_ms: u32,
                ) -> Answer<()> {
                    now::Host::probe_address(self, spec(s), wait_ms).await
                }

                async fn add_address(&mut self, s: then::AddressSpec) -> Answer<()> {
                    now::Host::add_address(self, spec(s)).await
                }

                async fn announce_address(
                    &mut self,
                    s: then::AddressSpec,
                    count: u32,
                    interval_ms: u32,
                ) -> Answer<()> {
                    now::Host::announce_address(self, spec(s), count, interval_ms).await
                }

                async fn remove_address(&mut self, s: then::AddressSpec) -> Answer<()> {
                    now::Host::remove_address(self, spec(s)).await
                }

                async fn query_address(
                    &mut self,
                    s: then::AddressSpec,
                ) -> Answer<then::AddressState> {
                    let state = now::Host::query_address(self, spec(s)).await?;
                    Ok(state.map(|state| then::AddressState {
                        present: state.present,
                        link_up: state.link_up,
                    }))
                }

                async fn register_name(
                    &mut self,
                    name: String,
                    address: String,
                    ttl_s: u32,
                ) -> Answer<()> {
                    now::Host::register_name(self, name, address, ttl_s).await
                }

                async fn remove_name(&mut self, name: String, address: String) -> Answer<()> {
                    now::Host::remove_name(self, name, address).await
                }

                async fn lookup_name(&mut self, name: String) -> Answer<Vec<String>> {
                    now::Host::lookup_name(self, name).await
                }
            }
        }
    };
}

older_network!(v0_2_network, v0_2);
older_network!(v0_3_network, v0_3);
older_network!(v0_4_network, v0_4);

/// 0.4.0's `probe` (new in that version; 0.5.0 added `http-check`).
mod v0_4_probe {
    use wasmtime::component::{HasSelf, Linker};

    use crate::contract::bindings::current::warden::resource::probe as now;
    use crate::contract::bindings::v0_4::warden::resource::probe as then;
    use crate::runtime::host_state::HostState;

    /// What a probe answers the plugin.
    type Answer<T> = wasmtime::Result<Result<T, then::ProbeError>>;

    /// Link 0.4.0's name of `probe`.
    pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        then::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
    }

    /// A probe error in 0.4.0's type (the same cases).
    fn error(error: now::ProbeError) -> then::ProbeError {
        match error {
            now::ProbeError::Denied(why) => then::ProbeError::Denied(why),
            now::ProbeError::Invalid(why) => then::ProbeError::Invalid(why),
            now::ProbeError::Connect(why) => then::ProbeError::Connect(why),
            now::ProbeError::TimedOut(why) => then::ProbeError::TimedOut(why),
            now::ProbeError::Unexpected(why) => then::ProbeError::Unexpected(why),
        }
    }

    impl then::Host for HostState {
        async fn connect(&mut self, address: String, timeout_ms: u64) -> Answer<u64> {
            Ok(now::Host::connect(self, address, timeout_ms)
                .await?
                .map_err(error))
        }

        async fn exchange_line(
            &mut self,
            address: String,
            send: Option<String>,
            expect_prefix: String,
            timeout_ms: u64,
        ) -> Answer<String> {
            Ok(
                now::Host::exchange_line(self, address, send, expect_prefix, timeout_ms)
                    .await?
                    .map_err(error),
            )
        }

        async fn http_get(
            &mut self,
            address: String,
            path: String,
            expect_status: u16,
            timeout_ms: u64,
        ) -> Answer<u16> {
            Ok(
                now::Host::http_get(self, address, path, expect_status, timeout_ms)
                    .await?
                    .map_err(error),
            )
        }
    }
}
