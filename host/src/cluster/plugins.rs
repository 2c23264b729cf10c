//! What the cluster keeps in etcd about resource types: what each node
//! runs, and the builds being rolled out to every node.
//!
//! - `plugins/NODE` (on the node's lease, so it goes with the node): per
//!   type, the version, contract version, component SHA-256 and source
//!   (built-in or file) the node runs, and whether it is pinned
//!   ([`NodePlugins`]). Written by `crate::rollout` whenever it changes.
//! - `rollout/TYPE`: the build of TYPE every node should take
//!   ([`Announcement`]). A key, not a log entry: it outlives every lease,
//!   so a node that was down during a rollout, or joins later, finds it at
//!   its next look; only the newest build of a type is kept (a key per
//!   type, not a history to replay), and it never touches the policy log.
//! - `pins/TYPE`: the version TYPE is pinned to on every node (a `pin`
//!   asked of any node; an `unpin` deletes it).
//! - `blobs/SHA256/NNNN`: the component itself, content-addressed, in
//!   [`CHUNK`]-byte values (etcd refuses a request over 1.5 MiB by
//!   default), at most [`MAX_COMPONENT`] bytes. The chunks are written
//!   before the announcement names them, and the build an announcement
//!   replaces is deleted after it: etcd holds one build per type.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Keys;
use super::etcd::Etcd;
use crate::plugin_versions::compare_versions;

/// The size of one stored chunk of a component: well under etcd's default
/// request limit of 1.5 MiB, with room for the key and the request.
pub const CHUNK: usize = 1 << 20;

/// The largest component the cluster stores (and a node fetches). Built
/// components are a few MiB at most (the largest of this repository's is
/// under 3 MiB); the bound keeps one type from filling etcd, whose whole
/// database is bounded (2 GiB by default).
pub const MAX_COMPONENT: usize = 32 << 20;

/// Where a running type came from.
pub const BUILT_IN: &str = "built-in";
/// Where a build came from, in a node's record: the operator's file (not
/// the rollout's).
pub const FILE: &str = "file";

/// One type as a node runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningType {
    /// The type's name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The version it runs.
    pub version: String,
    /// The contract version the component was built against.
    pub contract: String,
    /// The component's SHA-256 (hex), when known.
    pub sha256: Option<String>,
    /// [`BUILT_IN`] or [`FILE`].
    pub source: String,
    /// Whether the operator pinned this version.
    pub pinned: bool,
}

/// What one node publishes at `plugins/NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlugins {
    /// The contract version the node's agent implements.
    pub agent_contract: String,
    /// Every type the node runs.
    pub types: Vec<RunningType>,
}

/// The build of a type to roll out, at `rollout/TYPE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The type's name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The build's version.
    pub version: String,
    /// The contract version it was built against (a node refuses an
    /// incompatible one).
    pub contract: String,
    /// The component's SHA-256, in hex: what a fetched copy is checked
    /// against.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: usize,
    /// How many chunks of at most `CHUNK` bytes hold it.
    pub chunks: usize,
    /// The node whose plugins directory it was dropped into.
    pub from: String,
}

impl Announcement {
    /// The first 12 hex digits of the SHA-256: the label of the file a
    /// node writes it to (`TYPE@SHA12.wasm`).
    pub fn short_sha(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }
}

/// What [`ClusterPlugins::store`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored and announced.
    Announced,
    /// This very build is announced already.
    AlreadyAnnounced,
    /// A higher version is announced (this one is not rolled out).
    NewerAnnounced(String),
    /// Another build of the same version is announced, and the caller
    /// asked not to replace it ([`Replace::LowerOnly`]).
    SameVersionAnnounced,
}

/// Which announcement [`ClusterPlugins::store`] may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// A lower version, or another build of the same version: a file the
    /// operator just dropped is the build they want.
    LowerOrRebuild,
    /// A lower version only: a build found at start may be the one the
    /// cluster replaced long ago; replacing a rebuild of its version with
    /// it would hand the type back and forth across restarts.
    LowerOnly,
}

