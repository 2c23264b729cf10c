//! The bindings generated from each contract version the agent runs.
//!
//! `current` is `wit/resource.wit`; `v0_1` is the frozen copy of 0.1.0 in
//! `wit/released/0.1.0/`. The two differ in their interface names' version
//! and in what 0.2.0 added (the `network` import); their shared types are
//! the same, so `v0_1` uses `current`'s Rust types for the `types`
//! interface: a 0.1.0 plugin's `describe` returns the very `TypeInfo` a
//! 0.2.0 one does, and the rest of the agent never asks which it was.

/// `warden:resource@0.2.0`, the contract of `wit/resource.wit`.
#[allow(missing_docs, unreachable_pub, clippy::all)] // generated code
pub mod current {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
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
