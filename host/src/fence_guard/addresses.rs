//! Taking the node's virtual addresses off when the guard fences.
//!
//! The guard is plain std; netlink is async, so each removal runs on a
//! current-thread runtime made for it. A removal that fails is logged and
//! the next address is tried: the guard never stops fencing for one error.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::HeldAddress;

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
/// address's subnet on this one interface, so the checks and the removal
/// are exactly those a plugin's call goes through.
async fn remove(held: &HeldAddress) -> anyhow::Result<()> {
    let grant = crate::virtual_ip::IpGrant {
        interfaces: vec![held.interface.clone()],
        ranges: vec![format!("{}/{}", subnet(held), held.prefix_len)],
    }
    .resolve("fence guard")?;
    let spec = crate::virtual_ip::AddressSpec {
        address: held.address,
        prefix_len: held.prefix_len,
        interface: held.interface.clone(),
    };
    grant.remove(&spec).await?;
    Ok(())
}

/// The network address of the held address's subnet (host bits zero).
fn subnet(held: &HeldAddress) -> IpAddr {
    match held.address {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(held.prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(held.prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The addresses, for messages.
pub(super) fn list(addresses: &BTreeSet<HeldAddress>) -> String {
    addresses
        .iter()
        .map(HeldAddress::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
