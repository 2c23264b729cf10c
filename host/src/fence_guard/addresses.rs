//! Taking the node's virtual addresses off when the guard fences.
//!
//! The guard is plain std; netlink is async, so each removal runs on a
//! current-thread runtime made for it. A removal that fails is logged and
//! the next address is tried: the guard never stops fencing for one error.

use std::collections::BTreeSet;

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
        let removed = runtime.block_on(crate::virtual_ip::remove_held(held));
        match removed {
            Ok(()) => tracing::info!("fence guard: took {held} off"),
            Err(err) => tracing::error!("fence guard: could not take {held} off: {err:#}"),
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
