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
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::checkpoint::{CheckpointStore, Checkpoints, FileCheckpoints};
use super::data_preopen::{DataPreopen, PreopensView};
use super::data_quota::{DataQuota, QuotaFilesystem, QuotaLimits};
use super::deadline::CallDeadline;
use super::guest_output::{GuestOutput, OutputBudget};
use super::limits::MemoryLimit;
use super::network::NetworkGrant;
use super::plugin_text::{self, MAX_LOG_MESSAGE, MAX_REASON};
use super::process::{ProcessExit, ProcessSlot};
use crate::contract::bindings::current::warden::resource::{checkpoint, host, process, types};

/// Where the resource's data directory appears inside the sandbox.
pub const GUEST_DATA_DIR: &str = "/data";

/// What the operator grants one resource. Everything not granted is
/// denied; nothing a plugin says about itself (a property's default, the
/// environment it asks for) grants anything.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Programs the plugin may start, by absolute path.
    pub allow_programs: Vec<PathBuf>,
    /// How the programs it starts run: environment, user and group.
    pub launch: LaunchGrants,
    /// The resource's properties as the operator configured them (no
    /// defaults filled in): only the `address` properties among them
    /// grant connections (see [`super::NetworkGrant::resolve`]).
    pub configured: Vec<(String, String)>,
    /// How much the plugin may keep in its `/data` (bytes and entries).
    pub data_quota: QuotaLimits,
    /// The virtual addresses the type may claim (`[plugins.TYPE.ip]`).
    pub ip: Option<Arc<crate::virtual_ip::AddressGrant>>,
    /// The DNS names the type may update (`[plugins.TYPE.dns]`).
    pub dns: Option<Arc<crate::dns_update::DnsUpdater>>,
}

/// How the programs of one plugin are started. A program never inherits
/// the agent's environment (which may hold secrets) nor chooses its own
/// privileges: it gets `env`, plus the variables it asks for whose names
/// are in `allow_env`, and runs as `run_as` when the operator set one.
#[derive(Debug, Clone, Default)]
pub struct LaunchGrants {
    /// Variables every program starts with, set by the operator.
    pub env: Vec<(String, String)>,
    /// Names of variables the plugin may set itself.
    pub allow_env: Vec<String>,
    /// The user and group the programs run as; `None`: the agent's own.
    pub run_as: Option<RunAs>,
}

/// A user and group to run programs as, resolved when the configuration
/// is read (an unknown name is a configuration error, never a silent root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name, for messages.
    pub user: String,
    /// The user's id.
    pub uid: u32,
    /// The group's id.
    pub gid: u32,
}

/// Where one resource keeps its files.
///
/// `data` is the plugin's: it sees it as `/data` and may put anything
/// there, symlinks included. `private` is the agent's: the checkpoint
/// record, the pid record and the service's log live there, out of the
/// plugin's reach, so a plugin cannot make the agent (running as root)
/// read or write through a link it planted.
#[derive(Debug, Clone, Default)]
pub struct ResourceDirs {
    /// The plugin's `/data`.
    pub data: PathBuf,
    /// The agent's own files about the resource, out of the plugin's reach.
    pub private: PathBuf,
}

impl ResourceDirs {
    /// The directories of resource `name` under the agent's `data_dir`:
    /// `resources/NAME` (the plugin's) and `private/NAME` (the agent's).
    pub fn under(data_dir: &std::path::Path, name: &str) -> ResourceDirs {
        ResourceDirs {
            data: data_dir.join("resources").join(name),
            private: data_dir.join("private").join(name),
        }
    }

    /// Both directories inside `root` (`root/data` and `root/private`),
    /// for a resource that lives alone (tests, `warden plugin test`).
    pub fn inside(root: &std::path::Path) -> ResourceDirs {
        ResourceDirs {
            data: root.join("data"),
            private: root.join("private"),
        }
    }

    /// Create both; the private one readable by the agent alone.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::create_dir_all(&self.data)?;
        if let Some(parent) = self.private.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.private)?;
        std::fs::set_permissions(&self.private, std::fs::Permissions::from_mode(0o700))
    }
}

/// One resource, as the host capabilities see it.
#[derive(Debug)]
pub struct ResourceContext {
    /// The resource's name.
    pub name: Arc<str>,
    /// Its type's name.
    pub type_name: Arc<str>,
    /// What the operator granted.
    pub grants: Grants,
    /// The plugin's directory (`dirs.data`, its `/data`; the managed
    /// process runs there) and the agent's own (`dirs.private`).
    pub dirs: ResourceDirs,
    /// The program it manages, which outlives its instances.
    pub process: ProcessSlot,
    /// Its checkpoint record.
    pub checkpoints: Checkpoints,
    /// The quota on `dirs.data` and its running estimate of usage, kept
    /// here so that a new store does not start counting from nothing.
    pub data_quota: Arc<DataQuota>,
    /// False for the context of type-level calls, which see no directory.
    has_data_dir: bool,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    /// How much of the plugin's output may still reach the log: stdout,
    /// stderr, log messages and progress reports all spend from it.
    pub(crate) output: Arc<OutputBudget>,
}