/// The SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// This node's handle on the cluster's plugin keys.
pub struct ClusterPlugins {
    etcd: Etcd,
    keys: Keys,
    me: String,
    /// This node's current lease; `None` while fenced.
    lease: watch::Receiver<Option<i64>>,
    /// What was last put at `plugins/NODE`, and on which lease.
    published: Mutex<Option<(i64, NodePlugins)>>,
    /// Every node's record as last read ([`ClusterPlugins::refresh`]).
    view: Mutex<BTreeMap<String, NodePlugins>>,
    /// Records already logged as unreadable (key, revision): the reads
    /// repeat every second.
    malformed: Mutex<std::collections::HashSet<(String, i64)>>,
}

impl ClusterPlugins {
    /// What the cluster keeps about plugin builds, as node `me` on `lease`
    /// (its records live on the lease, so they go with the node).
    pub fn new(
        etcd: Etcd,
        keys: Keys,
        me: &str,
        lease: watch::Receiver<Option<i64>>,
    ) -> ClusterPlugins {
        ClusterPlugins {
            etcd,
            keys,
            me: me.to_string(),
            lease,
            published: Mutex::new(None),
            view: Mutex::new(BTreeMap::new()),
            malformed: Mutex::default(),
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Put `record` at `plugins/NODE` on the current lease, unless that
    /// very record is there on that lease already. Nothing while fenced
    /// (the key went with the lease; the next call after the rejoin puts
    /// it again).
    pub async fn publish(&self, record: &NodePlugins) -> Result<()> {
        let Some(lease) = *self.lease.borrow() else {
            return Ok(());
        };
        let unchanged = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(on, was)| *on == lease && was == record);
        if unchanged {
            return Ok(());
        }
        let value = serde_json::to_string(record)?;
        let key = self.keys.node_plugins(&self.me);
        self.etcd
            .request("publishing this node's plugins", |mut client| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    client
                        .put(key, value, Some(PutOptions::new().with_lease(lease)))
                        .await
                }
            })
            .await?;
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = Some((lease, record.clone()));
        Ok(())
    }

    /// Read every node's record into the view; a record that does not
    /// parse is logged and left out.
    pub async fn refresh(&self) -> Result<BTreeMap<String, NodePlugins>> {
        let prefix = self.keys.node_plugins_prefix();
        let nodes: BTreeMap<String, NodePlugins> = self
            .under(&prefix, "reading the nodes' plugins", "a node's plugins")
            .await?
            .into_iter()
            .collect();
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = nodes.clone();
        Ok(nodes)
    }

    /// Every live node's record as last read (at most a second old while
    /// etcd answers).
    pub fn nodes(&self) -> BTreeMap<String, NodePlugins> {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every announced build; one that does not parse is logged and left
    /// out.
    pub async fn announcements(&self) -> Result<Vec<Announcement>> {
        let prefix = self.keys.rollout_prefix();
        let records = self
            .under(
                &prefix,
                "reading the announced plugin builds",
                "a plugin announcement",
            )
            .await?;
        Ok(records.into_iter().map(|(_, a)| a).collect())
    }

    /// Every JSON record under `prefix`, by the rest of its key; one that
    /// does not parse as `what` is logged (once per key and value, not at
    /// every look) and left out.
    async fn under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        doing: &'static str,
        what: &str,
    ) -> Result<Vec<(String, T)>> {
        let answer = self
            .etcd
            .request(doing, |mut client| {
                let prefix = prefix.to_string();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        let mut records = Vec::new();
        for kv in answer.kvs() {
            let key = kv.key_str().unwrap_or_default();
            let name = key.strip_prefix(prefix).unwrap_or(key).to_string();
            match serde_json::from_slice::<T>(kv.value()) {
                Ok(record) => records.push((name, record)),
                Err(err) => {
                    let mut said = self.malformed.lock().unwrap_or_else(|p| p.into_inner());
                    if said.insert((key.to_string(), kv.mod_revision())) {
                        tracing::warn!("{key} in etcd is not {what}: {err}");
                    }
                }
            }
        }
        Ok(records)
    }

    /// Pin `type_name` to `version` on every node.
    pub async fn pin(&self, type_name: &str, version: &str) -> Result<()> {
        let key = self.keys.pin(type_name);
        let value = version.to_string();
        self.etcd
            .request("pinning a type on every node", |mut client| {
                let (key, value) = (key.clone(), value.clone());
                async move { client.put(key, value, None).await }
            })
            .await
            .map(drop)
    }

    /// Take `type_name`'s pin off every node.
    pub async fn unpin(&self, type_name: &str) -> Result<()> {
        let key = self.keys.pin(type_name);
        self.etcd
            .request("unpinning a type on every node", |mut client| {
                let key = key.clone();
                async move { client.delete(key, None).await }
            })
            .await
            .map(drop)
    }

    /// Every type pinned on every node, with its version.
    pub async fn pins(&self) -> Result<BTreeMap<String, String>> {
        let prefix = self.keys.pins_prefix();
        let answer = self
            .etcd
            .request("reading the cluster's pins", |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        Ok(answer
            .kvs()
            .iter()
            .filter_map(|kv| {
                let type_name = kv.key_str().ok()?.strip_prefix(&prefix)?;
                Some((type_name.to_string(), kv.value_str().ok()?.to_string()))
            })
            .collect())
    }

    /// The announcement of `type_name` and its key's revision (0: none).
    async fn announcement(&self, type_name: &str) -> Result<(Option<Announcement>, i64)> {
        let key = self.keys.rollout(type_name);
        let answer = self
            .etcd
            .request("reading a plugin announcement", |mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        let Some(kv) = answer.kvs().first() else {
            return Ok((None, 0));
        };
        let parsed = serde_json::from_slice::<Announcement>(kv.value()).ok();
        Ok((parsed, kv.mod_revision()))
    }

    /// Store `bytes` (a build of `type_name`) and announce it, unless a
    /// higher version of the type is announced. The chunks go first, then
    /// the announcement, by a compare-and-swap on the key's revision read
    /// before: of two nodes announcing at once one wins and the other looks
    /// again. The build it replaces is deleted. `replace` says whether a
    /// rebuild of the same version replaces the announced one.
    pub async fn store(
        &self,
        type_name: &str,
        version: &str,
        contract: &str,
        bytes: &[u8],
        replace: Replace,
    ) -> Result<Stored> {
        if bytes.len() > MAX_COMPONENT {
            bail!(
                "the component of {type_name} {version} is {} bytes, more than the {MAX_COMPONENT} \
                 the cluster stores; it runs on this node only",
                bytes.len()
            );
        }
        let sha256 = sha256_hex(bytes);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        let announcement = Announcement {
            type_name: type_name.to_string(),
            version: version.to_string(),
            contract: contract.to_string(),
            sha256: sha256.clone(),
            size: bytes.len(),
            chunks: chunks.len(),
            from: self.me.clone(),
        };
        let value = serde_json::to_string(&announcement)?;
        let mut chunks_written = false;
        for _ in 0..3 {
            let (current, revision) = self.announcement(type_name).await?;
            if let Some(current) = &current
                && let Some(outcome) = already_settled(current, &sha256, version, replace)
            {
                return Ok(outcome);
            }
            if !chunks_written {
                self.put_chunks(&sha256, &chunks).await?;
                chunks_written = true;
            }
            if self.announce(type_name, &value, revision).await? {
                if let Some(old) = current.filter(|old| old.sha256 != sha256) {
                    self.delete_blob(&old.sha256).await;
                }
                return Ok(Stored::Announced);
            }
            // A lost answer whose put landed is found by the next look
            // (the same SHA-256 announced).
        }
        bail!("the announcement of {type_name} {version} kept changing under this node")
    }

    /// Write a component's chunks under its SHA-256 (before it is
    /// announced: a node that reads the announcement finds them all).
    async fn put_chunks(&self, sha256: &str, chunks: &[&[u8]]) -> Result<()> {
        for (index, chunk) in chunks.iter().enumerate() {
            let key = self.keys.blob_chunk(sha256, index);
            self.etcd
                .request("storing a plugin component", |mut client| {
                    let (key, chunk) = (key.clone(), chunk.to_vec());
                    async move { client.put(key, chunk, None).await }
                })
                .await?;
        }
        Ok(())
    }

    /// Put `value` as the announcement of `type_name` if its key is still
    /// at `revision` (0: absent); whether it was.
    async fn announce(&self, type_name: &str, value: &str, revision: i64) -> Result<bool> {
        let key = self.keys.rollout(type_name);
        Ok(self
            .etcd
            .request("announcing a plugin build", |mut client| {
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::put(key.clone(), value.to_string(), None)]);
                async move { client.txn(txn).await }
            })
            .await?
            .succeeded())
    }

    /// Delete a component's chunks (best effort: an orphan only costs
    /// space, and the next announcement of the type retries nothing).
    async fn delete_blob(&self, sha256: &str) {
        let prefix = self.keys.blob_prefix(sha256);
        let deleted = self
            .etcd
            .request("deleting a replaced plugin component", |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .delete(
                            prefix,
                            Some(etcd_client::DeleteOptions::new().with_prefix()),
                        )
                        .await
                }
            })
            .await;
        if let Err(err) = deleted {
            tracing::warn!("{err:#}");
        }
    }

    /// The chunks of an announced build, read one at a time (a whole
    /// component in one answer could pass gRPC's 4 MiB message limit).
    /// An error here is etcd's (try again later); whether the bytes are
    /// the announced ones is [`verify`]'s.
    pub async fn fetch(&self, announcement: &Announcement) -> Result<Vec<u8>> {
        check_shape(announcement)?;
        let mut bytes = Vec::with_capacity(announcement.size);
        for index in 0..announcement.chunks {
            let key = self.keys.blob_chunk(&announcement.sha256, index);
            let answer = self
                .etcd
                .request("fetching a plugin component", |mut client| {
                    let key = key.clone();
                    async move { client.get(key, None).await }
                })
                .await?;
            let chunk = answer
                .kvs()
                .first()
                .with_context(|| format!("{key} is missing from etcd"))?;
            if bytes.len() + chunk.value().len() > announcement.size {
                bail!(
                    "the chunks of {} {} under {} hold more than the {} bytes announced",
                    announcement.type_name,
                    announcement.version,
                    self.keys.blob_prefix(&announcement.sha256),
                    announcement.size
                );
            }
            bytes.extend_from_slice(chunk.value());
        }
        Ok(bytes)
    }
}

