//! One configured fence device: a fence type, the device's properties, the
//! network the type may reach for it, and what each node is called on it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::contract::PowerState;
use super::fence_type::{DEVICE_CALL_TIMEOUT, FenceType};
use crate::runtime::{CallError, NetworkGrant, check_kind, kind_name};

/// How often `status` is asked while waiting for a node to be off.
const CONFIRM_POLL: Duration = Duration::from_millis(250);

/// One power action of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Power the node off.
    Off,
    /// Power the node on.
    On,
    /// Power the node off and on again.
    Reboot,
}

impl Action {
    /// The action's name, as the event history and the fence type's calls
    /// write it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::On => "on",
            Action::Reboot => "reboot",
        }
    }
}

/// A device ready to be driven.
#[derive(Debug)]
pub struct FenceDevice {
    /// The device's name in the configuration.
    pub name: String,
    fence_type: Arc<FenceType>,
    /// Its properties, defaults filled in.
    properties: Vec<(String, String)>,
    /// The device's own `address` properties: all the type may reach.
    network: Arc<NetworkGrant>,
    /// Node name to the node's name on the device.
    targets: BTreeMap<String, String>,
    /// How long one call into the type may take.
    call_timeout: Duration,
}

impl FenceDevice {
    /// Check `properties` against the type's schema (unknown, of the wrong
    /// kind, required and missing) and the type's own `validate`, and
    /// resolve the addresses the type may reach. Errors name the property.
    pub async fn new(
        name: &str,
        fence_type: Arc<FenceType>,
        properties: &BTreeMap<String, String>,
        targets: BTreeMap<String, String>,
    ) -> Result<FenceDevice, String> {
        let info = fence_type.type_info();
        let mut seen = HashSet::new();
        for (key, value) in properties {
            seen.insert(key.as_str());
            let Some(spec) = info.properties.iter().find(|p| &p.name == key) else {
                return Err(format!(
                    "properties.{key}: not a property of fence type {} (known: {})",
                    info.name,
                    info.properties
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            check_kind(spec.kind, value).map_err(|why| {
                format!(
                    "properties.{key} = {value:?} {why} (a {})",
                    kind_name(spec.kind)
                )
            })?;
        }
        let mut full: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for spec in &info.properties {
            if seen.contains(spec.name.as_str()) {
                continue;
            }
            match &spec.default_value {
                Some(default) => full.push((spec.name.clone(), default.clone())),
                None if spec.required => {
                    return Err(format!("properties.{}: required, and not set", spec.name));
                }
                None => {}
            }
        }
        match fence_type.validate(&full).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                return Err(format!(
                    "properties.{}: {}",
                    refused.property, refused.reason
                ));
            }
            Err(err) => return Err(format!("the type's validate failed: {err}")),
        }
        let configured: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let network = NetworkGrant::resolve(&info, &configured)
            .await
            .map_err(|(property, why)| format!("properties.{property}: {why}"))?;
        Ok(FenceDevice {
            name: name.to_string(),
            fence_type,
            properties: full,
            network: Arc::new(network),
            targets,
            call_timeout: DEVICE_CALL_TIMEOUT,
        })
    }

    /// Bound each call into the type by `timeout` instead of
    /// [`DEVICE_CALL_TIMEOUT`] (for tests of a type that hangs).
    pub fn with_call_timeout(mut self, timeout: Duration) -> FenceDevice {
        self.call_timeout = timeout;
        self
    }

    /// What `node` is called on this device, if the device fences it.
    pub fn target_of(&self, node: &str) -> Option<&str> {
        self.targets.get(node).map(String::as_str)
    }

    /// The fence type's name.
    pub fn type_name(&self) -> &str {
        self.fence_type.name()
    }

    /// The node's power state, as the device reports it.
    pub async fn status(&self, target: &str) -> Result<PowerState, String> {
        let properties = self.properties.clone();
        let target_owned = target.to_string();
        let answer = self
            .fence_type
            .call(
                "status",
                self.call_timeout,
                self.network.clone(),
                Box::new(move |store, bindings| {
                    Box::pin(async move {
                        bindings
                            .warden_fence_fence_type()
                            .call_status(store, &properties, &target_owned)
                            .await
                    })
                }),
            )
            .await;
        self.answer("status", target, answer)
    }

    /// Ask the device to power `target` off, on or cycle it.
    pub async fn act(&self, action: Action, target: &str) -> Result<(), String> {
        let properties = self.properties.clone();
        let target_owned = target.to_string();
        let answer = self
            .fence_type
            .call(
                action.name(),
                self.call_timeout,
                self.network.clone(),
                Box::new(move |store, bindings| {
                    Box::pin(async move {
                        let fence = bindings.warden_fence_fence_type();
                        match action {
                            Action::Off => fence.call_off(store, &properties, &target_owned).await,
                            Action::On => fence.call_on(store, &properties, &target_owned).await,
                            Action::Reboot => {
                                fence.call_reboot(store, &properties, &target_owned).await
                            }
                        }
                    })
                }),
            )
            .await;
        self.answer(action.name(), target, answer)
    }

    /// Power `target` off and ask its state until the device says off,
    /// within `within`. Returns how long it took. Off is asked once; a
    /// status that fails is asked again (the device may be busy switching).
    pub async fn power_off_confirmed(
        &self,
        target: &str,
        within: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let give_up = started + within;
        self.act(Action::Off, target).await?;
        let mut last;
        loop {
            match self.status(target).await {
                Ok(PowerState::Off) => return Ok(started.elapsed()),
                Ok(state) => last = format!("the device says {state}"),
                Err(err) => last = err,
            }
            if Instant::now() + CONFIRM_POLL >= give_up {
                return Err(format!(
                    "{target} was not confirmed off within {within:?} of asking: {last}"
                ));
            }
            sleep(CONFIRM_POLL).await;
        }
    }

    /// The type's answer or a cut-off, as one error naming the device.
    fn answer<T>(
        &self,
        call: &str,
        target: &str,
        answer: Result<Result<T, String>, CallError>,
    ) -> Result<T, String> {
        let what = format!(
            "fence device {} ({}), {call} of {target}",
            self.name,
            self.fence_type.name()
        );
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(reason)) => Err(format!(
                "{what}: {}",
                crate::runtime::plugin_text::one_line(reason, 2048)
            )),
            Err(err) => Err(format!("{what}: {err}")),
        }
    }
}
