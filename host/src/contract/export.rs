//! A plugin's export, whichever contract version it was built against.
//!
//! Each version's bindings have their own Rust types for the export (the
//! generated `Plugin`, its `Guest` and `GuestInstance`), though the calls
//! and their values are the same. [`PluginPre`] and [`PluginBindings`] hide
//! that: the runtime instantiates and calls a plugin through them and never
//! matches on a version. A new contract version adds a variant here and an
//! arm to [`dispatch!`]'s callers, nothing else.

use wasmtime::AsContextMut;
use wasmtime::component::{InstancePre, ResourceAny};

use super::bindings::replicated::exports::warden::resource::replication;
use super::bindings::v0_3_replicated::exports::warden::resource::replication as replication_0_3;
use super::bindings::v0_4_replicated::exports::warden::resource::replication as replication_0_4;
use super::bindings::{current, v0_1, v0_2, v0_3, v0_4};
use super::{CopySource, CopyState, Health, PropertyError, TypeInfo};

/// The bindings line a component is instantiated with: one per contract
/// version the agent links (see [`super::SUPPORTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `warden:resource@0.5.x`, `wit/resource.wit`.
    Current,
    /// `warden:resource@0.4.x`, `wit/released/0.4.0/`.
    V0_4,
    /// `warden:resource@0.3.x`, `wit/released/0.3.0/`.
    V0_3,
    /// `warden:resource@0.2.x`, `wit/released/0.2.0/`.
    V0_2,
    /// `warden:resource@0.1.x`, `wit/released/0.1.0/`.
    V0_1,
}

/// Where each version's export lives in a component: looked up once, when
/// the component is linked.
enum ExportIndices {
    Current(current::PluginIndices),
    V0_4(v0_4::PluginIndices),
    V0_3(v0_3::PluginIndices),
    V0_2(v0_2::PluginIndices),
    V0_1(v0_1::PluginIndices),
}

/// A component linked and checked against the export of its contract
/// version, ready to instantiate in a store.
pub struct PluginPre<T: 'static> {
    pre: InstancePre<T>,
    indices: ExportIndices,
    /// The `replication` export, for a replicated type (new in 0.3.0, so
    /// only a current, a 0.4.0 or a 0.3.0 plugin has one).
    replication: Option<ReplicationIndices>,
}

/// Where a replicated type's `replication` export lives, by the contract
/// version whose name it exports.
enum ReplicationIndices {
    Current(replication::GuestIndices),
    V0_4(replication_0_4::GuestIndices),
    V0_3(replication_0_3::GuestIndices),
}

impl<T: Send + 'static> PluginPre<T> {
    /// Check that `pre`'s component exports what `line` requires, and find
    /// whether it also exports `replication`.
    pub fn new(pre: InstancePre<T>, line: Line) -> wasmtime::Result<PluginPre<T>> {
        let (indices, replication) = match line {
            Line::Current => (
                ExportIndices::Current(current::PluginIndices::new(&pre)?),
                exports(&pre, super::REPLICATION_EXPORT)
                    .then(|| replication::GuestIndices::new(&pre))
                    .transpose()?
                    .map(ReplicationIndices::Current),
            ),
            Line::V0_4 => (
                ExportIndices::V0_4(v0_4::PluginIndices::new(&pre)?),
                exports(&pre, super::REPLICATION_EXPORT_0_4)
                    .then(|| replication_0_4::GuestIndices::new(&pre))
                    .transpose()?
                    .map(ReplicationIndices::V0_4),
            ),
            Line::V0_3 => (
                ExportIndices::V0_3(v0_3::PluginIndices::new(&pre)?),
                exports(&pre, super::REPLICATION_EXPORT_0_3)
                    .then(|| replication_0_3::GuestIndices::new(&pre))
                    .transpose()?
                    .map(ReplicationIndices::V0_3),
            ),
            Line::V0_2 => (ExportIndices::V0_2(v0_2::PluginIndices::new(&pre)?), None),
            Line::V0_1 => (ExportIndices::V0_1(v0_1::PluginIndices::new(&pre)?), None),
        };
        Ok(PluginPre {
            pre,
            indices,
            replication,
        })
    }

    /// Whether the component exports `replication` (a replicated type).
    pub fn is_replicated(&self) -> bool {
        self.replication.is_some()
    }

    /// Instantiate the component in `store`.
    pub async fn instantiate_async(
        &self,
        mut store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<PluginBindings> {
        let instance = self.pre.instantiate_async(&mut store).await?;
        let calls = match &self.indices {
            ExportIndices::Current(indices) => Calls::Current(indices.load(&mut store, &instance)?),
            ExportIndices::V0_4(indices) => Calls::V0_4(indices.load(&mut store, &instance)?),
            ExportIndices::V0_3(indices) => Calls::V0_3(indices.load(&mut store, &instance)?),
            ExportIndices::V0_2(indices) => Calls::V0_2(indices.load(&mut store, &instance)?),
            ExportIndices::V0_1(indices) => Calls::V0_1(indices.load(&mut store, &instance)?),
        };
        let replication = match &self.replication {
            Some(ReplicationIndices::Current(indices)) => {
                Some(Replication::Current(indices.load(&mut store, &instance)?))
            }
            Some(ReplicationIndices::V0_4(indices)) => {
                Some(Replication::V0_4(indices.load(&mut store, &instance)?))
            }
            Some(ReplicationIndices::V0_3(indices)) => {
                Some(Replication::V0_3(indices.load(&mut store, &instance)?))
            }
            None => None,
        };
        Ok(PluginBindings { calls, replication })
    }
}