/// What storing the build `sha256` of `version` comes to, given the
/// announcement `current`, without writing anything: already announced,
/// a higher version announced, or the same version announced and
/// `replace` keeps it. `None`: announce it.
fn already_settled(
    current: &Announcement,
    sha256: &str,
    version: &str,
    replace: Replace,
) -> Option<Stored> {
    if current.sha256 == sha256 {
        return Some(Stored::AlreadyAnnounced);
    }
    match compare_versions(&current.version, version) {
        std::cmp::Ordering::Greater => Some(Stored::NewerAnnounced(current.version.clone())),
        std::cmp::Ordering::Equal if replace == Replace::LowerOnly => {
            Some(Stored::SameVersionAnnounced)
        }
        _ => None,
    }
}

/// An announcement's type name is one a plugin can have (it becomes part
/// of a file name), its SHA-256 is 64 hex digits, and its size and chunk
/// count are within bounds and agree. Anything else in etcd is refused
/// before it names a file or a key.
pub fn check_shape(a: &Announcement) -> Result<()> {
    let type_ok = !a.type_name.is_empty()
        && a.type_name.len() <= 64
        && a.type_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let sha_ok = a.sha256.len() == 64
        && a.sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !type_ok || !sha_ok {
        bail!(
            "an announcement in etcd names type {:?} and SHA-256 {:?}: not a type name \
             (1 to 64 of a-z, 0-9, -) or not 64 hex digits",
            a.type_name,
            a.sha256
        );
    }
    if a.size > MAX_COMPONENT {
        bail!(
            "{} {} is announced at {} bytes, more than the {MAX_COMPONENT} a node fetches",
            a.type_name,
            a.version,
            a.size
        );
    }
    if a.chunks != a.size.div_ceil(CHUNK) {
        bail!(
            "the announcement of {} {} is malformed: {} chunks for {} bytes",
            a.type_name,
            a.version,
            a.chunks,
            a.size
        );
    }
    Ok(())
}

