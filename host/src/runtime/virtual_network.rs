//! The `network` import (contract 0.2.0): virtual addresses and names,
//! set up by the host on the plugin's behalf within the node's grants.
//!
//! A plugin cannot touch interfaces, send raw packets or UDP. What it may
//! ask the host for is what the node configuration grants its type:
//! `[plugins.TYPE.ip]` (interfaces and address ranges, checked by
//! [`crate::virtual_ip::AddressGrant`]) and `[plugins.TYPE.dns]` (one
//! server, zone and key, [`crate::dns_update::DnsUpdater`]). A call outside
//! them, or from a type granted nothing, is refused with an error naming
//! the grant; the plugin's values are untrusted text until parsed here.
//!
//! Every address this node puts up is held by the fence guard from just
//! before it is added until it is taken off again
//! ([`crate::fence_guard::hold_address`]): an agent that is frozen, killed
//! or cut off has its addresses taken off by the guard before its lease
//! can expire and another node claim them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::host_state::HostState;
use crate::contract::bindings::current::warden::resource::network::{
    AddressSpec as WitSpec, AddressState as WitState, Host,
};
use crate::dns_update::DnsUpdater;
use crate::fence_guard::{self, HeldAddress};
use crate::virtual_ip::{AddressGrant, AddressSpec};

/// The longest interface name Linux takes (IFNAMSIZ less its terminator).
const MAX_INTERFACE_NAME: usize = 15;

/// What a call into the network import answers.
type Answer<T> = wasmtime::Result<Result<T, String>>;

impl HostState {
    /// The refusal for a type with no `[plugins.TYPE.KIND]` grant.
    fn not_granted(&self, kind: &str) -> String {
        let type_name = &self.resource.type_name;
        format!(
            "this node grants the type {type_name} no {kind}: the node configuration has no \
             [plugins.{type_name}.{kind}] section"
        )
    }

    /// The type's address grant, or the refusal naming it.
    fn ip_grant(&self) -> Result<Arc<AddressGrant>, String> {
        self.resource
            .grants
            .ip
            .clone()
            .ok_or_else(|| self.not_granted("ip"))
    }

    /// The type's DNS grant, or the refusal naming it.
    fn dns_grant(&self) -> Result<Arc<DnsUpdater>, String> {
        self.resource
            .grants
            .dns
            .clone()
            .ok_or_else(|| self.not_granted("dns"))
    }

    /// The grant and the plugin's spec, parsed. An interface name longer
    /// than the kernel takes is refused here, without being echoed: every
    /// later error names the interface, and the plugin chose its length.
    fn address_call(&self, spec: &WitSpec) -> Result<(Arc<AddressGrant>, AddressSpec), String> {
        let grant = self.ip_grant()?;
        if spec.interface.is_empty() || spec.interface.len() > MAX_INTERFACE_NAME {
            return Err(format!(
                "an interface name of {} bytes: Linux takes 1 to {MAX_INTERFACE_NAME}",
                spec.interface.len()
            ));
        }
        let spec = AddressSpec {
            address: parse_address(&spec.address)?,
            prefix_len: spec.prefix_length,
            interface: spec.interface.clone(),
        };
        Ok((grant, spec))
    }

    /// The DNS grant and the plugin's address, parsed.
    fn name_call(&self, address: &str) -> Result<(Arc<DnsUpdater>, IpAddr), String> {
        Ok((self.dns_grant()?, parse_address(address)?))
    }

    /// Log a change this node made on the plugin's behalf.
    fn changed(&self, what: std::fmt::Arguments<'_>) {
        tracing::info!(resource = %self.resource.name, "{what}");
    }
}

/// An address as the plugin wrote it.
fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        format!("{shown:?} is not an IP address")
    })
}

/// What the fence guard is told of an address.
fn held(spec: &AddressSpec) -> HeldAddress {
    HeldAddress {
        address: spec.address,
        prefix_len: spec.prefix_len,
        interface: spec.interface.clone(),
    }
}

impl Host for HostState {
    async fn probe_address(&mut self, spec: WitSpec, wait_ms: u32) -> Answer<()> {
        let (grant, spec) = match self.address_call(&spec) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        let wait = Duration::from_millis(u64::from(wait_ms));
        Ok(grant.probe(&spec, wait).await.map_err(|e| e.to_string()))
    }

    async fn add_address(&mut self, spec: WitSpec) -> Answer<()> {
        let (grant, spec) = match self.address_call(&spec) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        if let Err(refused) = grant.check(&spec) {
            return Ok(Err(refused.to_string()));
        }
        // Held before it is up: no moment with the address up and the
        // guard unaware of it.
        fence_guard::hold_address(held(&spec));
        match grant.add(&spec).await {
            Ok(()) => {
                self.changed(format_args!("added {spec}"));
                Ok(Ok(()))
            }
            Err(err) => {
                fence_guard::release_address(&held(&spec));
                Ok(Err(err.to_string()))
            }
        }
    }

    async fn announce_address(
        &mut self,
        spec: WitSpec,
        count: u32,
        interval_ms: u32,
    ) -> Answer<()> {
        let (grant, spec) = match self.address_call(&spec) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        let interval = Duration::from_millis(u64::from(interval_ms));
        let announced = grant.announce(&spec, count, interval).await;
        if announced.is_ok() {
            self.changed(format_args!("announced {spec} {count} time(s)"));
        }
        Ok(announced.map_err(|e| e.to_string()))
    }

    async fn remove_address(&mut self, spec: WitSpec) -> Answer<()> {
        let (grant, spec) = match self.address_call(&spec) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        match grant.remove(&spec).await {
            Ok(()) => {
                fence_guard::release_address(&held(&spec));
                self.changed(format_args!("removed {spec}"));
                Ok(Ok(()))
            }
            Err(err) => Ok(Err(err.to_string())),
        }
    }

    async fn query_address(&mut self, spec: WitSpec) -> Answer<WitState> {
        let (grant, spec) = match self.address_call(&spec) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(grant
            .state(&spec)
            .await
            .map(|state| WitState {
                present: state.present,
                link_up: state.link_up,
            })
            .map_err(|e| e.to_string()))
    }

    async fn register_name(&mut self, name: String, address: String, ttl_s: u32) -> Answer<()> {
        let (dns, address) = match self.name_call(&address) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        let registered = dns.register(&name, address, ttl_s).await;
        if registered.is_ok() {
            self.changed(format_args!("registered {name} -> {address}"));
        }
        Ok(registered.map_err(|e| e.to_string()))
    }

    async fn remove_name(&mut self, name: String, address: String) -> Answer<()> {
        let (dns, address) = match self.name_call(&address) {
            Ok(call) => call,
            Err(refused) => return Ok(Err(refused)),
        };
        let removed = dns.remove(&name, address).await;
        if removed.is_ok() {
            self.changed(format_args!("removed {name} -> {address}"));
        }
        Ok(removed.map_err(|e| e.to_string()))
    }

    async fn lookup_name(&mut self, name: String) -> Answer<Vec<String>> {
        let dns = match self.dns_grant() {
            Ok(dns) => dns,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(dns
            .lookup(&name)
            .await
            .map(|found| found.iter().map(IpAddr::to_string).collect())
            .map_err(|e| e.to_string()))
    }
}
