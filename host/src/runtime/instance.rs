//! One resource's sandbox: a store, an instance and the opened resource.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bounded::{bounded, epoch_deadline_from_now, new_store};
use super::call::CallError;
use super::deadline::CallDeadline;
use super::host_state::{HostState, ResourceContext};
use super::network::NetworkGrant;
use super::plugin::Plugin;
use super::plugin_text;
use crate::contract::{CopySource, CopyState, Health, PluginBindings};

/// Per-resource sandbox settings.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// The most linear memory the resource's instance may have.
    pub memory_limit: usize,
    /// How long instantiating and `open` may take.
    pub open_timeout: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            memory_limit: 64 << 20,
            open_timeout: Duration::from_secs(10),
        }
    }
}

struct Live {
    store: Store<HostState>,
    bindings: PluginBindings,
    handle: ResourceAny,
}

type CallFuture<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// The sandbox of one resource. Every call is bounded by a deadline; after a
/// call is cut off or traps, the store is thrown away and the next call
/// builds a fresh one (and opens the resource again). The plugin keeps
/// nothing across that but what it can rebuild from its properties — and
/// the managed process, which lives in the [`ResourceContext`].
pub struct Instance {
    plugin: Arc<Plugin>,
    context: Arc<ResourceContext>,
    properties: Vec<(String, String)>,
    config: InstanceConfig,
    live: Option<Live>,
    cancel: watch::Receiver<u64>,
    /// How many stores this resource has had; more than one means traps or
    /// cut-offs happened.
    generations: u64,
    /// The addresses the resource may connect to, resolved at the first
    /// open and kept for every later store.
    network: Option<Arc<NetworkGrant>>,
}

/// The closure [`Instance::call`] runs for an export of the resource's
/// instance that takes nothing but its handle (online, offline, terminate,
/// the two checks): the same for each, but the export's method.
macro_rules! export {
    ($method:ident) => {
        |store, b, h| Box::pin(async move { b.$method(store, h).await })
    };
}