/// Are `bytes` the build `announcement` names (size and SHA-256)? A
/// mismatch means the stored chunks are damaged: nothing is written.
pub fn verify(announcement: &Announcement, bytes: &[u8]) -> Result<()> {
    let actual = sha256_hex(bytes);
    if bytes.len() != announcement.size || actual != announcement.sha256 {
        bail!(
            "the component of {} {} stored in etcd is damaged: {} bytes with SHA-256 {actual}, \
             announced as {} bytes with SHA-256 {}; nothing was written",
            announcement.type_name,
            announcement.version,
            bytes.len(),
            announcement.size,
            announcement.sha256
        );
    }
    Ok(())
}

/// Can a component built against contract `a` run beside one built
/// against `b` (same major version; in 0.x the same minor)? Versions that
/// do not parse are never compatible.
pub fn contracts_compatible(a: &str, b: &str) -> bool {
    use crate::contract::ContractVersion;
    match (ContractVersion::parse(a), ContractVersion::parse(b)) {
        (Some(a), Some(b)) => a.major == b.major && (a.major != 0 || a.minor == b.minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(bytes: &[u8]) -> Announcement {
        Announcement {
            type_name: "t".into(),
            version: "1.0.0".into(),
            contract: "0.1.0".into(),
            sha256: sha256_hex(bytes),
            size: bytes.len(),
            chunks: bytes.len().div_ceil(CHUNK),
            from: "n1".into(),
        }
    }

    #[test]
    fn a_damaged_component_is_refused_naming_both_hashes() {
        let a = announced(b"component");
        assert!(verify(&a, b"component").is_ok());
        let err = verify(&a, b"componenT").expect_err("damaged").to_string();
        assert!(err.contains("damaged") && err.contains(&a.sha256), "{err}");
    }

    #[test]
    fn announcements_over_the_bound_or_malformed_are_refused() {
        let mut a = announced(b"x");
        assert!(check_shape(&a).is_ok());
        a.size = MAX_COMPONENT + 1;
        a.chunks = a.size.div_ceil(CHUNK);
        assert!(check_shape(&a).is_err());
        let mut b = announced(b"x");
        b.chunks = 5;
        assert!(check_shape(&b).is_err());
        let mut c = announced(b"x");
        c.type_name = "../../etc".into();
        assert!(check_shape(&c).is_err());
        let mut d = announced(b"x");
        d.sha256 = format!("{}/x", &d.sha256[..62]);
        assert!(check_shape(&d).is_err());
    }

    #[test]
    fn contracts_compare_as_the_host_does() {
        assert!(contracts_compatible("0.1.0", "0.1.2"));
        assert!(!contracts_compatible("0.1.0", "0.2.0"));
        assert!(contracts_compatible("1.1.0", "1.4.0"));
        assert!(!contracts_compatible("1.0.0", "2.0.0"));
        assert!(!contracts_compatible("x", "0.1.0"));
    }
}
