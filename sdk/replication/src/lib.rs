//! [`ReplicatedType`]: a resource type whose data has copies on several
//! nodes (contract 0.3.0's `replication` export, world
//! `replicated-plugin`), and [`export_replicated_type!`], which exports it.
//!
//! A crate of its own beside `warden-sdk`, because the bindings a plugin
//! links say which world it is: every plugin built with `warden-sdk` alone
//! is a plain one, and a plugin that also uses this crate is replicated.
//! The imports are `warden-sdk`'s (the same Rust types, through
//! `wit-bindgen`'s `with`); the exports are this crate's.
//!
//! The agent decides which copy is active; the type moves the data. Each
//! activation carries a generation, strictly increasing per resource: a
//! type must never activate at a generation not newer than its own, must
//! refuse a source older than it knows, and must take no writes once
//! deposed (a newer generation replaced it). [`ReplicatedService`] is the
//! same for a [`ServiceType`], with its managed [`Service`] at hand.

#![warn(missing_docs)]

use warden_sdk::ResourceType;
use warden_sdk::service::{Managed, Service, ServiceType};

/// The bindings of the world `replicated-plugin`; its imports are
/// `warden_sdk::bindings`'.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "replicated-plugin",
        pub_export_macro: true,
        export_macro_name: "export_replicated_plugin",
        default_bindings_module: "warden_sdk_replication::bindings",
        with: {
            "warden:resource/types@0.5.0": warden_sdk::bindings::warden::resource::types,
            "warden:resource/host@0.5.0": warden_sdk::bindings::warden::resource::host,
            "warden:resource/process@0.5.0": warden_sdk::bindings::warden::resource::process,
            "warden:resource/checkpoint@0.5.0": warden_sdk::bindings::warden::resource::checkpoint,
            "warden:resource/network@0.5.0": warden_sdk::bindings::warden::resource::network,
            "warden:resource/probe@0.5.0": warden_sdk::bindings::warden::resource::probe,
        },
    });
}

pub use bindings::export_replicated_plugin;
pub use bindings::exports::warden::resource::replication::{
    CopyHealth, CopyRole, CopySource, CopyState,
};

/// One open resource of a replicated `T`, as the bindings see it: what
/// [`export_replicated_type!`] exports as the contract's `instance`. You
/// do not use it yourself.
pub struct Copy<T>(T);

warden_sdk::__guest_instance!(
    crate::bindings::exports::warden::resource::resource_type,
    Copy
);

impl<T> Copy<T> {
    /// The opened resource (for the `replication` export's glue).
    #[doc(hidden)]
    pub fn resource(&self) -> &T {
        &self.0
    }
}

/// A [`ResourceType`] with active and passive copies. Each call gets the
/// opened resource; the agent bounds `start_passive` and `activate` by the
/// pending timeout (extended by progress reports) and `copy_status` like a
/// health check.
pub trait ReplicatedType: ResourceType {
    /// Start as a passive copy following the active one `source` names, or
    /// re-point a running passive copy; reseed a diverged one.
    fn start_passive(&self, source: &CopySource) -> Result<(), String>;
    /// Stop following; keep the data for a later start.
    fn stop_passive(&self) -> Result<(), String>;
    /// Become the active copy at `generation`.
    fn activate(&self, generation: u64) -> Result<(), String>;
    /// Stop taking writes: `generation` replaces this copy's.
    fn deactivate(&self, generation: u64) -> Result<(), String>;
    /// Where this copy stands.
    fn copy_status(&self) -> CopyState;
}

/// A [`ServiceType`] with active and passive copies: [`ReplicatedType`]'s
/// calls, each given the managed service. `Managed<T>` is then a
/// [`ReplicatedType`], exported with
/// `export_replicated_type!(Managed<T>)`.
pub trait ReplicatedService: ServiceType {
    /// See [`ReplicatedType::start_passive`].
    fn start_passive(&self, service: &Service, source: &CopySource) -> Result<(), String>;
    /// See [`ReplicatedType::stop_passive`].
    fn stop_passive(&self, service: &Service) -> Result<(), String>;
    /// See [`ReplicatedType::activate`].
    fn activate(&self, service: &Service, generation: u64) -> Result<(), String>;
    /// See [`ReplicatedType::deactivate`].
    fn deactivate(&self, service: &Service, generation: u64) -> Result<(), String>;
    /// See [`ReplicatedType::copy_status`].
    fn copy_status(&self, service: &Service) -> CopyState;
}

impl<T: ReplicatedService> ReplicatedType for Managed<T> {
    fn start_passive(&self, source: &CopySource) -> Result<(), String> {
        self.inner().start_passive(self.service(), source)
    }

