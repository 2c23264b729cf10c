//! This node's reading progress (`progress/NODE`), which compaction waits
//! for: no entry a live agent has yet to read is deleted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use etcd_client::{GetOptions, PutOptions};
use tokio::time::sleep;

use super::Shared;
use crate::cluster::Keys;
use crate::cluster::etcd::Etcd;

/// How often this node's reading progress (`progress/NODE`) is written,
/// when it moved: compaction waits for the slowest live reader, so this
/// bounds how long it holds entries back, not what it may delete.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Write this node's reading progress (`progress/NODE`, on its lease).
pub(super) async fn report(
    etcd: &Etcd,
    keys: &Keys,
    me: &str,
    lease: i64,
    read: u64,
) -> Result<()> {
    etcd.request("reporting the log reading progress", |mut client| {
        let key = keys.progress(me);
        async move {
            client
                .put(
                    key,
                    read.to_string(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
        }
    })
    .await
    .map(drop)
}

/// Keep `progress/NODE` near the entry last read, for as long as the node
/// runs (a rejoin's new lease included). `reported`: what is there now
/// (the entry and the lease it was written on), if anything.
pub(super) async fn keep(etcd: Etcd, shared: Shared, mut reported: Option<(u64, i64)>) {
    loop {
        sleep(PROGRESS_EVERY).await;
        if shared.tx.is_closed() {
            return;
        }
        let read = shared.read.load(Ordering::Relaxed);
        let Some(lease) = shared.lease() else {
            continue;
        };
        if reported == Some((read, lease)) {
            continue;
        }
        match report(&etcd, &shared.keys, &shared.me, lease, read).await {
            Ok(()) => reported = Some((read, lease)),
            Err(err) => tracing::debug!("{err:#}"),
        }
    }
}

/// The slowest live reader's progress: the last entry every agent holding
/// a lease has read. `None` when no agent reported any.
pub(super) async fn slowest_reader(etcd: &Etcd, keys: &Keys) -> Result<Option<u64>> {
    let response = etcd
        .request("reading the agents' progress", |mut client| {
            let prefix = keys.progress_prefix();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    Ok(response
        .kvs()
        .iter()
        .filter_map(|kv| kv.value_str().ok()?.parse::<u64>().ok())
        .min())
}
