//! The plugin runtime: wasmtime set up for many small, untrusted, bounded
//! components.
//!
//! - [`Runtime`] owns the engine, the linker and the epoch ticker (which
//!   ticks only while a call is in flight, `epoch.rs`).
//! - [`Plugin`] is one loaded resource type: compiled, checked against the
//!   contract, described.
//! - [`Instance`] is one resource's sandbox: its own store and instance,
//!   every call bounded by a deadline, thrown away and rebuilt after a trap
//!   or a cut-off.
//! - `bounded` is the one place where a call into a plugin is bounded.

mod bounded;
mod cache;
mod call;
mod checkpoint;
mod data_preopen;
mod data_quota;
mod deadline;
mod engine;
mod epoch;
mod fiber_stacks;
mod guest_output;
mod host_state;
pub mod http_check;
mod instance;
pub mod launch;
mod limits;
mod network;
mod older_contracts;
mod pid_record;
mod plugin;
pub mod plugin_text;
mod private_file;
pub mod probe;
mod process;
pub mod process_limits;
mod virtual_network;

pub(crate) use bounded::{Instantiate, call_in_fresh_store};
pub use cache::{CacheOutcome, CompileCache};
pub use call::CallError;
pub use checkpoint::{
    CHECKPOINT_FILE, Checkpoint, CheckpointStore, Checkpoints, FileCheckpoints,
    MAX_CHECKPOINT_BYTES,
};
pub use data_quota::{
    DEFAULT_DATA_QUOTA_BYTES, DEFAULT_DATA_QUOTA_ENTRIES, DataQuota, Growth,
    MAX_DATA_QUOTA_ENTRIES, QuotaLimits,
};
pub use deadline::CallDeadline;
pub use engine::{Allocator, ON_DEMAND_RESERVATION, Runtime, RuntimeConfig};
pub(crate) use guest_output::OutputBudget;
pub use guest_output::{BYTE_BURST, BYTES_PER_SECOND, LINE_BURST, LINES_PER_SECOND};
pub(crate) use host_state::HostState;
pub use host_state::{
    GUEST_DATA_DIR, Grants, LaunchGrants, MAX_HANDLES, ResourceContext, ResourceDirs, RunAs,
};
pub use instance::{Instance, InstanceConfig};
pub use network::{Denied, NetworkGrant, parse_address};
pub use plugin::{LoadError, Plugin, check_kind, kind_name};
pub(crate) use plugin::{check_header, check_schema};
pub use process::{
    ProcessExit, SERVICE_LOG, die_with_agent, leave_running_on_exit, leaving_running,
};
