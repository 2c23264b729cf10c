//! The Warden agent: a cluster resource host whose resource types are
//! WebAssembly components. Start with `ARCHITECTURE.md` in the repository.

pub mod contract;
pub mod runtime;

/// The built-in resource types, compiled from `plugins/` and embedded.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}
pub mod monitor;