impl Instance {
    /// A sandbox for the resource `context` of type `plugin`. Nothing is
    /// instantiated until the first call. Bumping `cancel` cuts off the
    /// call in flight.
    pub fn new(
        plugin: Arc<Plugin>,
        context: Arc<ResourceContext>,
        properties: Vec<(String, String)>,
        config: InstanceConfig,
        cancel: watch::Receiver<u64>,
    ) -> Instance {
        Instance {
            plugin,
            context,
            properties,
            config,
            live: None,
            cancel,
            generations: 0,
            network: None,
        }
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// A sandbox for the same resource on another version of its type (a
    /// hot swap): same context (managed process, data directory), same
    /// limits, same cancel channel; nothing instantiated yet.
    pub fn successor(&self, plugin: Arc<Plugin>, properties: Vec<(String, String)>) -> Instance {
        Instance::new(
            plugin,
            self.context.clone(),
            properties,
            self.config.clone(),
            self.cancel.clone(),
        )
    }

    /// What outlives the instance: the resource's name, grants, directories
    /// and process.
    pub fn context(&self) -> &Arc<ResourceContext> {
        &self.context
    }

    /// How many times a store was built for this resource.
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// Instantiate the plugin and open the resource now, unless that is
    /// done already. Calls do this on their own; this is for callers that
    /// want the cost up front (and for measuring it).
    pub async fn open(&mut self) -> Result<(), CallError> {
        // Boxed for the reason `call` is.
        let result = Box::pin(self.ensure_live()).await.map(drop);
        if result.is_err() {
            self.discard();
        }
        result
    }

    /// Instantiate and open, unless a live instance exists.
    async fn ensure_live(&mut self) -> Result<&mut Live, CallError> {
        if self.live.is_none() {
            let network = self.network().await?;
            let mut store = new_store(
                &self.plugin.runtime,
                self.context.clone(),
                self.config.memory_limit,
                network,
            )?;
            let deadline = Arc::new(CallDeadline::fixed(self.config.open_timeout));
            store.data_mut().deadline = Some(deadline.clone());
            let stderr = self.context.stderr.clone();
            let stack = store.data().stack.clone();
            let bindings = bounded(
                &self.plugin.runtime,
                "instantiate",
                &deadline,
                &mut self.cancel,
                &stderr,
                &stack,
                self.plugin.pre.instantiate_async(&mut store),
            )
            .await?;
            let name = self.context.name.to_string();
            let opened = bounded(
                &self.plugin.runtime,
                "open",
                &deadline,
                &mut self.cancel,
                &stderr,
                &stack,
                bindings.open(&mut store, &name, &self.properties),
            )
            .await?;
            let handle = opened.map_err(|e| {
                let e = plugin_text::property_error(e);
                CallError::OpenRefused {
                    property: e.property,
                    reason: e.reason,
                }
            })?;
            self.generations += 1;
            store.data_mut().park_data_dir();
            self.live = Some(Live {
                store,
                bindings,
                handle,
            });
        }
        match self.live.as_mut() {
            Some(live) => Ok(live),
            None => unreachable!("set above"),
        }
    }

    /// The resource's network grant, resolving the address properties the
    /// operator set the first time. A name that does not resolve refuses the open, naming
    /// the property; the next open tries again.
    async fn network(&mut self) -> Result<Arc<NetworkGrant>, CallError> {
        if let Some(grant) = &self.network {
            return Ok(grant.clone());
        }
        // The operator's values only: a default the plugin declared for an
        // address property grants nothing.
        let resolving = NetworkGrant::resolve(self.plugin.info(), &self.context.grants.configured);
        let grant = match tokio::time::timeout(self.config.open_timeout, resolving).await {
            Ok(Ok(grant)) => Arc::new(grant),
            Ok(Err((property, reason))) => {
                return Err(CallError::OpenRefused { property, reason });
            }
            Err(_) => {
                return Err(CallError::TimedOut {
                    call: "open",
                    after: self.config.open_timeout,
                });
            }
        };
        self.network = Some(grant.clone());
        Ok(grant)
    }

    /// Refuse a copy call to a type that is not replicated before anything
    /// is instantiated or called.
    fn replicated(&self, call: &'static str) -> Result<(), CallError> {
        if self.is_replicated() {
            Ok(())
        } else {
            Err(CallError::NotReplicated {
                call,
                type_name: self.plugin.name().to_string(),
            })
        }
    }

    /// Call `f` on the live instance within `deadline`. On any failure the
    /// instance is discarded.
    async fn call<T>(
        &mut self,
        call: &'static str,
        deadline: CallDeadline,
        f: impl for<'a> FnOnce(
            &'a mut Store<HostState>,
            &'a PluginBindings,
            ResourceAny,
        ) -> CallFuture<'a, T>,
    ) -> Result<T, CallError> {
        let deadline = Arc::new(deadline);
        let stderr = self.context.stderr.clone();
        // Boxed: what a call holds while in flight (instantiation, the
        // bounded call, its timers) is allocated for the call alone. Inline,
        // it made every resource's actor task, which awaits its calls and is
        // allocated once at the size of its largest await, about 8.5 KiB
        // for the resource's whole life (issue #19; `heap_profile` bench).
        let result: Result<T, CallError> = Box::pin(async {
            self.ensure_live().await?;
            let Some(live) = self.live.as_mut() else {
                unreachable!("ensure_live succeeded")
            };
            live.store.data_mut().deadline = Some(deadline.clone());
            let handle = live.handle;
            let stack = live.store.data().stack.clone();
            epoch_deadline_from_now(&mut live.store);
            let work = f(&mut live.store, &live.bindings, handle);
            let result = bounded(
                &self.plugin.runtime,
                call,
                &deadline,
                &mut self.cancel,
                &stderr,
                &stack,
                work,
            )
            .await;
            // Idle, the resource holds no descriptor of its `/data`.
            live.store.data_mut().park_data_dir();
            result
        })
        .await;
        if result.is_err() {
            self.discard();
        }
        result
    }

    /// Throw the store away; the next call starts from a fresh instance.
    pub fn discard(&mut self) {
        self.live = None;
    }

    /// Bring the resource online within `deadline` (which progress reports
    /// may extend, up to a cap).
    pub async fn online(
        &mut self,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.call("online", deadline, export!(online))
            .await
            .map(plugin_text::outcome)
    }

