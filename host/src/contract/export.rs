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
use super::bindings::{current, v0_1, v0_2};
use super::{CopySource, CopyState, Health, PropertyError, TypeInfo};

/// The bindings line a component is instantiated with: one per contract
/// version the agent links (see [`super::SUPPORTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `warden:resource@0.3.x`, `wit/resource.wit`.
    Current,
    /// `warden:resource@0.2.x`, `wit/released/0.2.0/`.
    V0_2,
    /// `warden:resource@0.1.x`, `wit/released/0.1.0/`.
    V0_1,
}

/// Where each version's export lives in a component: looked up once, when
/// the component is linked.
enum ExportIndices {
    Current(current::PluginIndices),
    V0_2(v0_2::PluginIndices),
    V0_1(v0_1::PluginIndices),
}

/// A component linked and checked against the export of its contract
/// version, ready to instantiate in a store.
pub struct PluginPre<T: 'static> {
    pre: InstancePre<T>,
    indices: ExportIndices,
    /// The `replication` export, for a replicated type (current contract
    /// only: it is new in 0.3.0).
    replication: Option<replication::GuestIndices>,
}

impl<T: Send + 'static> PluginPre<T> {
    /// Check that `pre`'s component exports what `line` requires, and find
    /// whether it also exports `replication`.
    pub fn new(pre: InstancePre<T>, line: Line) -> wasmtime::Result<PluginPre<T>> {
        let (indices, replication) = match line {
            Line::Current => (
                ExportIndices::Current(current::PluginIndices::new(&pre)?),
                exports_replication(&pre)
                    .then(|| replication::GuestIndices::new(&pre))
                    .transpose()?,
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
            ExportIndices::V0_2(indices) => Calls::V0_2(indices.load(&mut store, &instance)?),
            ExportIndices::V0_1(indices) => Calls::V0_1(indices.load(&mut store, &instance)?),
        };
        let replication = match &self.replication {
            Some(indices) => Some(indices.load(&mut store, &instance)?),
            None => None,
        };
        Ok(PluginBindings { calls, replication })
    }
}

/// Whether the component exports the current contract's `replication`
/// interface (by its exact versioned name).
fn exports_replication<T>(pre: &InstancePre<T>) -> bool {
    let engine = pre.engine();
    pre.component()
        .component_type()
        .exports(engine)
        .any(|(name, _)| name == super::REPLICATION_EXPORT)
}

/// Each version's generated `resource-type` calls.
enum Calls {
    Current(current::Plugin),
    V0_2(v0_2::Plugin),
    V0_1(v0_1::Plugin),
}

/// An instantiated plugin: the calls of `resource-type`, each version's
/// generated function behind one method, and `replication` when the type
/// exports it.
pub struct PluginBindings {
    calls: Calls,
    replication: Option<replication::Guest>,
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
    fn replication(&self) -> wasmtime::Result<&replication::Guest> {
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
        self.replication()?
            .call_start_passive(store, handle, source)
            .await
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
        self.replication()?.call_stop_passive(store, handle).await
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
        self.replication()?
            .call_activate(store, handle, generation)
            .await
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
        self.replication()?
            .call_deactivate(store, handle, generation)
            .await
    }

    /// `replication.copy-status`.
    pub async fn copy_status<S>(&self, store: S, handle: ResourceAny) -> wasmtime::Result<CopyState>
    where
        S: AsContextMut,
        S::Data: Send,
    {
        self.replication()?.call_copy_status(store, handle).await
    }
}
