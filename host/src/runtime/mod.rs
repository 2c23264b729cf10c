//! The plugin runtime: wasmtime set up for many small, untrusted, bounded
//! components.
//!
//! - [`Runtime`] owns the engine, the linker and the epoch ticker.
//! - [`Plugin`] is one loaded resource type: compiled, checked against the
//!   contract, described.
//! - [`Instance`] is one resource's sandbox: its own store and instance,
//!   every call bounded by a deadline, thrown away and rebuilt after a trap
//!   or a cut-off.

mod call;
mod deadline;
mod engine;
mod guest_output;
mod host_state;
mod instance;
mod limits;
mod plugin;
mod process;

pub use call::CallError;
pub use deadline::CallDeadline;
pub use engine::{Runtime, RuntimeConfig};
pub use host_state::{Grants, ResourceContext};
pub use instance::{Instance, InstanceConfig};
pub use plugin::{LoadError, Plugin, check_kind, kind_name};
pub use process::ProcessExit;