/// Whether the component exports the interface `name` (its exact versioned
/// name).
fn exports<T>(pre: &InstancePre<T>, name: &str) -> bool {
    let engine = pre.engine();
    pre.component()
        .component_type()
        .exports(engine)
        .any(|(export, _)| export == name)
}

/// Each version's generated `resource-type` calls.
enum Calls {
    Current(current::Plugin),
    V0_4(v0_4::Plugin),
    V0_3(v0_3::Plugin),
    V0_2(v0_2::Plugin),
    V0_1(v0_1::Plugin),
}

/// An instantiated plugin: the calls of `resource-type`, each version's
/// generated function behind one method, and `replication` when the type
/// exports it.
pub struct PluginBindings {
    calls: Calls,
    replication: Option<Replication>,
}

/// A replicated type's generated `replication` calls, by version.
enum Replication {
    Current(replication::Guest),
    V0_4(replication_0_4::Guest),
    V0_3(replication_0_3::Guest),
}

/// Run the same expression on whichever version's `resource-type` export
/// `$bindings` holds (`$export` names it in `$call`).
macro_rules! dispatch {
    ($bindings:expr, $export:ident => $call:expr) => {
        match &$bindings.calls {
            Calls::Current(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
            Calls::V0_4(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
            Calls::V0_3(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
            Calls::V0_2(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
            Calls::V0_1(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
        }
    };
}

impl PluginBindings {
    /// `describe`: the type's name, schema, timers and flags.
    pub async fn describe<S>(&self, store: S) -> wasmtime::Result<TypeInfo>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.call_describe(store).await)
    }

    /// `validate`: the plugin's own check of a resource's properties.
    #[allow(clippy::ptr_arg, reason = "the generated call takes the list as a Vec")]
    pub async fn validate<S>(
        &self,
        store: S,
        properties: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), PropertyError>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.call_validate(store, properties).await)
    }

    /// `instance.open`: the handle of the opened resource.
    #[allow(clippy::ptr_arg, reason = "the generated call takes the list as a Vec")]
    pub async fn open<S>(
        &self,
        store: S,
        name: &str,
        properties: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<ResourceAny, PropertyError>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_open(store, name, properties).await)
    }

    /// `instance.online`.
    pub async fn online<S>(
        &self,
        store: S,
        handle: ResourceAny,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_online(store, handle).await)
    }

    /// `instance.offline`.
    pub async fn offline<S>(
        &self,
        store: S,
        handle: ResourceAny,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_offline(store, handle).await)
    }

    /// `instance.terminate`.
    pub async fn terminate<S>(&self, store: S, handle: ResourceAny) -> wasmtime::Result<()>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_terminate(store, handle).await)
    }

    /// `instance.looks-alive`.
    pub async fn looks_alive<S>(&self, store: S, handle: ResourceAny) -> wasmtime::Result<Health>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_looks_alive(store, handle).await)
    }

    /// `instance.is-alive`.
    pub async fn is_alive<S>(&self, store: S, handle: ResourceAny) -> wasmtime::Result<Health>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_is_alive(store, handle).await)
    }

    /// `instance.control`.
    pub async fn control<S>(
        &self,
        store: S,
        handle: ResourceAny,
        code: &str,
        payload: &str,
    ) -> wasmtime::Result<Result<String, String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        dispatch!(self, export => export.instance().call_control(store, handle, code, payload).await)
    }

    /// Whether this instance's type exports `replication`.
    pub fn is_replicated(&self) -> bool {
        self.replication.is_some()
    }

    /// The `replication` export, or an error naming it for a type without.
    fn replication(&self) -> wasmtime::Result<&Replication> {
        self.replication.as_ref().ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "the type is not replicated: it does not export {}",
                super::REPLICATION_EXPORT
            ))
        })
    }

    /// `replication.start-passive`.
    pub async fn start_passive<S>(
        &self,
        store: S,
        handle: ResourceAny,
        source: &CopySource,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self.replication()? {
            Replication::Current(calls) => calls.call_start_passive(store, handle, source).await,
            Replication::V0_4(calls) => {
                let source = replication_0_4::CopySource {
                    node: source.node.clone(),
                    generation: source.generation,
                };
                calls.call_start_passive(store, handle, &source).await
            }
            Replication::V0_3(calls) => {
                let source = replication_0_3::CopySource {
                    node: source.node.clone(),
                    generation: source.generation,
                };
                calls.call_start_passive(store, handle, &source).await
            }
        }
    }

    /// `replication.stop-passive`.
    pub async fn stop_passive<S>(
        &self,
        store: S,
        handle: ResourceAny,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self.replication()? {
            Replication::Current(calls) => calls.call_stop_passive(store, handle).await,
            Replication::V0_4(calls) => calls.call_stop_passive(store, handle).await,
            Replication::V0_3(calls) => calls.call_stop_passive(store, handle).await,
        }
    }

    /// `replication.activate`.
    pub async fn activate<S>(
        &self,
        store: S,
        handle: ResourceAny,
        generation: u64,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self.replication()? {
            Replication::Current(calls) => calls.call_activate(store, handle, generation).await,
            Replication::V0_4(calls) => calls.call_activate(store, handle, generation).await,
            Replication::V0_3(calls) => calls.call_activate(store, handle, generation).await,
        }
    }

    /// `replication.deactivate`.
    pub async fn deactivate<S>(
        &self,
        store: S,
        handle: ResourceAny,
        generation: u64,
    ) -> wasmtime::Result<Result<(), String>>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self.replication()? {
            Replication::Current(calls) => calls.call_deactivate(store, handle, generation).await,
            Replication::V0_4(calls) => calls.call_deactivate(store, handle, generation).await,
            Replication::V0_3(calls) => calls.call_deactivate(store, handle, generation).await,
        }
    }

    /// `replication.copy-status`.
    pub async fn copy_status<S>(&self, store: S, handle: ResourceAny) -> wasmtime::Result<CopyState>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        match self.replication()? {
            Replication::Current(calls) => calls.call_copy_status(store, handle).await,
            Replication::V0_4(calls) => {
                Ok(copy_state_0_4(calls.call_copy_status(store, handle).await?))
            }
            Replication::V0_3(calls) => {
                Ok(copy_state_0_3(calls.call_copy_status(store, handle).await?))
            }
        }
    }
}

/// A frozen version's copy state in the current type (the same fields
/// and cases), as a function `$name` from the module `$then`.
macro_rules! copy_state_from {
    ($name:ident, $then:ident, $version:literal) => {
        #[doc = concat!("A ", $version, " copy state in the current type.")]
        fn $name(state: $then::CopyState) -> CopyState {
            use super::{CopyHealth, CopyRole};
            use $then::{CopyHealth as Then, CopyRole as Role};
            CopyState {
                role: match state.role {
                    Role::None => CopyRole::None,
                    Role::Passive => CopyRole::Passive,
                    Role::Active => CopyRole::Active,
                    Role::Deposed => CopyRole::Deposed,
                },
                generation: state.generation,
                copied: state.copied,
                replayed: state.replayed,
                lag: state.lag,
                health: match state.health {
                    Then::Healthy => CopyHealth::Healthy,
                    Then::Failed(why) => CopyHealth::Failed(why),
                    Then::Diverged(why) => CopyHealth::Diverged(why),
                },
            }
        }
    };
}

copy_state_from!(copy_state_0_4, replication_0_4, "0.4.0");
copy_state_from!(copy_state_0_3, replication_0_3, "0.3.0");
