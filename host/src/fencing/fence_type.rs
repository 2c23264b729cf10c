//! A loaded fence type: compiled, checked against the fence contract,
//! described; every call into it bounded, in a throwaway store with a
//! memory limit and the output budget of the type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::Component;

use super::contract::{self, FenceInfo, bindings::FenceDevice, bindings::FenceDevicePre};
use crate::contract::{PropertyError, Timing, TypeFlags, TypeInfo};
use crate::runtime::{
    CallError, HostState, Instantiate, NetworkGrant, OutputBudget, ResourceContext, Runtime,
    call_in_fresh_store, check_header, check_schema,
};

/// How long `describe` and `validate` may take.
pub(super) const TYPE_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `status`, `off`, `on` or `reboot` may take: a BMC can be
/// slow, but a fence that hangs must not hold a failover for ever. The
/// Redfish type bounds each request itself (at most 20 s) and says why.
pub const DEVICE_CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// Memory limit of every store of a fence type.
const MEMORY: usize = 64 << 20;

/// A fence type, ready to drive devices.
pub struct FenceType {
    runtime: Arc<Runtime>,
    pre: FenceDevicePre<HostState>,
    info: FenceInfo,
    /// What every call of this type may still send to the log.
    output: Arc<OutputBudget>,
}

impl std::fmt::Debug for FenceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceType")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .finish()
    }
}

/// A boxed call into a fence type's export, given its store and bindings.
type CallFn<T> = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<HostState>,
            &'a FenceDevice,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>
        + Send,
>;

impl FenceType {
    /// Check the header, compile (off the async workers), check the
    /// contract, link and describe. Errors name what is wrong.
    pub async fn load(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<FenceType, String> {
        check_header(bytes).map_err(|e| e.to_string())?;
        let engine = runtime.engine().clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .map_err(|e| format!("the compile task failed: {e}"))?
            .map_err(|e| format!("could not compile the component: {e:#}"))?;
        contract::check(runtime.engine(), &component)?;
        let pre = runtime.linker.instantiate_pre(&component).map_err(|e| {
            format!("the fence type imports something this agent does not provide: {e:#}")
        })?;
        let pre = FenceDevicePre::new(pre)
            .map_err(|e| format!("the fence type does not match the contract: {e:#}"))?;
        let mut fence_type = FenceType {
            runtime: runtime.clone(),
            pre,
            info: FenceInfo {
                name: "(loading)".to_string(),
                version: String::new(),
                description: String::new(),
                properties: Vec::new(),
            },
            output: Arc::default(),
        };
        let info = fence_type
            .call(
                "describe",
                TYPE_CALL_TIMEOUT,
                Arc::default(),
                Box::new(|store, bindings| {
                    Box::pin(bindings.warden_fence_fence_type().call_describe(store))
                }),
            )
            .await
            .map_err(|e| format!("describe() failed: {e}"))?;
        check_schema(&as_type_info(&info))
            .map_err(|why| format!("the fence type's description is not valid: {why}"))?;
        fence_type.info = info;
        Ok(fence_type)
    }

    /// What the fence type says about itself.
    pub fn info(&self) -> &FenceInfo {
        &self.info
    }

    /// The type's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The description as a resource type's, for what is shared with
    /// resource types (the network grant, the schema checks).
    pub(crate) fn type_info(&self) -> TypeInfo {
        as_type_info(&self.info)
    }

    /// The type's own check of a device's properties.
    pub async fn validate(
        &self,
        properties: &[(String, String)],
    ) -> Result<Result<(), PropertyError>, CallError> {
        let properties = properties.to_vec();
        self.call(
            "validate",
            TYPE_CALL_TIMEOUT,
            Arc::default(),
            Box::new(move |store, bindings| {
                Box::pin(async move {
                    bindings
                        .warden_fence_fence_type()
                        .call_validate(store, &properties)
                        .await
                })
            }),
        )
        .await
        .map(|answer| answer.map_err(crate::runtime::plugin_text::property_error))
    }

    /// Run one call in a fresh store that may connect to `network` only,
    /// bounded by `timeout`. The store is dropped afterwards, whatever
    /// happened: a fence type keeps nothing between calls.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        call: &'static str,
        timeout: Duration,
        network: Arc<NetworkGrant>,
        f: CallFn<T>,
    ) -> Result<T, CallError> {
        call_in_fresh_store(
            &self.runtime,
            &self.pre,
            ResourceContext::for_type(&format!("fence {}", self.info.name), self.output.clone()),
            MEMORY,
            network,
            timeout,
            call,
            f,
        )
        .await
    }
}

impl Instantiate for FenceDevicePre<HostState> {
    type Bindings = FenceDevice;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Bindings>> + Send + 'a>> {
        Box::pin(self.instantiate_async(store))
    }
}

/// A fence type's description in the shape of a resource type's, with
/// timers that pass the checks (a fence type has none).
fn as_type_info(info: &FenceInfo) -> TypeInfo {
    TypeInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        properties: info.properties.clone(),
        timing: Timing {
            pending_timeout_ms: 1,
            looks_alive_interval_ms: 0,
            is_alive_interval_ms: 1,
            check_timeout_ms: 1,
        },
        flags: TypeFlags::empty(),
    }
}
