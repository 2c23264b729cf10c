//! The cluster's event log: what every engine replica applies, in order.
//!
//! An entry is appended with one etcd transaction: if the head still says
//! `N`, write entry `N+1` and move the head to `N+1`. Two agents appending
//! at once cannot both win; the loser reads the new head and tries again.
//! So the log has one order, and each entry carries the time its writer
//! stamped on it, which every replica uses as the engine's "now".

use anyhow::{Context, Result, bail};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use warden_policy::{Event as PolicyEvent, Millis};

use super::Keys;
use crate::desired::Desired;

/// How many times an append retries a lost race before it gives up (a
/// sign of a log written faster than it can be read, not of bad luck).
const APPEND_RACES: usize = 1000;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    /// When its writer appended it (wall clock, ms).
    pub at: Millis,
    /// The node that appended it.
    pub origin: String,
    pub event: LogEvent,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogEvent {
    /// The cluster's configuration: its nodes, groups and resources. The
    /// first entry of every log.
    Configure {
        nodes: Vec<String>,
        desired: Desired,
    },
    /// Something the policy engine takes in.
    Policy(PolicyEvent),
}

/// Wall-clock milliseconds.
pub fn now() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Append `event`; returns its sequence number.
pub async fn append(
    client: &mut Client,
    keys: &Keys,
    origin: &str,
    event: &LogEvent,
) -> Result<u64> {
    for _ in 0..APPEND_RACES {
        let head = client
            .get(keys.log_head(), None)
            .await
            .context("reading the log head")?;
        let (last, unchanged) = match head.kvs().first() {
            Some(kv) => {
                let last: u64 = kv
                    .value_str()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("{} is not a sequence number", keys.log_head()))?;
                (
                    last,
                    Compare::mod_revision(keys.log_head(), CompareOp::Equal, kv.mod_revision()),
                )
            }
            None => (
                0,
                Compare::create_revision(keys.log_head(), CompareOp::Equal, 0),
            ),
        };
        let entry = LogEntry {
            seq: last + 1,
            at: now(),
            origin: origin.to_string(),
            event: event.clone(),
        };
        let body = serde_json::to_vec(&entry).context("encoding a log entry")?;
        let txn = Txn::new().when([unchanged]).and_then([
            TxnOp::put(keys.log_head(), entry.seq.to_string(), None),
            TxnOp::put(keys.entry(entry.seq), body, None),
        ]);
        if client
            .txn(txn)
            .await
            .context("appending to the log")?
            .succeeded()
        {
            return Ok(entry.seq);
        }
    }
    bail!("lost the race for the log head {APPEND_RACES} times in a row")
}

/// Entries from `from` on, in order, and the etcd revision they were read
/// at (to watch for what follows).
pub async fn read_from(
    client: &mut Client,
    keys: &Keys,
    from: u64,
) -> Result<(Vec<LogEntry>, i64)> {
    let response = client
        .get(
            keys.entry(from),
            Some(GetOptions::new().with_range(keys.log_end())),
        )
        .await
        .context("reading the log")?;
    let revision = response.header().map(|h| h.revision()).unwrap_or(0);
    let mut entries = Vec::new();
    for kv in response.kvs() {
        entries.push(
            decode(kv.value())
                .with_context(|| format!("log entry {}", String::from_utf8_lossy(kv.key())))?,
        );
    }
    Ok((entries, revision))
}

/// Decode one entry.
pub fn decode(bytes: &[u8]) -> Result<LogEntry> {
    serde_json::from_slice(bytes).context("not a log entry this agent understands")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_encoding() {
        let entry = LogEntry {
            seq: 7,
            at: Millis(1234),
            origin: "n1".to_string(),
            event: LogEvent::Policy(PolicyEvent::NodeUp("n1".to_string())),
        };
        let bytes = serde_json::to_vec(&entry).expect("encodes");
        assert_eq!(decode(&bytes).expect("decodes"), entry);
        assert!(decode(b"{\"seq\":1}").is_err());
    }
}
