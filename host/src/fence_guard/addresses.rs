//! Taking the node's virtual addresses off when the guard fences.
//!
//! The guard is plain std; netlink is async, so each removal runs on a
//! current-thread runtime made for it. A removal that fails is logged and
//! the next address is tried: the guard never stops fencing for one error.

use std::collections::BTreeSet;

use super::HeldAddress;
use crate::virtual_ip::{AddressGrant, AddressSpec};

/// Take each address off its interface; one already gone is no error.
pub(super) fn take_off(addresses: &BTreeSet<HeldAddress>) {
    if addresses.is_empty() {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(
                "fence guard: could not start the runtime to take address(es) [{}] off: {err}",
                list(addresses)
            );
            return;
        }
    };
    for held in addresses {
        let removed = runtime.block_on(remove(held));
        match removed {
            Ok(()) => tracing::info!("fence guard: took {held} off"),
            Err(err) => tracing::error!("fence guard: could not take {held} off: {err:#}"),
        }
    }
}

/// Take one address off. The agent's word is the grant: a grant of this
/// address's own subnet on its interface ([`AddressGrant::exactly`]), so
/// the checks and the removal are exactly those a plugin's call goes
/// through.
async fn remove(held: &HeldAddress) -> anyhow::Result<()> {
    let spec = AddressSpec {
        address: held.address,
        prefix_len: held.prefix_len,
        interface: held.interface.clone(),
    };
    let grant = AddressGrant::exactly(&spec, "fence guard")
        .ok_or_else(|| anyhow::anyhow!("{held} is not an address an interface can hold"))?;
    grant.remove(&spec).await?;
    Ok(())
}

/// The addresses, for messages.
pub(super) fn list(addresses: &BTreeSet<HeldAddress>) -> String {
    addresses
        .iter()
        .map(HeldAddress::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