    fn stop_passive(&self) -> Result<(), String> {
        self.inner().stop_passive(self.service())
    }

    fn activate(&self, generation: u64) -> Result<(), String> {
        self.inner().activate(self.service(), generation)
    }

    fn deactivate(&self, generation: u64) -> Result<(), String> {
        self.inner().deactivate(self.service(), generation)
    }

    fn copy_status(&self) -> CopyState {
        self.inner().copy_status(self.service())
    }
}

/// Export a [`ReplicatedType`] as the plugin's `resource-type` and
/// `replication` (world `replicated-plugin`): used instead of
/// `warden_sdk::export_type!`, once, at the crate's top level.
///
/// ```no_run
/// # use warden_sdk_replication::{CopySource, CopyState, ReplicatedService};
/// # use warden_sdk::service::{Managed, Service, ServiceDefaults, ServiceType};
/// # use warden_sdk::types::PropertyError;
/// # use warden_sdk::Props;
/// # struct Db;
/// # impl ServiceType for Db {
/// #     const NAME: &'static str = "db";
/// #     const DESCRIPTION: &'static str = "A database.";
/// #     const SERVICE: ServiceDefaults = ServiceDefaults::new("");
/// #     fn open(_props: &Props) -> Result<Self, PropertyError> { Ok(Db) }
/// #     fn check(&self) -> Result<(), String> { Ok(()) }
/// # }
/// # impl ReplicatedService for Db {
/// #     fn start_passive(&self, _: &Service, _: &CopySource) -> Result<(), String> { Ok(()) }
/// #     fn stop_passive(&self, _: &Service) -> Result<(), String> { Ok(()) }
/// #     fn activate(&self, _: &Service, _: u64) -> Result<(), String> { Ok(()) }
/// #     fn deactivate(&self, _: &Service, _: u64) -> Result<(), String> { Ok(()) }
/// #     fn copy_status(&self, _: &Service) -> CopyState { unimplemented!() }
/// # }
/// warden_sdk_replication::export_replicated_type!(Managed<Db>);
/// ```
#[macro_export]
macro_rules! export_replicated_type {
    ($ty:ty) => {
        /// The plugin's `resource-type` and `replication` exports (from
        /// `warden_sdk::export_replicated_type!`).
        struct __WardenReplicatedType;

        impl $crate::bindings::exports::warden::resource::resource_type::Guest
            for __WardenReplicatedType
        {
            type Instance = $crate::Copy<$ty>;

            fn describe() -> ::warden_sdk::types::TypeInfo {
                ::warden_sdk::type_info::<$ty>(env!("CARGO_PKG_VERSION"))
            }

            fn validate(
                properties: ::warden_sdk::types::Properties,
            ) -> Result<(), ::warden_sdk::types::PropertyError> {
                ::warden_sdk::Exported::<$ty>::validate(&properties)
            }
        }

        impl $crate::bindings::exports::warden::resource::replication::Guest
            for __WardenReplicatedType
        {
            fn start_passive(
                copy: $crate::bindings::exports::warden::resource::resource_type::InstanceBorrow<
                    '_,
                >,
                source: $crate::bindings::exports::warden::resource::replication::CopySource,
            ) -> Result<(), String> {
                let copy = copy.get::<$crate::Copy<$ty>>().resource();
                $crate::ReplicatedType::start_passive(copy, &source)
            }

            fn stop_passive(
                copy: $crate::bindings::exports::warden::resource::resource_type::InstanceBorrow<
                    '_,
                >,
            ) -> Result<(), String> {
                let copy = copy.get::<$crate::Copy<$ty>>().resource();
                $crate::ReplicatedType::stop_passive(copy)
            }

            fn activate(
                copy: $crate::bindings::exports::warden::resource::resource_type::InstanceBorrow<
                    '_,
                >,
                generation: u64,
            ) -> Result<(), String> {
                let copy = copy.get::<$crate::Copy<$ty>>().resource();
                $crate::ReplicatedType::activate(copy, generation)
            }

            fn deactivate(
                copy: $crate::bindings::exports::warden::resource::resource_type::InstanceBorrow<
                    '_,
                >,
                generation: u64,
            ) -> Result<(), String> {
                let copy = copy.get::<$crate::Copy<$ty>>().resource();
                $crate::ReplicatedType::deactivate(copy, generation)
            }

            fn copy_status(
                copy: $crate::bindings::exports::warden::resource::resource_type::InstanceBorrow<
                    '_,
                >,
            ) -> $crate::bindings::exports::warden::resource::replication::CopyState {
                let copy = copy.get::<$crate::Copy<$ty>>().resource();
                $crate::ReplicatedType::copy_status(copy)
            }
        }

        $crate::export_replicated_plugin!(__WardenReplicatedType);
    };
}