impl ResourceContext {
    /// A context for `name`; managed-process exits are sent to `exits`.
    /// Checkpoints are kept in a file in the private directory.
    pub fn new(
        name: &str,
        type_name: &str,
        grants: Grants,
        dirs: ResourceDirs,
        exits: mpsc::UnboundedSender<ProcessExit>,
    ) -> Arc<ResourceContext> {
        let store = Arc::new(FileCheckpoints::new(&dirs));
        ResourceContext::with_checkpoint_store(name, type_name, grants, dirs, exits, store)
    }

    /// Like [`ResourceContext::new`], with checkpoints kept in `store` (the
    /// cluster store, when there is one).
    pub fn with_checkpoint_store(
        name: &str,
        type_name: &str,
        grants: Grants,
        dirs: ResourceDirs,
        exits: mpsc::UnboundedSender<ProcessExit>,
        store: Arc<dyn CheckpointStore>,
    ) -> Arc<ResourceContext> {
        let output = Arc::<OutputBudget>::default();
        Arc::new(ResourceContext::build(
            name.into(),
            type_name,
            grants,
            dirs,
            exits,
            store,
            output,
        ))
    }

    /// A context for type-level calls (describe, validate), which belong to
    /// no resource and are granted nothing: no directory, no checkpoints.
    /// Their output spends from `output`, the budget of the loaded plugin
    /// (see [`super::Plugin`]), not a fresh one: a store is thrown away
    /// after each call, and a type validated at every configuration change
    /// must not get a new burst of log lines with each.
    pub(crate) fn for_type(type_name: &str, output: Arc<OutputBudget>) -> Arc<ResourceContext> {
        let (exits, _) = mpsc::unbounded_channel();
        // No directory is opened for type-level calls: nothing to count.
        let mut context = ResourceContext::build(
            format!("({type_name})").into(),
            type_name,
            Grants::default(),
            ResourceDirs::default(),
            exits,
            Arc::new(NoCheckpoints),
            output,
        );
        context.has_data_dir = false;
        Arc::new(context)
    }

    /// The context every constructor makes, with a directory (`dirs.data`,
    /// counted against `grants.data_quota`) and the output budget
    /// `output`.
    fn build(
        name: Arc<str>,
        type_name: &str,
        grants: Grants,
        dirs: ResourceDirs,
        exits: mpsc::UnboundedSender<ProcessExit>,
        store: Arc<dyn CheckpointStore>,
        output: Arc<OutputBudget>,
    ) -> ResourceContext {
        ResourceContext {
            checkpoints: Checkpoints::new(name.clone(), store),
            data_quota: Arc::new(DataQuota::new(
                name.clone(),
                dirs.data.clone(),
                grants.data_quota,
            )),
            has_data_dir: true,
            process: ProcessSlot::new(name.clone(), exits),
            stdout: GuestOutput::new(name.clone(), "stdout", output.clone()),
            stderr: GuestOutput::new(name.clone(), "stderr", output.clone()),
            output,
            name,
            type_name: type_name.into(),
            grants,
            dirs,
        }
    }
}

/// The checkpoint store of type-level calls: there is no resource to keep
/// a record for.
#[derive(Debug)]
struct NoCheckpoints;

impl CheckpointStore for NoCheckpoints {
    fn load(&self, _: &str) -> Result<super::checkpoint::Checkpoint, String> {
        Err("describe and validate belong to no resource: they have no checkpoint".to_string())
    }
    fn save(&self, resource: &str, _: &super::checkpoint::Checkpoint) -> Result<(), String> {
        self.load(resource).map(drop)
    }
}

/// The data of one store.
pub(crate) struct HostState {
    pub(crate) resource: Arc<ResourceContext>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// `/data`, open only while a call uses it (`data_preopen`).
    preopen: DataPreopen,
    pub(crate) memory: MemoryLimit,
    /// The deadline of the call in flight, which progress reports extend.
    pub(crate) deadline: Option<Arc<CallDeadline>>,
    /// Where the resource may connect: checked by the WASI sockets and by
    /// the `probe` import alike.
    pub(crate) network: Arc<NetworkGrant>,
    /// The fiber stack this store's calls run on, given back between
    /// calls (`fiber_stacks`).
    pub(crate) stack: Arc<super::fiber_stacks::StackSlot>,
    /// The idle connections `probe.http-check` keeps (none unless a check
    /// asks to reuse its connection); closed with the store.
    pub(crate) kept: super::http_check::KeptConnections,
}

