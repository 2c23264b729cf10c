//! The bindings generated from each contract version the agent runs.
//!
//! `current` is `wit/resource.wit` (world `plugin`); `replicated` is its
//! world `replicated-plugin`, of which only the `replication` export is
//! used (a type has it or not); `v0_4` and `v0_3` (each with its
//! `_replicated`), `v0_2` and `v0_1` are the frozen copies in `wit/released/`. The versions differ in their
//! interface names' version and in what each added; their shared types are
//! the same, so the older ones use `current`'s Rust types for the `types`
//! interface: an older plugin's `describe` returns the very `TypeInfo` a
//! current one does, and the rest of the agent never asks which it was.

/// `warden:resource@0.5.0`, the contract of `wit/resource.wit`.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod current {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// The `replication` export of `warden:resource@0.5.0` (world
/// `replicated-plugin`); its imports are `current`'s.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod replicated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "replicated-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
            "warden:resource/host": crate::contract::bindings::current::warden::resource::host,
            "warden:resource/process": crate::contract::bindings::current::warden::resource::process,
            "warden:resource/checkpoint": crate::contract::bindings::current::warden::resource::checkpoint,
            "warden:resource/network": crate::contract::bindings::current::warden::resource::network,
            "warden:resource/probe": crate::contract::bindings::current::warden::resource::probe,
        },
    });
}

/// `warden:resource@0.4.0`, frozen in `wit/released/0.4.0/` (world
/// `plugin`).
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_4 {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.4.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
        },
    });
}

/// The `replication` export of `warden:resource@0.4.0` (world
/// `replicated-plugin`); its imports are `v0_4`'s.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_4_replicated {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.4.0",
        world: "replicated-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
            "warden:resource/host": crate::contract::bindings::v0_4::warden::resource::host,
            "warden:resource/process": crate::contract::bindings::v0_4::warden::resource::process,
            "warden:resource/checkpoint": crate::contract::bindings::v0_4::warden::resource::checkpoint,
            "warden:resource/network": crate::contract::bindings::v0_4::warden::resource::network,
            "warden:resource/probe": crate::contract::bindings::v0_4::warden::resource::probe,
        },
    });
}

/// `warden:resource@0.3.0`, frozen in `wit/released/0.3.0/` (world
/// `plugin`).
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.3.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
        },
    });
}

/// The `replication` export of `warden:resource@0.3.0` (world
/// `replicated-plugin`); its imports are `v0_3`'s.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_3_replicated {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.3.0",
        world: "replicated-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
            "warden:resource/host": crate::contract::bindings::v0_3::warden::resource::host,
            "warden:resource/process": crate::contract::bindings::v0_3::warden::resource::process,
            "warden:resource/checkpoint": crate::contract::bindings::v0_3::warden::resource::checkpoint,
            "warden:resource/network": crate::contract::bindings::v0_3::warden::resource::network,
        },
    });
}

/// `warden:resource@0.2.0`, frozen in `wit/released/0.2.0/`.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.2.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
        },
    });
}

/// `warden:resource@0.1.0`, frozen in `wit/released/0.1.0/`.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/released/0.1.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "warden:resource/types": crate::contract::bindings::current::warden::resource::types,
        },
    });
}
