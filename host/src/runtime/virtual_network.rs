//! The `network` import (contract 0.2.0): virtual addresses and names,
//! set up by the host on the plugin's behalf within the node's grants.
//!
//! A plugin cannot touch interfaces, send raw packets or UDP. What it may
//! ask the host for is what the node configuration grants its type:
//! `[plugins.TYPE.ip]` (interfaces and address ranges) and
//! `[plugins.TYPE.dns]` (one server, zone and key). A call outside them, or
//! from a type granted nothing, is refused with an error naming the grant.

use super::host_state::HostState;
use crate::contract::bindings::current::warden::resource::network::{
    AddressSpec, AddressState, Host,
};

impl HostState {
    /// The refusal for a type with no `[plugins.TYPE.KIND]` grant.
    fn not_granted(&self, kind: &str) -> String {
        let type_name = &self.resource.type_name;
        format!(
            "this node grants the type {type_name} no {kind}: the node configuration has no \
             [plugins.{type_name}.{kind}] section"
        )
    }
}

impl Host for HostState {
    async fn probe_address(
        &mut self,
        _spec: AddressSpec,
        _wait_ms: u32,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("ip")))
    }

    async fn add_address(&mut self, _spec: AddressSpec) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("ip")))
    }

    async fn announce_address(
        &mut self,
        _spec: AddressSpec,
        _count: u32,
        _interval_ms: u32,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("ip")))
    }

    async fn remove_address(&mut self, _spec: AddressSpec) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("ip")))
    }

    async fn query_address(
        &mut self,
        _spec: AddressSpec,
    ) -> wasmtime::Result<Result<AddressState, String>> {
        Ok(Err(self.not_granted("ip")))
    }

    async fn register_name(
        &mut self,
        _name: String,
        _address: String,
        _ttl_s: u32,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("dns")))
    }

    async fn remove_name(
        &mut self,
        _name: String,
        _address: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Err(self.not_granted("dns")))
    }

    async fn lookup_name(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Vec<String>, String>> {
        Ok(Err(self.not_granted("dns")))
    }
}