impl HostState {
    /// The data of a new store for `resource`, whose TCP connections are
    /// limited to `network`. Fails, naming the directory, if the data
    /// directory cannot be opened.
    pub(crate) fn new(
        resource: Arc<ResourceContext>,
        memory_limit: usize,
        network: Arc<NetworkGrant>,
    ) -> Result<HostState, String> {
        // Narrowed WASI: clocks, randomness, the data directory as /data and
        // TCP connects to the granted addresses. No other directory, no
        // environment, no arguments, no UDP, no name lookups.
        let mut wasi = WasiCtx::builder();
        wasi.stdout(resource.stdout.clone())
            .stderr(resource.stderr.clone())
            .allow_tcp(!network.is_empty())
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(network.clone().into_check(resource.name.clone()));
        // `/data` is answered by `data_preopen`, which holds its descriptor
        // only while a call uses it. Checked here, so a directory that
        // cannot be opened refuses the store as it always did.
        let data_dir = resource.has_data_dir.then(|| resource.dirs.data.clone());
        let preopen = DataPreopen::new(data_dir).map_err(|e| {
            format!(
                "cannot open the data directory {} for the sandbox: {e}",
                resource.dirs.data.display()
            )
        })?;
        let wasi = wasi.build();
        // Every open file, socket and stream of the guest is an entry here:
        // capping the table bounds the descriptors one resource can hold,
        // so a plugin that opens files without end traps (and its store,
        // with every descriptor, is thrown away) before it starves the
        // agent and its neighbours of descriptors.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        Ok(HostState {
            resource,
            wasi,
            table,
            preopen,
            memory: MemoryLimit {
                limit: memory_limit,
            },
            deadline: None,
            network,
            stack: Arc::default(),
            kept: Default::default(),
        })
    }
}

impl HostState {
    /// wasmtime-wasi's filesystem of this store with the resource's quota:
    /// what `wasi:filesystem/types` reaches (see `data_quota`).
    pub(crate) fn quota_filesystem(&mut self) -> QuotaFilesystem<'_> {
        // Every guest call on a descriptor comes through here: a parked
        // `/data` is opened again first.
        self.preopen.unpark(&mut self.table);
        QuotaFilesystem {
            fs: WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            quota: &self.resource.data_quota,
        }
    }
}

impl HostState {
    /// What `wasi:filesystem/preopens` reaches (`data_preopen`).
    pub(crate) fn preopens(&mut self) -> PreopensView<'_> {
        PreopensView {
            preopen: &mut self.preopen,
            table: &mut self.table,
        }
    }

    /// Once a call has returned: close `/data` until the guest's next
    /// filesystem call (`data_preopen`).
    pub(crate) fn park_data_dir(&mut self) {
        self.preopen.park(&mut self.table);
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

/// The most handles (open files, sockets, streams, pollables) one store
/// may hold at once.
pub const MAX_HANDLES: usize = 256;

impl types::Host for HostState {}

impl host::Host for HostState {
    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        // One line, at most MAX_LOG_MESSAGE, within the resource's budget.
        let message = plugin_text::one_line(message, MAX_LOG_MESSAGE);
        if !self
            .resource
            .output
            .admit(&self.resource.name, message.len())
        {
            return Ok(());
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
        let message = plugin_text::one_line(message, MAX_REASON);
        if self
            .resource
            .output
            .admit(&self.resource.name, message.len())
        {
            tracing::info!(
                target: "warden::plugin",
                resource = &*self.resource.name,
                "progress: {message} ({} left)",
                if left == Duration::MAX { "no deadline".to_string() } else { format!("{left:?}") }
            );
        }
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }
}

impl process::Host for HostState {
    async fn spawn(&mut self, spec: process::SpawnSpec) -> wasmtime::Result<Result<u32, String>> {
        let resource = &self.resource;
        Ok(resource
            .process
            .spawn(&spec, &resource.grants, &resource.dirs))
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

impl checkpoint::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let record = self.resource.checkpoints.all().await;
        Ok(record.map(|mut r| r.remove(&key)))
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .resource
            .checkpoints
            .update(|r| {
                r.insert(key, value);
            })
            .await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .resource
            .checkpoints
            .update(|r| {
                r.remove(&key);
            })
            .await)
    }

    async fn list(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, String>> {
        let record = self.resource.checkpoints.all().await;
        Ok(record.map(|r| r.into_iter().collect()))
    }
}
