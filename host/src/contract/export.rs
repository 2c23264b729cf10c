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

use super::bindings::{current, v0_1};
use super::{Health, PropertyError, TypeInfo};

/// The bindings line a component is instantiated with: one per contract
/// version the agent links (see [`super::SUPPORTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `warden:resource@0.2.x`, `wit/resource.wit`.
    Current,
    /// `warden:resource@0.1.x`, `wit/released/0.1.0/`.
    V0_1,
}

/// A component linked and checked against the export of its contract
/// version, ready to instantiate in a store.
pub enum PluginPre<T: 'static> {
    /// Built against the current contract.
    Current(current::PluginPre<T>),
    /// Built against 0.1.0.
    V0_1(v0_1::PluginPre<T>),
}

impl<T: Send + 'static> PluginPre<T> {
    /// Check that `pre`'s component exports what `line` requires.
    pub fn new(pre: InstancePre<T>, line: Line) -> wasmtime::Result<PluginPre<T>> {
        Ok(match line {
            Line::Current => PluginPre::Current(current::PluginPre::new(pre)?),
            Line::V0_1 => PluginPre::V0_1(v0_1::PluginPre::new(pre)?),
        })
    }

    /// Instantiate the component in `store`.
    pub async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<PluginBindings> {
        Ok(match self {
            PluginPre::Current(pre) => PluginBindings::Current(pre.instantiate_async(store).await?),
            PluginPre::V0_1(pre) => PluginBindings::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instantiated plugin: the calls of `resource-type`, each version's
/// generated function behind one method.
pub enum PluginBindings {
    /// Built against the current contract.
    Current(current::Plugin),
    /// Built against 0.1.0.
    V0_1(v0_1::Plugin),
}

/// Run the same expression on whichever version's `resource-type` export
/// `$bindings` holds (`$export` names it in `$call`).
macro_rules! dispatch {
    ($bindings:expr, $export:ident => $call:expr) => {
        match $bindings {
            PluginBindings::Current(plugin) => {
                let $export = plugin.warden_resource_resource_type();
                $call
            }
            PluginBindings::V0_1(plugin) => {
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
}