    /// Take the resource offline within `deadline`.
    pub async fn offline(
        &mut self,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.call("offline", deadline, export!(offline))
            .await
            .map(plugin_text::outcome)
    }

    /// Terminate the resource at once, within `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<(), CallError> {
        self.call(
            "terminate",
            CallDeadline::fixed(timeout),
            export!(terminate),
        )
        .await
    }

    /// The cheap health check, within `timeout`.
    pub async fn looks_alive(&mut self, timeout: Duration) -> Result<Health, CallError> {
        self.call(
            "looks-alive",
            CallDeadline::fixed(timeout),
            export!(looks_alive),
        )
        .await
        .map(plugin_text::health)
    }

    /// The thorough health check, within `timeout`.
    pub async fn is_alive(&mut self, timeout: Duration) -> Result<Health, CallError> {
        self.call("is-alive", CallDeadline::fixed(timeout), export!(is_alive))
            .await
            .map(plugin_text::health)
    }

    /// Run the type's control `code` with `payload`, within `timeout`.
    pub async fn control(
        &mut self,
        code: &str,
        payload: &str,
        timeout: Duration,
    ) -> Result<Result<String, String>, CallError> {
        let (code, payload) = (code.to_string(), payload.to_string());
        self.call(
            "control",
            CallDeadline::fixed(timeout),
            move |store, b, h| Box::pin(async move { b.control(store, h, &code, &payload).await }),
        )
        .await
        .map(plugin_text::answer)
    }

    /// Whether the resource's type is replicated (exports `replication`).
    pub fn is_replicated(&self) -> bool {
        self.plugin.pre.is_replicated()
    }

    /// Start (or re-point) this resource as a passive copy following
    /// `source`, within `deadline` (which progress reports may extend).
    pub async fn start_passive(
        &mut self,
        source: CopySource,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.replicated("start-passive")?;
        self.call("start-passive", deadline, move |store, b, h| {
            Box::pin(async move { b.start_passive(store, h, &source).await })
        })
        .await
        .map(plugin_text::outcome)
    }

    /// Stop following the active copy, within `deadline`.
    pub async fn stop_passive(
        &mut self,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.replicated("stop-passive")?;
        self.call("stop-passive", deadline, export!(stop_passive))
            .await
            .map(plugin_text::outcome)
    }

    /// Make this copy the active one with `generation`, within `deadline`.
    pub async fn activate(
        &mut self,
        generation: u64,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.replicated("activate")?;
        self.call("activate", deadline, move |store, b, h| {
            Box::pin(async move { b.activate(store, h, generation).await })
        })
        .await
        .map(plugin_text::outcome)
    }

    /// Stop taking writes, `generation` being the one that replaces this
    /// copy's, within `deadline`.
    pub async fn deactivate(
        &mut self,
        generation: u64,
        deadline: CallDeadline,
    ) -> Result<Result<(), String>, CallError> {
        self.replicated("deactivate")?;
        self.call("deactivate", deadline, move |store, b, h| {
            Box::pin(async move { b.deactivate(store, h, generation).await })
        })
        .await
        .map(plugin_text::outcome)
    }

    /// Where this copy stands, within `timeout` (a health check's).
    pub async fn copy_status(&mut self, timeout: Duration) -> Result<CopyState, CallError> {
        self.replicated("copy-status")?;
        self.call(
            "copy-status",
            CallDeadline::fixed(timeout),
            export!(copy_status),
        )
        .await
        .map(plugin_text::copy_status)
    }

    /// Close the resource (drop its handle in the guest) and the store.
    pub async fn close(&mut self, timeout: Duration) -> Result<(), CallError> {
        let Some(mut live) = self.live.take() else {
            return Ok(());
        };
        let deadline = CallDeadline::fixed(timeout);
        let stderr = self.context.stderr.clone();
        let handle = live.handle;
        let stack = live.store.data().stack.clone();
        epoch_deadline_from_now(&mut live.store);
        // Boxed for the reason `call` is.
        Box::pin(bounded(
            &self.plugin.runtime,
            "close",
            &deadline,
            &mut self.cancel,
            &stderr,
            &stack,
            handle.resource_drop_async(&mut live.store),
        ))
        .await
    }
}
