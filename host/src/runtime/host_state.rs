//! What a plugin's imports reach: the state of one store.
//!
//! Two layers, because a store is disposable and a resource is not:
//! - [`ResourceContext`] is the resource itself: its name, type, grants,
//!   data directory and managed process. It outlives every store built for
//!   the resource.
//! - [`HostState`] is one store's data: the narrowed WASI context, the
//!   memory limit and the deadline of the call in flight. A trap throws it
//!   away with the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::deadline::CallDeadline;
use super::guest_output::GuestOutput;
use super::limits::MemoryLimit;
use super::process::{ProcessExit, ProcessSlot};
use crate::contract::bindings::warden::resource::{host, process, types};

/// What the node configuration grants one plugin. Everything not granted is
/// denied.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Programs the plugin may start, by absolute path.
    pub allow_programs: Vec<PathBuf>,
}

/// One resource, as the host capabilities see it.
#[derive(Debug)]
pub struct ResourceContext {
    pub name: Arc<str>,
    pub type_name: Arc<str>,
    pub grants: Grants,
    /// The resource's private directory; the managed process runs there.
    pub data_dir: PathBuf,
    pub process: ProcessSlot,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
}

impl ResourceContext {
    /// A context for `name`; managed-process exits are sent to `exits`.
    pub fn new(
        name: &str,
        type_name: &str,
        grants: Grants,
        data_dir: PathBuf,
        exits: mpsc::UnboundedSender<ProcessExit>,
    ) -> Arc<ResourceContext> {
        let name: Arc<str> = name.into();
        Arc::new(ResourceContext {
            process: ProcessSlot::new(name.clone(), exits),
            stdout: GuestOutput::new(name.clone(), "stdout"),
            stderr: GuestOutput::new(name.clone(), "stderr"),
            name,
            type_name: type_name.into(),
            grants,
            data_dir,
        })
    }

    /// A context for type-level calls (describe, validate), which belong to
    /// no resource and are granted nothing.
    pub fn for_type(type_name: &str) -> Arc<ResourceContext> {
        let (exits, _) = mpsc::unbounded_channel();
        ResourceContext::new(
            &format!("({type_name})"),
            type_name,
            Grants::default(),
            std::env::temp_dir(),
            exits,
        )
    }
}

/// The data of one store.
pub struct HostState {
    pub(crate) resource: Arc<ResourceContext>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimit,
    /// The deadline of the call in flight, which progress reports extend.
    pub(crate) deadline: Option<Arc<CallDeadline>>,
}

impl HostState {
    pub fn new(resource: Arc<ResourceContext>, memory_limit: usize) -> HostState {
        // Narrowed WASI: clocks and randomness only. No preopened
        // directories, no environment, no arguments, no sockets.
        let wasi = WasiCtx::builder()
            .stdout(resource.stdout.clone())
            .stderr(resource.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            resource,
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimit {
                limit: memory_limit,
            },
            deadline: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Longest log message a plugin may write in one call; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 16 * 1024;

impl types::Host for HostState {}

impl host::Host for HostState {
    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let resource = &*self.resource.name;
        let kind = &*self.resource.type_name;
        match level {
            host::Level::Trace => {
                tracing::trace!(target: "warden::plugin", resource, kind, "{message}")
            }
            host::Level::Debug => {
                tracing::debug!(target: "warden::plugin", resource, kind, "{message}")
            }
            host::Level::Info => {
                tracing::info!(target: "warden::plugin", resource, kind, "{message}")
            }
            host::Level::Warn => {
                tracing::warn!(target: "warden::plugin", resource, kind, "{message}")
            }
            host::Level::Error => {
                tracing::error!(target: "warden::plugin", resource, kind, "{message}")
            }
        }
        Ok(())
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }

    async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        // The call's deadline is enforced around the whole call, so a long
        // sleep here is cut off like any other hang.
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }

    async fn report_progress(&mut self, message: String) -> wasmtime::Result<u64> {
        let left = match &self.deadline {
            Some(deadline) => deadline.extend(),
            None => Duration::MAX,
        };
        tracing::info!(
            target: "warden::plugin",
            resource = &*self.resource.name,
            "progress: {message} ({} left)",
            if left == Duration::MAX { "no deadline".to_string() } else { format!("{left:?}") }
        );
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }
}

impl process::Host for HostState {
    async fn spawn(&mut self, spec: process::SpawnSpec) -> wasmtime::Result<Result<u32, String>> {
        let resource = &self.resource;
        Ok(resource
            .process
            .spawn(&spec, &resource.grants.allow_programs, &resource.data_dir))
    }

    async fn stop(
        &mut self,
        grace_ms: u64,
    ) -> wasmtime::Result<Result<process::ProcessState, String>> {
        Ok(self
            .resource
            .process
            .stop(Duration::from_millis(grace_ms))
            .await)
    }

    async fn state(&mut self) -> wasmtime::Result<process::ProcessState> {
        Ok(self.resource.process.state())
    }
}
